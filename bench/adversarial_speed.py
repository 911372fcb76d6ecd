"""Adversarial speed: one adversarial example, and one accuracy-vs-ε curve, on one CPU thread.

A benchmark, not a test. For each digit model it times :func:`convnets.adversarial.smallest_perturbation` (the call
behind one interaction of the "Adversarial digits" page: the smallest ε, coarse grid then fine grid, each one
batch) on held-out digits #0..#(N-1) of the offline sample, untargeted, and reports the median; then
:func:`convnets.adversarial.accuracy_vs_epsilon` over the sample's 1,000 held-out digits at the page's 8 ε values
(once per model and method; the page caches it). Each figure is printed beside the issue's budget as a ratio
(figure / budget; under 1 is within budget):

* one adversarial example (FGSM or PGD): 200 ms;
* the accuracy-vs-ε curve over the evaluation digits: 10 s.

Both wall-clock time and the process's CPU time are printed: on a machine shared with other jobs the wall clock
measures the queue for the CPU as much as the work; the CPU time is what the work itself took.

    .venv/bin/python bench/adversarial_speed.py                 # lenet5, lenet5-modern; one thread
    .venv/bin/python bench/adversarial_speed.py --images 5 --methods pgd
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

import convnets
from convnets import adversarial as A

EXAMPLE_BUDGET_MS = 200.0
CURVE_BUDGET_S = 10.0


def timed(call: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def row(label: str, wall: float, cpu: float, budget: float, unit: str) -> str:
    return f"  {label:<38} {wall:9.2f} {unit} wall ({wall / budget:5.2f}x)  {cpu:9.2f} {unit} CPU ({cpu / budget:5.2f}x)"


def bench_model(name: str, methods: list[str], images: int) -> list[str]:
    from training.data import load_sample

    model, _ = convnets.load_pretrained(name)
    data = load_sample()
    digits, labels = data.test_x.float() / 255, data.test_y
    lines = [f"{name}:"]
    for method in methods:
        A.smallest_perturbation(model, digits[0], method)  # warm-up: first-call allocations
        times = [timed(lambda i=i, m=method: A.smallest_perturbation(model, digits[i], m)) for i in range(images)]
        wall, cpu = (statistics.median(t[k] for t in times) * 1000 for k in (0, 1))
        lines.append(row(f"one example, {method} (median of {images})", wall, cpu, EXAMPLE_BUDGET_MS, "ms"))
    for method in methods:
        wall, cpu = timed(lambda method=method: A.accuracy_vs_epsilon(model, digits, labels, A.CURVE_EPSILONS, method))
        lines.append(row(f"curve, {method}, {len(labels):,} digits x {len(A.CURVE_EPSILONS)} ε", wall, cpu,
                         CURVE_BUDGET_S, "s "))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["lenet5", "lenet5-modern"])
    parser.add_argument("--methods", nargs="+", default=list(A.METHODS), choices=A.METHODS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the dashboard runs)")
    parser.add_argument("--images", type=int, default=10, help="held-out digits timed per method; the median is reported")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {load:.1f} at the start")
    print(f"budgets: one example {EXAMPLE_BUDGET_MS:g} ms, one accuracy-vs-ε curve {CURVE_BUDGET_S:g} s; "
          "ratio = figure / budget")
    for name in args.models:
        print("\n".join(bench_model(name, args.methods, args.images)))


if __name__ == "__main__":
    main()
