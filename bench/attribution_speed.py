"""Attribution speed: one interaction of the "Why this answer" page per method, on one CPU thread.

A benchmark, not a test. For each model it times the :mod:`convnets.attribution` call behind one map of the
page, on held-out digit #0 of the offline sample (a CIFAR-10 sample test image for image models), median of
``--repeats`` calls after one warm-up, and prints it beside the issue's per-interaction budget as a ratio
(median / budget; under 1 is within budget):

* saliency, Grad-CAM (C3; conv5 for AlexNet): 50 ms;
* SmoothGrad (25 samples) and integrated gradients (32 steps), each one batch: 150 ms;
* occlusion over 28x28 at stride 1 (4x4 patches, 784 occluded copies in one batch): 300 ms;
* a deletion curve (20 steps, one batch) has no budget of its own; it is printed for reference.

    .venv/bin/python bench/attribution_speed.py                          # lenet5, lenet5-modern; one thread
    .venv/bin/python bench/attribution_speed.py --models alexnet-cifar --repeats 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch

import convnets
from convnets import attribution as A

BUDGETS_MS = {"saliency": 50.0, "grad-cam": 50.0, "smoothgrad": 150.0, "integrated-gradients": 150.0, "occlusion": 300.0}


def test_image(model: torch.nn.Module) -> torch.Tensor:
    """Held-out digit #0 for a digit model, CIFAR-10 sample test image #0 for an image model."""
    if tuple(model.input_shape) == (1, 28, 28):
        from training.data import load_sample

        return load_sample().test_x[0].float() / 255
    from training.images import as_float, cifar_sample

    return as_float(cifar_sample().test_x[:1])[0]


def median_ms(call: Callable[[], object], repeats: int) -> float:
    call()  # warm-up: first-call allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench_model(name: str, repeats: int) -> list[tuple[str, float, float | None]]:
    """(label, median ms, budget ms or None) per measured interaction of ``name``."""
    model, _ = convnets.load_pretrained(name)
    image = test_image(model)
    side = image.shape[-1]
    layer = A.default_cam_layer(model)
    calls = {
        "saliency": lambda: A.saliency(model, image),
        f"grad-cam ({layer})": lambda: A.grad_cam(model, image, layer),
        "smoothgrad (25 samples)": lambda: A.smoothgrad(model, image, samples=25),
        "integrated-gradients (32 steps)": lambda: A.integrated_gradients(model, image, steps=32),
        f"occlusion ({side}x{side}, stride 1, 4x4)": lambda: A.occlusion(model, image, patch=4, stride=1),
    }
    attribution = A.saliency(model, image)
    calls["deletion curve (20 steps)"] = lambda: A.deletion_curve(model, image, attribution, steps=20)
    rows = []
    for label, call in calls.items():
        budget = BUDGETS_MS.get(label.split(" ")[0])
        rows.append((label, median_ms(call, repeats), budget))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["lenet5", "lenet5-modern"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the dashboard runs)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per method; the median is reported")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {platform.processor() or platform.machine()}, "
          f"median of {args.repeats}")
    for name in args.models:
        print(f"\n{name}")
        print(f"  {'interaction':42s} {'median':>10s} {'budget':>9s} {'ratio':>6s}")
        for label, ms, budget in bench_model(name, args.repeats):
            target = f"{budget:.0f} ms" if budget else "-"
            ratio = f"{ms / budget:.2f}" if budget else "-"
            print(f"  {label:42s} {ms:7.1f} ms {target:>9s} {ratio:>6s}")


if __name__ == "__main__":
    main()
