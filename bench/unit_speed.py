"""Unit page speed: the top-9 patches of every unit, and one unit's feature visualisation, on one CPU thread.

A benchmark, not a test. For each model it times the :mod:`convnets.units` calls behind the Unit page and prints each
median (of ``--repeats``) beside the issue's budget as a ratio (median / budget; under 1 is within budget), in wall-clock
time and in this process's CPU time (on a shared, loaded machine the wall clock mostly measures the wait for a core):

* top-9 patches for every unit of C1, C3, C5 over the official 10,000 MNIST test digits (``../shared/data/mnist.npz``,
  else ``--mnist PATH``; without either, the offline sample's 1,000 held-out digits, said so): 20 s, the first time;
  the same with F6 (what the page finds), and reading the result back from its ``.npz`` (every later time);
* the feature visualisation of one unit (default settings: 200 steps, jitter, blur): 3 s, median over the units
  C1 0, C3 5, C5 3 and F6 2, ``--repeats`` each.

A colour model (``alexnet-cifar``, ``alexnet-cifar-columns``) is timed the same way over the official 10,000 CIFAR-10
test pictures (``../shared/data/cifar10-jpeg.tar.gz``, else ``--cifar PATH``; without either, the shipped sample's
1,000 test pictures, said so): top-9 for every unit of conv1-conv5, and of conv1-fc7 (what the page finds), against
the digit budget of 20 s (the issue sets none for AlexNet); the visualisation of conv1 0, conv3 17, conv5 3 and fc7 2.

    .venv/bin/python bench/unit_speed.py                      # lenet5, lenet5-modern; one thread
    .venv/bin/python bench/unit_speed.py --models lenet5 --repeats 3
    .venv/bin/python bench/unit_speed.py --models alexnet-cifar --repeats 1
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
CIFAR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-jpeg.tar.gz"
BUDGETS_S = {"top": 20.0, "visualise": 3.0}
VIS_UNITS = (("C1", 0), ("C3", 5), ("C5", 3), ("F6", 2))
COLOUR_VIS_UNITS = (("conv1", 0), ("conv3", 17), ("conv5", 3), ("fc7", 2))
COLOUR_MODELS = ("alexnet-cifar", "alexnet-cifar-columns")


def test_digits(path: Path | None) -> tuple[np.ndarray, str]:
    """The official 10,000 test digits from an .npz, else the offline sample's 1,000 held-out ones."""
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return data["x_test"], f"the official MNIST test set ({len(data['x_test']):,} digits, {path.name})"
    from training.data import load_sample

    return load_sample().test_x.numpy(), "the offline sample's 1,000 held-out digits (no full MNIST here)"


def test_pictures(path: Path | None) -> tuple[np.ndarray, str]:
    """The official 10,000 CIFAR-10 test pictures (uint8 (N, 3, 32, 32)) from an image folder or archive, else the
    shipped sample's 1,000."""
    from training.images import cifar_sample, load_images

    if path is not None and path.exists():
        data = load_images(str(path), size=32, train_per_class=1)
        return data.test_x.numpy(), f"{len(data.test_y):,} CIFAR-10 test pictures ({path.name})"
    return cifar_sample().test_x.numpy(), "the shipped sample's 1,000 CIFAR-10 test pictures (no full CIFAR-10 here)"


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
    """(label, median wall s, median CPU s, budget s or None) per measured call (``digits``: a colour model's
    pictures)."""
    model, _ = convnets.load_pretrained(name)
    rows = []
    colour = name in COLOUR_MODELS
    every = list(U.unit_layers(model))
    batch = 250 if colour else 1000  # as dashboard/resources.py finds them
    for layers in ([n for n in every if n.startswith("conv")], every) if colour else (["C1", "C3", "C5"], every):
        wall, cpu = timed(lambda layers=layers: U.top_patches(model, digits, layers, batch_size=batch), repeats)
        rows.append((f"top-9, every unit of {', '.join(layers)}", wall, cpu, BUDGETS_S["top"]))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "top.npz"
        U.save_top_patches(path, U.top_patches(model, digits, batch_size=batch))
        wall, cpu = timed(lambda: U.load_top_patches(path, model), repeats)
        rows.append(("top-9 read back from the disk cache", wall, cpu, None))
    units = COLOUR_VIS_UNITS if colour else VIS_UNITS
    U.visualise(model, units[0][0], 0, steps=5)  # warm-up: first-call allocations
    runs = [timed(lambda layer=layer, unit=unit: U.visualise(model, layer, unit), repeats) for layer, unit in units]
    for (layer, unit), (wall, cpu) in zip(units, runs, strict=True):
        rows.append((f"feature visualisation, {layer} unit {unit}", wall, cpu, BUDGETS_S["visualise"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["lenet5", "lenet5-modern"])
    parser.add_argument("--mnist", type=Path, default=MNIST, help="an .npz with x_test (default ../shared/data/mnist.npz)")
    parser.add_argument("--cifar", type=Path, default=CIFAR,
                        help="CIFAR-10 as an image folder or .tar.gz (default ../shared/data/cifar10-jpeg.tar.gz)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the dashboard runs)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measure; the median is reported")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = {}
    if any(name not in COLOUR_MODELS for name in args.models):
        data["digits"] = test_digits(args.mnist)
    if any(name in COLOUR_MODELS for name in args.models):
        data["pictures"] = test_pictures(args.cifar)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {platform.processor() or platform.machine()}, "
          f"median of {args.repeats}; " + "; ".join(f"{kind}: {what}" for kind, (_, what) in data.items()))
    for name in args.models:
        digits = data["pictures" if name in COLOUR_MODELS else "digits"][0]
        print(f"\n{name}")
        print(f"  {'measure':62s} {'wall':>9s} {'CPU':>9s} {'budget':>7s} {'ratio wall':>10s} {'ratio CPU':>9s}")
        for label, wall, cpu, budget in bench_model(name, digits, args.repeats):
            ratios = f"{wall / budget:10.2f} {cpu / budget:9.2f}" if budget else f"{'-':>10s} {'-':>9s}"
            print(f"  {label:62s} {wall:7.3f} s {cpu:7.3f} s {f'{budget:.0f} s' if budget else '-':>7s} {ratios}")


if __name__ == "__main__":
    main()
