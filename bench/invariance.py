"""Invariance lab speed: a 60-step sweep of one digit, and robustness curves over a test set.

A benchmark, not a test. For each shipped digit model it times

* ``sweep`` -- :func:`convnets.invariance.sweep` of one held-out digit over 60 levels of each transform
  (one forward batch), median of ``--repeats`` calls; target 100 ms;
* ``robustness`` -- :func:`convnets.invariance.robustness` over every test digit at 11 levels, one
  curve per kind of ``ROBUSTNESS_KINDS`` (the dashboard's robustness charts), as the dashboard runs it (the model
  folded by :func:`convnets.folding.folded`: NHWC, batch norm and squashing constants folded; batches of 256) beside
  the reference (the model as it is, NCHW, batches of 1,000: how the curves were computed before), both
  giving the same accuracies (the noises are drawn per batch, so theirs differ by the draw), and the same under
  bfloat16 autocast (fast where the CPU has AVX-512 BF16 or AMX); targets 5 s per curve for ``lenet5``, 3 s for
  ``lenet5-modern``.

The test digits are the official MNIST test set (10,000) from ``--data`` (default ../shared/data/mnist.npz,
x_test / y_test) when it exists, else the offline sample's 1,000 held-out digits; the output says which.

    .venv/bin/python bench/invariance.py                 # one torch thread
    .venv/bin/python bench/invariance.py --threads 2 --repeats 50

The result also goes to ``bench/results/invariance.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import convnets
from convnets.invariance import ROBUSTNESS_KINDS, TRANSFORMS, robustness, robustness_levels, sweep
from training.data import load_digits, load_sample

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "../shared/data/mnist.npz"
RESULT = REPO / "bench" / "results" / "invariance.json"
SWEEP_TARGET_MS = 100.0
ROBUSTNESS_TARGET_S = {"lenet5": 5.0, "lenet5-modern": 3.0}


def evaluation_set(path: Path) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(uint8 images, labels, description): the test split of ``path`` if it exists, else the offline held-out digits."""
    if path.is_file():
        data = load_digits(str(path))
        return data.test_x, data.test_y, data.test_description
    data = load_sample()
    return data.test_x, data.test_y, f"the {len(data.test_y):,} held-out digits of {data.description} ({path} not found)"


def timed(function, *args, **kwargs):
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="an .npz with x_test, y_test (default: %(default)s)")
    parser.add_argument("--models", nargs="+", default=["lenet5", "lenet5-modern"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    parser.add_argument("--repeats", type=int, default=20, help="sweeps timed per transform; the median is reported")
    parser.add_argument("--steps", type=int, default=60, help="levels per sweep (default 60)")
    parser.add_argument("--batch-size", type=int, default=256, help="robustness forward batch (default 256)")
    parser.add_argument("--no-save", action="store_true", help=f"do not write {RESULT.relative_to(REPO)}")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    images, labels, description = evaluation_set(args.data)
    digit = load_sample().test_x[0].float() / 255
    print(f"torch {torch.__version__}, {args.threads} thread(s), {platform.processor() or platform.machine()}")
    print(f"sweep: {args.steps} levels of one held-out digit, median of {args.repeats}; "
          f"robustness: {len(labels):,} digits x 11 levels, {description}")
    result: dict = {"benchmark": "invariance", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "threads": args.threads, "torch": torch.__version__, "sweep_steps": args.steps,
                    "robustness_digits": len(labels), "robustness_data": description, "models": {}}
    for name in args.models:
        model, _ = convnets.load_pretrained(name)
        sweeps = {}
        for kind, spec in TRANSFORMS.items():
            levels = spec.levels(args.steps)
            sweep(model, digit, kind, levels)  # warm-up
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                sweep(model, digit, kind, levels)
                times.append(time.perf_counter() - start)
            sweeps[kind] = 1000 * statistics.median(times)
        worst = max(sweeps, key=sweeps.get)
        print(f"\n{name}: sweep median per transform (ms): "
              + ", ".join(f"{k} {v:.1f}" for k, v in sweeps.items()))
        print(f"  slowest {worst}: {sweeps[worst]:.1f} ms = {sweeps[worst] / SWEEP_TARGET_MS:.2f} x the "
              f"{SWEEP_TARGET_MS:.0f} ms target")
        curves = {}
        target = ROBUSTNESS_TARGET_S.get(name, 5.0)
        for kind in ROBUSTNESS_KINDS:
            levels = robustness_levels(kind)
            ref_s, ref_acc = timed(robustness, model, images, labels, kind, levels, batch_size=1000, fold=False)
            seconds, accuracy = timed(robustness, model, images, labels, kind, levels, batch_size=args.batch_size)
            bf_s, bf_acc = timed(robustness, model, images, labels, kind, levels, batch_size=args.batch_size,
                                 amp_dtype=torch.bfloat16)
            curves[kind] = {"seconds": round(seconds, 3), "reference_seconds": round(ref_s, 3),
                            "bf16_seconds": round(bf_s, 3), "levels": levels.tolist(),
                            "accuracy_percent": np.round(100 * accuracy, 2).tolist(),
                            "bf16_accuracy_percent": np.round(100 * bf_acc, 2).tolist(),
                            "max_difference_from_reference_points": round(float(np.abs(accuracy - ref_acc).max()) * 100, 2),
                            "bf16_max_difference_points": round(float(np.abs(bf_acc - accuracy).max()) * 100, 2)}
            print(f"  robustness {kind:<12} reference {ref_s:6.2f} s | folded fp32 {seconds:6.2f} s "
                  f"({ref_s / seconds:.2f}x, {seconds / target:.2f} x the {target:.0f} s target, "
                  f"{curves[kind]['max_difference_from_reference_points']:.2f} points from the reference) | "
                  f"folded bf16 {bf_s:6.2f} s "
                  f"({ref_s / bf_s:.2f}x, {bf_s / target:.2f} x target, at most "
                  f"{curves[kind]['bf16_max_difference_points']:.2f} points from fp32)")
            print(f"    accuracy % {' '.join(f'{100 * a:.1f}' for a in accuracy)}")
        total = sum(c["seconds"] for c in curves.values())
        print(f"  all {len(curves)} curves: {total:.1f} s (what the dashboard computes once per model)")
        result["models"][name] = {"sweep_ms_median": {k: round(v, 2) for k, v in sweeps.items()},
                                  "robustness": curves, "robustness_total_s": round(total, 2)}
    if not args.no_save:
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwritten to {RESULT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
