"""The ``convnet-lab`` command line: train, evaluate, layers."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import convnets
from convnets import CheckpointError

from .augment import Distortion
from .data import DataError, load_digits
from .loop import RECIPES, TrainConfig, error_rate, pick_device, train


def _model_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"model option '{pair}' must look like key=value, e.g. --option dropout=0.5")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="lenet5", help=f"one of: {', '.join(convnets.model_names())}")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="model constructor option, e.g. dropout=0.3 (repeatable)")
    p.add_argument("--data", default="mnist",
                   help="'mnist' (torchvision download), 'sample' (offline 5,000 digits) or a path (.npz / idx folder)")
    p.add_argument("--exclude-sample", action="store_true",
                   help="drop the offline sample's 5,000 digits from training so they stay held out")
    p.add_argument("--epochs", type=int, help="passes over the training set (recipe default per model)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=["sgd", "adam"])
    p.add_argument("--lr", type=float, help="peak learning rate (cosine decay to lr/100)")
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--distort", action="store_true", help="the paper's random affine distortions of training digits")
    defaults = Distortion()
    for name, help_text in [("translate", "pixels"), ("scale", "relative"), ("squeeze", "relative"),
                            ("shear", "horizontal shear factor"), ("rotate", "degrees"), ("elastic", "pixels, 0 = off")]:
        p.add_argument(f"--{name}", type=float, default=getattr(defaults, name),
                       help=f"distortion strength, {help_text} (default {getattr(defaults, name)})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, ...")
    p.add_argument("--limit", type=int, help="train on the first N training digits only (quick runs)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build a :class:`TrainConfig` from parsed ``train`` arguments."""
    distortion = None
    if args.distort:
        distortion = Distortion(translate=args.translate, scale=args.scale, squeeze=args.squeeze,
                                shear=args.shear, rotate=args.rotate, elastic=args.elastic)
    return TrainConfig(model=args.model, options=_model_options(args.option), data=args.data,
                       exclude_sample=args.exclude_sample, epochs=args.epochs, batch_size=args.batch_size,
                       optimizer=args.optimizer, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                       distort=distortion, seed=args.seed, device=args.device, train_limit=args.limit)


def cmd_train(args: argparse.Namespace) -> int:
    out = Path(args.out or f"runs/{args.model}-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} already holds files; choose a new --out folder (nothing was overwritten)")
    config = config_from_args(args)
    if config.model not in convnets.model_names():
        raise ValueError(f"unknown model '{config.model}'; choose one of: {', '.join(convnets.model_names())}")
    convnets.get_model(config.model, **config.options)  # fail on bad options before loading data
    config.resolved()
    recipe = shlex.join(["convnet-lab", *args.argv])
    _, card = train(config, out=out, progress=not args.quiet, recipe=recipe)
    print(f"test error {card['test_error']:.2f}% on {card['test_set']}; weights and card: {out / 'model.pt'}")
    return 0


def _load_any(ref: str):
    path = Path(ref)
    if path.suffix == ".pt" or path.exists():
        payload = convnets.read_checkpoint(path)
        return convnets.model_from_checkpoint(payload, str(path)).eval(), payload["card"]
    return convnets.load_pretrained(ref)


def cmd_evaluate(args: argparse.Namespace) -> int:
    model, card = _load_any(args.weights)
    device = pick_device(args.device)
    data = load_digits(args.data).to(device)
    model.to(device)
    error = error_rate(model, data.test_x, data.test_y)
    print(f"{card.get('model', args.weights)}: test error {error:.2f}% "
          f"({len(data.test_y)} digits: {data.description}, test split)")
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    model = convnets.get_model(args.model)
    rows = convnets.layer_table(model)
    print(f"{'layer':8} {'kind':14} {'output':>14} {'params':>9} {'connections':>12}")
    for r in rows:
        shape = "x".join(map(str, r.output_shape))
        print(f"{r.name:8} {r.kind:14} {shape:>14} {r.params:>9,} {r.connections:>12,}")
    print(f"{'total':8} {'':14} {'':>14} {sum(r.params for r in rows):>9,} {sum(r.connections for r in rows):>12,}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convnet-lab", description="Train and inspect LeNet-5 and friends.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model; writes OUT/last.pt every epoch and OUT/model.pt at the end",
                       description="Train a named model on a named data source. Recipe defaults per model: "
                       + "; ".join(f"{k}: {v}" for k, v in RECIPES.items()))
    _add_train_arguments(p)
    p.add_argument("--out", help="new folder for checkpoints (default runs/MODEL-TIMESTAMP)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test error of shipped weights or a checkpoint",
                       description="Measure test error of a shipped model (by name) or a checkpoint file.")
    p.add_argument("weights", help="shipped model name (lenet5, lenet5-modern) or a .pt checkpoint path")
    p.add_argument("--data", default="mnist", help="'mnist', 'sample' or a path (.npz / idx folder)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("layers", help="per-layer shapes, params and connections of a model",
                       description="Print the layer table (the paper's params and connections) of a model.")
    p.add_argument("model", help=f"one of: {', '.join(convnets.model_names())}")
    p.set_defaults(func=cmd_layers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except (ValueError, DataError, CheckpointError, FileNotFoundError, PermissionError) as exc:
        print(f"convnet-lab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("convnet-lab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
