"""Unit page speed: the top-9 patches of every unit, and one unit's feature visualisation, on one CPU thread.

A benchmark, not a test. For each model it times the :mod:`convnets.units` calls behind the Unit page and prints each
median (of ``--repeats``) beside the issue's budget as a ratio (median / budget; under 1 is within budget), in wall-clock
time and in this process's CPU time (on a shared, loaded machine the wall clock mostly measures the wait for a core):

* top-9 patches for every unit of C1, C3, C5 over the official 10,000 MNIST test digits (``../shared/data/mnist.npz``,
  else ``--mnist PATH``; without either, the offline sample's 1,000 held-out digits, said so): 20 s, the first time;
  the same with F6 (what the page finds), and reading the result back from its ``.npz`` (every later time);
* the feature visualisation of one unit (default settings: 200 steps, jitter, blur): 3 s, median over the units
  C1 0, C3 5, C5 3 and F6 2, ``--repeats`` each.

    .venv/bin/python bench/unit_speed.py                      # lenet5, lenet5-modern; one thread
    .venv/bin/python bench/unit_speed.py --models lenet5 --repeats 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import convnets
from convnets import units as U

MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist.npz"
BUDGETS_S = {"top": 20.0, "visualise": 3.0}
VIS_UNITS = (("C1", 0), ("C3", 5), ("C5", 3), ("F6", 2))


def test_digits(path: Path | None) -> tuple[np.ndarray, str]:
    """The official 10,000 test digits from an .npz, else the offline sample's 1,000 held-out ones."""
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return data["x_test"], f"the official MNIST test set ({len(data['x_test']):,} digits, {path.name})"
    from training.data import load_sample

    return load_sample().test_x.numpy(), "the offline sample's 1,000 held-out digits (no full MNIST here)"


def timed(call: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median wall-clock seconds, median CPU seconds of this process) over ``repeats`` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def bench_model(name: str, digits: np.ndarray, repeats: int) -> list[tuple[str, float, float, float | None]]:
    """(label, median wall s, median CPU s, budget s or None) per measured call."""
    model, _ = convnets.load_pretrained(name)
    rows = []
    for layers in (["C1", "C3", "C5"], ["C1", "C3", "C5", "F6"]):
        wall, cpu = timed(lambda layers=layers: U.top_patches(model, digits, layers), repeats)
        rows.append((f"top-9, every unit of {', '.join(layers)}", wall, cpu, BUDGETS_S["top"]))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "top.npz"
        U.save_top_patches(path, U.top_patches(model, digits))
        wall, cpu = timed(lambda: U.load_top_patches(path, model), repeats)
        rows.append(("top-9 read back from the disk cache", wall, cpu, None))
    U.visualise(model, "C1", 0, steps=5)  # warm-up: first-call allocations
    runs = [timed(lambda layer=layer, unit=unit: U.visualise(model, layer, unit), repeats) for layer, unit in VIS_UNITS]
    for (layer, unit), (wall, cpu) in zip(VIS_UNITS, runs, strict=True):
        rows.append((f"feature visualisation, {layer} unit {unit}", wall, cpu, BUDGETS_S["visualise"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["lenet5", "lenet5-modern"])
    parser.add_argument("--mnist", type=Path, default=MNIST, help="an .npz with x_test (default ../shared/data/mnist.npz)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the dashboard runs)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measure; the median is reported")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    digits, description = test_digits(args.mnist)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {platform.processor() or platform.machine()}, "
          f"median of {args.repeats}; digits: {description}")
    for name in args.models:
        print(f"\n{name}")
        print(f"  {'measure':42s} {'wall':>9s} {'CPU':>9s} {'budget':>7s} {'ratio wall':>10s} {'ratio CPU':>9s}")
        for label, wall, cpu, budget in bench_model(name, digits, args.repeats):
            ratios = f"{wall / budget:10.2f} {cpu / budget:9.2f}" if budget else f"{'-':>10s} {'-':>9s}"
            print(f"  {label:42s} {wall:7.3f} s {cpu:7.3f} s {f'{budget:.0f} s' if budget else '-':>7s} {ratios}")


if __name__ == "__main__":
    main()
