"""Training images/s of the digit models on this machine: the levers one at a time, side by side, in one invocation.

A benchmark, not a test. Every configuration trains with the product's step (:func:`training.loop.epoch_steps`:
slice a batch of device-resident uint8 digits, optional distortions, forward, loss, backward, Adam) on the same
synthetic 28x28 digits, for ``--steps`` x 128 images after a warm-up, in rounds that alternate the order (this
machine is noisy). Reported: the median images/s of each and its ratio to the first row of its model, the
reference (the recipe the shipped weights were trained with: batch 16 for ``lenet5``, 128 for ``lenet5-modern``,
NCHW).

Levers: ``batch`` -- images per optimiser step; ``channels_last`` -- NHWC activations and weights, oneDNN's
preferred layout; ``distort`` -- the paper's affine distortions (their cost); ``compile`` -- ``torch.compile``;
for ``lenet5-modern``, its pooling (``nn.MaxPool2d``, i.e. ``max_pool2d_with_indices``, before; now
:class:`convnets.lenet.MaxPool2x2`) and the optimiser (per-tensor Adam before; now fused): the reference row
has both as before, the next rows add one lever each, then both (the product now).

    .venv/bin/python bench/lenet_speed.py --threads 2
    .venv/bin/python bench/lenet_speed.py --threads 2 --compile     # adds torch.compile rows (slow to warm up)
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

import convnets
from training.augment import Distortion
from training.loop import TrainConfig, epoch_steps, make_optimizer


@dataclass(frozen=True)
class Variant:
    label: str
    model: str
    batch: int
    channels_last: bool
    distort: bool = False
    compile: bool = False
    indices_pool: bool = False  # S2/S4 as nn.MaxPool2d(2), as lenet5-modern had them before MaxPool2x2
    unfused: bool = False  # Adam's per-tensor steps, as before make_optimizer fused them


def measure(variant: Variant, images: torch.Tensor, labels: torch.Tensor, images_per_round: int, warmup: int) -> float:
    """Images/s over about ``images_per_round`` training images of ``variant`` after ``warmup`` steps."""
    torch.manual_seed(0)
    model = convnets.get_model(variant.model)
    if variant.indices_pool:
        model.features.S2, model.features.S4 = nn.MaxPool2d(2), nn.MaxPool2d(2)
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    config = TrainConfig(model=variant.model, batch_size=variant.batch, epochs=1,
                         distort=Distortion() if variant.distort else None).resolved()
    optimizer = make_optimizer(config, model)
    if variant.unfused:
        for group in optimizer.param_groups:
            group["fused"] = False
    net = torch.compile(model) if variant.compile else model
    steps = max(images_per_round // variant.batch, 1)
    n = (steps + warmup) * variant.batch
    stream = epoch_steps(config, net, optimizer, images[:n], labels[:n], 0, torch.Generator().manual_seed(0),
                         channels_last=variant.channels_last)
    start = None
    for step, loss, _ in stream:
        if step == warmup - 1:
            loss.item()
            start = time.perf_counter()
    return steps * variant.batch / (time.perf_counter() - start)


def variants_for(model: str, reference_batch: int, compile_too: bool) -> list[Variant]:
    if model == "lenet5-modern":
        return [Variant(f"{model}: reference, max_pool2d, Adam per tensor", model, 128, False, indices_pool=True,
                        unfused=True),
                Variant(f"{model}: MaxPool2x2", model, 128, False, unfused=True),
                Variant(f"{model}: fused Adam", model, 128, False, indices_pool=True),
                Variant(f"{model}: MaxPool2x2 + fused Adam (now)", model, 128, False),
                Variant(f"{model}: now + batch 256", model, 256, False),
                Variant(f"{model}: now + channels_last", model, 128, True)]
    rows = [Variant(f"{model}: reference, batch {reference_batch}, NCHW", model, reference_batch, False)]
    for batch in sorted({reference_batch, 128, 256} - {reference_batch}):
        rows.append(Variant(f"{model}: batch {batch}", model, batch, False))
    rows += [Variant(f"{model}: batch {b}, channels_last", model, b, True) for b in (128, 256)]
    rows.append(Variant(f"{model}: batch 256, channels_last, distortions", model, 256, True, distort=True))
    if compile_too:
        rows.append(Variant(f"{model}: batch 256, channels_last, torch.compile", model, 256, True, compile=True))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=12_800, help="timed images per configuration and round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["lenet5", "lenet5-modern"])
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (inductor) variants")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    reference_batch = {"lenet5": 16, "lenet5-modern": 128}
    variants = [v for m in args.models for v in variants_for(m, reference_batch.get(m, 128), args.compile)]
    n = args.images + args.warmup * 256 + 256
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (n,), generator=generator)

    results: dict[str, list[float]] = {v.label: [] for v in variants}
    for round_ in range(args.rounds):
        for variant in variants if round_ % 2 == 0 else variants[::-1]:
            results[variant.label].append(measure(variant, images, labels, args.images, args.warmup))
    print(f"digit models, training images/s, {args.threads} threads, torch {torch.__version__}, "
          f"median of {args.rounds} rounds x {args.images} images (spread in brackets)")
    print(f"{'configuration':58} {'images/s':>9} {'spread':>13} {'ratio':>6}")
    for variant in variants:
        runs = results[variant.label]
        reference = statistics.median(results[next(v.label for v in variants if v.model == variant.model)])
        median = statistics.median(runs)
        print(f"{variant.label:58} {median:9.0f} {f'[{min(runs):.0f}-{max(runs):.0f}]':>13} {median / reference:5.2f}x")


if __name__ == "__main__":
    main()
