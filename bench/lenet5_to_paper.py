"""The faithful LeNet-5 to the paper's test error on this machine: the fast recipe beside the shipped one.

A benchmark, not a test. In one invocation, on full MNIST (``--data``, default ../shared/data/mnist.npz), it
trains through :func:`training.loop.train`:

* ``shipped recipe`` -- the recipe the shipped weights were trained with (batch 16, NCHW, Adam 0.002, cosine, 20
  epochs), for ``--reference-epochs`` epochs only (default 1): its 20-epoch time is that epoch time x 20, a
  projection, labelled so;
* ``fast`` -- this project's recipe (:data:`training.loop.RECIPES` ``["lenet5"]``: batch 128, channels_last,
  Adam 0.005 with 1 epoch of warm-up and cosine decay, 12 epochs) in full, target <= 0.95 % in <= 2 minutes;
* ``fast + distortions`` (``--distort``) -- the same with the paper's affine distortions, ``--distort-epochs``
  (default 24), target <= 0.80 % in <= 4 minutes.

Training time is the sum of the epochs' training time (evaluation after each epoch is off the clock); the test
error is the official test set's after the *last* epoch. Levers: images/s (batch, layout: ``bench/lenet_speed.py``)
and epochs (20 -> 12) are reported separately.

    .venv/bin/python bench/lenet5_to_paper.py --threads 2 --distort

The result also goes to ``bench/results/lenet5_to_paper.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from training.augment import Distortion
from training.data import load_digits
from training.loop import RECIPES, TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "../shared/data/mnist.npz"
RESULT = REPO / "bench" / "results" / "lenet5_to_paper.json"
SHIPPED = {"batch_size": 16, "lr": 0.002, "epochs": 20, "warmup": 0.0, "channels_last": False}
TARGETS = {"fast": (0.95, 120.0), "fast + distortions": (0.80, 240.0)}  # (test error %, training seconds)


def run(label: str, config: TrainConfig, data, epochs_to_time: int | None = None) -> dict:
    """Train ``config`` (only its first ``epochs_to_time`` epochs when given) and summarise the card."""
    timed = config if epochs_to_time is None else TrainConfig(**{**config.__dict__, "epochs": epochs_to_time})
    _, card = train(timed, data=data, progress=False, log=lambda line: print(f"  {label}: {line}", flush=True))
    epochs = card["epochs"]
    seconds = sum(e["seconds"] for e in epochs)
    full = config.resolved().epochs
    return {"label": label, "epochs_run": len(epochs), "epochs_of_recipe": full, "train_seconds": round(seconds, 2),
            "train_seconds_full": round(seconds * full / len(epochs), 2), "projected": len(epochs) < full,
            "images_per_s": round(sum(e["images_per_s"] for e in epochs) / len(epochs)),
            "test_error": round(card["test_error"], 3), "config": config.resolved().card()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MNIST .npz (x_train, y_train, x_test, y_test)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reference-epochs", type=int, default=1, help="epochs of the shipped recipe to time (default 1)")
    p.add_argument("--distort", action="store_true", help="also train the fast recipe with distortions")
    p.add_argument("--distort-epochs", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULT)
    args = p.parse_args(argv)
    if not args.data.is_file():
        print(f"skipped: no MNIST at {args.data}; pass --data PATH to an .npz with x_train, y_train, x_test, y_test")
        return 0
    torch.set_num_threads(args.threads)
    data = load_digits(str(args.data.resolve()))
    print(f"faithful LeNet-5 on {len(data.train_y):,} training digits, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; fast recipe {RECIPES['lenet5']}")
    base = {"model": "lenet5", "data": str(args.data), "seed": args.seed, "device": "cpu"}
    rows = [run("shipped recipe", TrainConfig(**base, **SHIPPED), data, args.reference_epochs),
            run("fast", TrainConfig(**base), data)]
    if args.distort:
        rows.append(run("fast + distortions", TrainConfig(**base, epochs=args.distort_epochs, distort=Distortion()), data))

    reference = rows[0]
    print(f"\n{'recipe':22s} {'epochs':>6s} {'images/s':>9s} {'train time':>11s} {'test error':>10s} {'target':>16s} "
          f"{'vs shipped':>10s}")
    for row in rows:
        error, seconds = TARGETS.get(row["label"], (None, None))
        target = f"<= {error:.2f} %, {seconds:.0f} s" if error else ""
        shown = f"{row['train_seconds_full']:.1f} s" + ("*" if row["projected"] else "")
        error_shown = "" if row["projected"] else f"{row['test_error']:.2f} %"
        print(f"{row['label']:22s} {row['epochs_of_recipe']:6d} {row['images_per_s']:9d} {shown:>11s} {error_shown:>10s} "
              f"{target:>16s} {reference['train_seconds_full'] / row['train_seconds_full']:9.1f}x")
    print(f"* projected from {reference['epochs_run']} timed epoch(s)")
    record = {"benchmark": "lenet5_to_paper", "rows": rows, "targets": TARGETS, "threads": torch.get_num_threads(),
              "torch": str(torch.__version__), "platform": platform.platform(),
              "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
