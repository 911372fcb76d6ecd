"""GPU check (not run in CI): lenet5-modern on full MNIST, trained by the background worker.

Submits one run to a fresh run store and serves it with :func:`training.worker.serve` in this
process -- exactly what ``convnet-lab worker`` does -- while a sampler thread reads the GPU's
utilisation (NVML through ``torch.cuda.utilization``, else ``nvidia-smi``) every ``--sample-every``
seconds. Then it prints, from the run store:

* throughput: images/s per epoch (median) and the best live figure;
* time to 99 %: training seconds (the sum of epoch times, evaluation excluded) and wall seconds
  since the run started training, until the first epoch whose test error is at most 1 %;
* GPU memory: peak allocated (the worker's ``gpu_memory_mb`` metric) and peak reserved by torch;
* GPU busy: the mean fraction of time a kernel was running (NVML's utilisation) while the run trained.

    .venv/bin/python bench/gpu_check.py                          # ../shared/data/mnist.npz, else torchvision MNIST
    .venv/bin/python bench/gpu_check.py --precision fp32 --epochs 5
    .venv/bin/python bench/gpu_check.py --allow-cpu --data sample --epochs 1    # smoke run without a GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from training.loop import PRECISIONS, TrainConfig
from training.store import RunStore
from training.worker import serve

REPO = Path(__file__).resolve().parents[1]
LOCAL_MNIST = REPO / ".." / "shared" / "data" / "mnist.npz"


class Sampler(threading.Thread):
    """(time, GPU utilisation in %) every ``every`` seconds until stopped."""

    def __init__(self, device: int, every: float):
        super().__init__(daemon=True)
        self.device, self.every = device, every
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.source = "unavailable"

    def read(self) -> float | None:
        try:
            value = float(torch.cuda.utilization(self.device))
            self.source = "NVML"
            return value
        except Exception:  # no pynvml: ask nvidia-smi
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                      "-i", str(self.device)], capture_output=True, text=True, timeout=5)
                self.source = "nvidia-smi"
                return float(out.stdout.strip().splitlines()[0])
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return None

    def run(self) -> None:
        while not self.stop.wait(self.every):
            value = self.read()
            if value is not None:
                self.samples.append((time.time(), value))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(LOCAL_MNIST) if LOCAL_MNIST.is_file() else "mnist",
                        help="MNIST as a path (.npz / idx folder) or 'mnist' (default: ../shared/data/mnist.npz if present)")
    parser.add_argument("--epochs", type=int, default=15, help="the lenet5-modern recipe's 15 by default")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--limit", type=int, help="train on the first N digits only (smoke runs)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument("--target", type=float, default=99.0, help="test accuracy to reach, percent")
    parser.add_argument("--report-every", type=float, default=2.0, help="seconds between the worker's live metric writes")
    parser.add_argument("--sample-every", type=float, default=0.1, help="seconds between GPU utilisation samples")
    parser.add_argument("--runs", help="run store folder (default: a temporary one)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (a smoke test of this script)")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.allow_cpu:
        print("gpu_check: no CUDA device here; this check needs a GPU (--allow-cpu for a smoke run)", file=sys.stderr)
        return 2

    config = TrainConfig(model="lenet5-modern", data=args.data, epochs=args.epochs, batch_size=args.batch_size,
                         train_limit=args.limit, precision=args.precision).resolved()
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(args.runs or tmp)
        store = RunStore(runs)
        run_id = store.submit(config.card(), recipe="bench/gpu_check.py")
        sampler = Sampler(torch.cuda.current_device(), args.sample_every) if torch.cuda.is_available() else None
        if sampler:
            sampler.start()
        serve(runs, once=True, report_every=args.report_every)
        if sampler:
            sampler.stop.set()
            sampler.join()
        run = store.get(run_id)
        if run.state != "done":
            print(f"gpu_check: the run ended {run.state}:\n{run.error}", file=sys.stderr)
            return 1
        metrics = store.metrics(run_id)

    by_name: dict[str, list] = {}
    for m in metrics:
        by_name.setdefault(m.name, []).append(m)
    trained_from = min(m.time for m in metrics)  # the worker's first report: data loaded, model built
    epochs = by_name["test_error"]
    seconds = [m.value for m in by_name["epoch_seconds"]]
    reached = next((i for i, m in enumerate(epochs) if 100 - m.value >= args.target), None)
    figures = {
        "device": run.device,
        "precision": config.precision,
        "epochs": len(epochs),
        "final_test_error": epochs[-1].value,
        "images_per_s_median_epoch": statistics.median(m.value for m in by_name["epoch_images_per_s"]),
        "images_per_s_best_live": max((m.value for m in by_name.get("images_per_s", [])), default=None),
        "time_to_target_train_s": sum(seconds[:reached + 1]) if reached is not None else None,
        "time_to_target_wall_s": epochs[reached].time - trained_from if reached is not None else None,
        "epoch_reaching_target": reached + 1 if reached is not None else None,
        "gpu_memory_allocated_peak_mb": max((m.value for m in by_name.get("gpu_memory_mb", [])), default=None),
        "gpu_memory_reserved_peak_mb": torch.cuda.max_memory_reserved() / 2**20 if torch.cuda.is_available() else None,
        "gpu_busy_fraction": None,
        "gpu_busy_source": sampler.source if sampler else "no GPU",
    }
    if sampler:
        during = [value for t, value in sampler.samples if trained_from <= t <= run.ended]
        figures["gpu_busy_fraction"] = statistics.mean(during) / 100 if during else None

    def show(value, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    print(f"\nlenet5-modern on {config.data} via the worker, {run.device}, precision {config.precision}")
    print(f"  throughput        {show(figures['images_per_s_median_epoch'], ',.0f')} images/s (median epoch), "
          f"best live {show(figures['images_per_s_best_live'], ',.0f')}")
    print(f"  time to {args.target:g} %     {show(figures['time_to_target_train_s'], '.1f')} s training, "
          f"{show(figures['time_to_target_wall_s'], '.1f')} s wall (epoch {show(figures['epoch_reaching_target'], 'd')}); "
          f"final test error {figures['final_test_error']:.2f}% after {len(epochs)} epochs")
    print(f"  GPU memory        {show(figures['gpu_memory_allocated_peak_mb'], ',.0f')} MiB peak allocated, "
          f"{show(figures['gpu_memory_reserved_peak_mb'], ',.0f')} MiB peak reserved")
    print(f"  GPU busy          {show(figures['gpu_busy_fraction'], '.0%')} of the training time "
          f"({figures['gpu_busy_source']})")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
