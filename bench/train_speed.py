"""Training images/s of ``alexnet-cifar`` on this machine: the levers one at a time, side by side, in one invocation.

A benchmark, not a test. Every configuration trains the same network with the product's step
(:func:`training.loop.epoch_steps`: slice a batch of device-resident uint8 images, the paper's
augmentation, forward, loss, backward, SGD + Nesterov) on the same synthetic 32x32 images, for
``--steps`` steps after ``--warmup`` steps, in rounds that alternate the order (this machine is
noisy). Reported: the median images/s of each and its ratio to the first row, the reference
(the recipe the shipped 34.99 % model was trained with: fp32, LRN, NCHW).

Levers: ``lrn`` -- the paper's local response normalisation in conv1 and conv2 (on / off);
``bf16`` -- ``torch.autocast`` to bfloat16 (fast where the CPU has AVX-512 BF16 or AMX);
``channels_last`` -- NHWC tensors, oneDNN's preferred layout; ``compile`` -- ``torch.compile``.

    .venv/bin/python bench/train_speed.py --threads 2
    .venv/bin/python bench/train_speed.py --threads 2 --compile     # adds torch.compile rows (slow to warm up)
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch

import convnets
from training.image_augment import ImageAugment, colour_pca
from training.loop import TrainConfig, epoch_steps, make_optimizer


@dataclass(frozen=True)
class Variant:
    label: str
    lrn: bool
    bf16: bool
    channels_last: bool
    compile: bool = False
    width: float = 1.0
    columns: int = 1


def measure(variant: Variant, images: torch.Tensor, labels: torch.Tensor, steps: int, warmup: int, batch: int) -> float:
    """Images/s over ``steps`` optimiser steps of ``variant`` after ``warmup`` steps."""
    torch.manual_seed(0)
    model = convnets.get_model("alexnet-cifar", lrn=variant.lrn, width=variant.width, columns=variant.columns)
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    config = TrainConfig(model="alexnet-cifar", batch_size=batch, epochs=1).resolved()
    optimizer = make_optimizer(config, model)
    net = torch.compile(model) if variant.compile else model
    pca = colour_pca(images)
    augment = ImageAugment(crop=32, pad=4)
    n = (steps + warmup) * batch
    generator = torch.Generator().manual_seed(0)

    def augment_fn(batch_x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        return augment.train_batch(batch_x, pca, g)

    stream = epoch_steps(config, net, optimizer, images[:n], labels[:n], 0, generator,
                         amp_dtype=torch.bfloat16 if variant.bf16 else None, augment=augment_fn,
                         channels_last=variant.channels_last)
    start = None
    for step, loss, _ in stream:
        if step == warmup - 1:
            loss.item()
            start = time.perf_counter()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration and round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (inductor) variants")
    parser.add_argument("--columns", action="store_true", help="also time the two-column width-2 network (96 conv1 kernels)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    variants = [
        Variant("reference: fp32, LRN, NCHW (the 34.99 % model's recipe)", lrn=True, bf16=False, channels_last=False),
        Variant("channels_last", lrn=True, bf16=False, channels_last=True),
        Variant("bf16 autocast", lrn=True, bf16=True, channels_last=False),
        Variant("bf16 + channels_last", lrn=True, bf16=True, channels_last=True),
        Variant("no LRN", lrn=False, bf16=False, channels_last=False),
        Variant("shipped recipe: no LRN, bf16, channels_last", lrn=False, bf16=True, channels_last=True),
    ]
    if args.compile:
        variants.append(Variant("shipped recipe + torch.compile", lrn=False, bf16=True, channels_last=True, compile=True))
    if args.columns:
        variants.append(Variant("two columns, width 2 (96 conv1 kernels), shipped recipe", lrn=False, bf16=True,
                                channels_last=True, width=2.0, columns=2))
    n = (args.steps + args.warmup) * args.batch_size
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (n,), generator=generator)

    results: dict[str, list[float]] = {v.label: [] for v in variants}
    for round_ in range(args.rounds):
        order = variants if round_ % 2 == 0 else variants[::-1]
        for variant in order:
            results[variant.label].append(measure(variant, images, labels, args.steps, args.warmup, args.batch_size))
    reference = statistics.median(results[variants[0].label])
    print(f"alexnet-cifar training images/s, batch {args.batch_size}, {args.threads} threads, torch {torch.__version__}, "
          f"median of {args.rounds} rounds x {args.steps} steps")
    print(f"{'configuration':60} {'images/s':>9} {'ratio':>6}")
    for variant in variants:
        median = statistics.median(results[variant.label])
        print(f"{variant.label:60} {median:9.0f} {median / reference:5.2f}x")


if __name__ == "__main__":
    main()
