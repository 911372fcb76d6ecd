"""The AlexNet paper's experiments on CIFAR-sized networks, each a function that writes a results JSON.

* :func:`relu_vs_tanh` -- Figure 1: a four-layer CNN (``cnn4-cifar``) with ReLUs reaches 25 %
  training error on CIFAR-10 "six times faster" than the same network with tanh units. Each
  non-linearity gets its own learning-rate sweep (the paper chose each network's rate
  independently), and the best run of each is compared: epochs and seconds to the target.
* :func:`dropout_augmentation` -- ``alexnet-cifar`` with dropout on/off x augmentation on/off:
  train and test error per epoch.

Results go to ``<results_dir()>/<name>.json`` (``--out`` to change the folder): the conditions,
one curve per run (per epoch: loss, training error, test error, seconds) and a summary. Run::

    convnet-lab experiment relu-tanh --data PATH_OR_cifar10 --preset smoke|cpu|gpu
    convnet-lab experiment dropout-aug --data PATH_OR_cifar10 --preset smoke|cpu|gpu
    convnet-lab experiment evaluate alexnet-torchvision --data imagenette --ten-patch
    convnet-lab experiment time-retrieval
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

import convnets
from convnets.retrieval import benchmark_nearest

from .data import DataError
from .image_augment import ImageAugment, colour_pca
from .images import ImageData, class_count, evaluate_topk, load_images
from .loop import PRECISIONS, Diverged, Stopped, TrainConfig, describe_device, pick_device, train
from .store import default_runs_dir

SHIPPED_RESULTS = Path(__file__).parent / "results"  # this project's measured results, shown until you have your own


def results_dir() -> Path:
    """Where experiment results go and are read from: ``$CONVNET_LAB_EXPERIMENTS``, else ``experiments/`` in the
    runs folder (``$CONVNET_LAB_RUNS`` or ``~/.cache/convnet-lab/runs``) -- never the current folder."""
    chosen = os.environ.get("CONVNET_LAB_EXPERIMENTS", "").strip()
    return Path(chosen) if chosen else default_runs_dir() / "experiments"

# Reduced settings. "cpu" is sized for about 15 minutes on this project's 2-core CPU with one thread
# (measured: width 16, batch 64, 5,000 images reach 25 % training error in about 25 epochs, 75-190 s
# depending on the machine's load); "smoke" for one to two minutes; "gpu" is the full experiment.
RELU_TANH_PRESETS: dict[str, dict] = {
    # smoke: a pipeline check; 20 epochs of 1,000 images do not reach 25 %, so its target is 50 %
    "smoke": {"train_size": 1000, "test_size": 500, "epochs": 20, "lrs": (0.01, 0.03), "width": 16, "batch_size": 64,
              "target": 50.0},
    "cpu": {"train_size": 5000, "test_size": 1000, "epochs": 30, "lrs": (0.003, 0.01, 0.03), "width": 16, "batch_size": 64,
            "target": 25.0},
    "gpu": {"train_size": 50000, "test_size": 10000, "epochs": 60, "lrs": (0.001, 0.003, 0.01, 0.03, 0.1), "width": 32,
            "batch_size": 128, "target": 25.0},
}
DROPOUT_AUG_PRESETS: dict[str, dict] = {
    "smoke": {"train_size": 1000, "test_size": 500, "epochs": 3, "width": 0.5, "hidden": 512, "lr": 0.01, "batch_size": 64},
    # cpu: a small training set for many epochs, so overfitting (and what dropout and augmentation do to it) shows
    "cpu": {"train_size": 2500, "test_size": 1000, "epochs": 20, "width": 0.5, "hidden": 1024, "lr": 0.01, "batch_size": 64},
    # cpu-full: the whole of CIFAR-10 at width 1 (about 70 s an epoch with --precision bf16 --no-lrn --threads 2)
    "cpu-full": {"train_size": 50000, "test_size": 10000, "epochs": 8, "width": 1.0, "hidden": 1024, "lr": 0.02,
                 "batch_size": 128},
    "gpu": {"train_size": 50000, "test_size": 10000, "epochs": 60, "width": 2.0, "hidden": 2048, "lr": 0.01,
            "batch_size": 128},
}


def _log(line: str) -> None:
    print(line, flush=True)


def curve_run(config: TrainConfig, data: ImageData, *, target_error: float | None = None, stop_at_target: bool = False,
              clean_train_eval: int = 0, log: Callable[[str], None] = _log, label: str = "") -> tuple[nn.Module | None, dict]:
    """One run of :func:`training.loop.train` (the one training loop) recorded as an experiment's curve.

    Per epoch: mean loss and training error over the epoch's batches (as trained: dropout and augmentation on),
    test error, optionally ``train_error_clean`` (eval mode, the first ``clean_train_eval`` training images) and the
    training seconds so far. With ``target_error`` the first epoch whose training error is at or below it is recorded
    (``epochs_to_target``, ``seconds_to_target``), and with ``stop_at_target`` the run ends there (no model is
    returned then). A run whose loss turns NaN/inf ends marked ``diverged``. Returns (model or None, result).
    """
    curve: list[dict] = []
    result: dict = {"label": label, "lr": config.lr, "curve": curve, "epochs_to_target": None, "seconds_to_target": None,
                    "diverged": False}
    clean = (data.train_x[:clean_train_eval], data.train_y[:clean_train_eval]) if clean_train_eval else None
    elapsed = 0.0

    def extra(model: nn.Module) -> dict:
        return {"train_error_clean": evaluate_topk(model, clean, k=(1,))["top1_error"]} if clean else {}

    def monitor(event: dict) -> bool:
        nonlocal elapsed
        if event["event"] != "epoch":
            return False
        metrics = event["metrics"]
        elapsed += metrics["epoch_seconds"]
        row = {"epoch": int(event["epoch"]), "loss": metrics["epoch_loss"], "train_error": metrics["epoch_train_error"],
               "test_error": metrics["test_error"], "seconds": elapsed,
               **({"train_error_clean": metrics["train_error_clean"]} if "train_error_clean" in metrics else {})}
        curve.append(row)
        if target_error is None or result["epochs_to_target"] is not None or row["train_error"] > target_error:
            return False
        result["epochs_to_target"], result["seconds_to_target"] = row["epoch"], elapsed
        return stop_at_target

    model = None
    try:
        model, _ = train(config, data=data, progress=False, log=lambda line: log(f"{label} {line}"), monitor=monitor,
                         extra_metrics=extra)
    except Stopped:
        pass  # the target was reached
    except Diverged:
        result["diverged"] = True
        curve.append({"epoch": len(curve) + 1, "loss": math.nan, "train_error": math.nan, "seconds": elapsed})
        log(f"{label} epoch {len(curve)}: loss not finite -- diverged, stopping")
    result["seconds"] = elapsed
    return model, result


def experiment_config(model: str, options: dict, data: ImageData, **settings) -> TrainConfig:
    """A run of an experiment: ``settings`` (epochs, batch_size, lr, ...) over plain SGD -- no warm-up, Nesterov or
    label smoothing unless given -- on ``data``'s device."""
    base = {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0, "label_smoothing": 0.0, "nesterov": False,
            "warmup": 0.0, "schedule": "constant", "augment": False, "seed": 0}
    return TrainConfig(model=model, options=options, data=data.name, device=str(data.train_x.device),
                       **{**base, **settings})


def _rank(run: dict) -> tuple:
    """Best run first: reached the target, in fewest epochs, then seconds; else lowest final training error."""
    final = run["curve"][-1]["train_error"] if run["curve"] and not run["diverged"] else math.inf
    reached = run["epochs_to_target"] is not None
    return (not reached, run["epochs_to_target"] or math.inf, run["seconds_to_target"] or math.inf, final)


def relu_vs_tanh(data: ImageData, *, lrs: Sequence[float] = (0.003, 0.01, 0.03), epochs: int = 12, width: int = 32,
                 init: str = "default", input_scaling: str = "standardise", batch_size: int = 128, momentum: float = 0.9,
                 target_error: float = 25.0, stop_at_target: bool = True, seed: int = 0,
                 log: Callable[[str], None] = _log) -> dict:
    """Figure 1 of the paper: epochs and seconds to ``target_error`` % training error, ReLU vs tanh.

    Both networks are ``cnn4-cifar`` built from the same seed (identical initial weights), trained
    with SGD (momentum, batch ``batch_size``, constant learning rate, no regularisation) on the
    same data in the same order; each activation is run at every rate in ``lrs`` and its best run
    (fewest epochs to the target, then fewest seconds) is compared. ``data`` must be on the device.
    """
    runs = []
    for activation in ("relu", "tanh"):
        for lr in lrs:
            options = {"activation": activation, "width": width, "init": init, "input_scaling": input_scaling}
            config = experiment_config("cnn4-cifar", options, data, epochs=epochs, batch_size=batch_size, lr=lr,
                                       momentum=momentum, seed=seed)
            _, run = curve_run(config, data, target_error=target_error, stop_at_target=stop_at_target, log=log,
                               label=f"{activation} lr={lr:g}")
            runs.append({"activation": activation, **run})
    best = {a: min((r for r in runs if r["activation"] == a), key=_rank) for a in ("relu", "tanh")}
    summary: dict = {a: {"lr": r["lr"], "epochs_to_target": r["epochs_to_target"], "seconds_to_target": r["seconds_to_target"],
                         "final_train_error": r["curve"][-1]["train_error"] if r["curve"] else None}
                     for a, r in best.items()}
    relu, tanh = best["relu"], best["tanh"]
    both = relu["epochs_to_target"] and tanh["epochs_to_target"]
    summary["ratio_epochs"] = tanh["epochs_to_target"] / relu["epochs_to_target"] if both else None
    summary["ratio_seconds"] = tanh["seconds_to_target"] / relu["seconds_to_target"] if both else None
    summary["paper"] = "ReLU reaches 25 % training error six times faster than tanh (Figure 1)"
    conditions = {"model": "cnn4-cifar", "width": width, "init": init, "input_scaling": input_scaling, "lrs": list(lrs),
                  "epochs_cap": epochs, "batch_size": batch_size, "optimizer": f"sgd momentum {momentum}, constant lr",
                  "weight_decay": 0.0, "augmentation": None, "target_train_error": target_error,
                  "stop_at_target": stop_at_target, "seed": seed, "data": data.summary(),
                  "train_error_is": "mean over the epoch's mini-batches while training"}
    return {"experiment": "relu-vs-tanh", "conditions": conditions, "runs": runs, "summary": summary}


def dropout_augmentation(data: ImageData, *, epochs: int = 8, width: float = 0.5, hidden: int = 1024, lr: float = 0.01,
                         batch_size: int = 128, momentum: float = 0.9, weight_decay: float = 5e-4,
                         settings: Sequence[tuple[float, bool]] = ((0.5, True), (0.5, False), (0.0, True), (0.0, False)),
                         clean_train_eval: int = 1000, ten_patch: bool = True, seed: int = 0,
                         lrn: bool = True, log: Callable[[str], None] = _log, **loop) -> dict:
    """``alexnet-cifar`` with dropout on/off and the paper's augmentation on/off: train and test error per epoch.

    Each ``(dropout, augmented)`` setting starts from the same seed; SGD with momentum and weight
    decay (the paper's 0.9 and 5e-4, on weights only) and a cosine learning-rate decay; ``loop`` passes further
    :class:`TrainConfig` settings (e.g. ``precision="bf16"``, ``warmup=1``) to every run. Augmentation is pad-and-crop
    translations, reflections and PCA colour (:meth:`ImageAugment.cifar`). Besides the running
    training error, ``train_error_clean`` is measured in eval mode on the first ``clean_train_eval``
    training images, so the gap to the test error shows overfitting; with ``ten_patch`` the final
    model's test error is also measured the paper's way, averaging the softmax of ten patches.
    """
    pca = colour_pca(data.train_x)  # what the loop computes for every augmented run, recorded in the conditions
    runs = []
    for dropout, augmented in settings:
        label = f"dropout={dropout:g} aug={'on' if augmented else 'off'}"
        options = {"width": width, "hidden": hidden, "dropout": dropout, **({} if lrn else {"lrn": False})}
        config = experiment_config("alexnet-cifar", options, data,
                                   epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                                   weight_decay=weight_decay, schedule="cosine", augment=augmented, seed=seed, **loop)
        model, run = curve_run(config, data, clean_train_eval=min(clean_train_eval, len(data.train_y)), log=log,
                               label=label)
        augment = ImageAugment.cifar()
        if ten_patch and model is not None:
            run["ten_patch_test_error"] = evaluate_topk(model, data, k=(1,), ten_patch=True)["top1_error"]
        runs.append({"dropout": dropout, "augmentation": augment.as_dict() if augmented else None, **run})
    summary = {r["label"]: {"final_test_error": r["curve"][-1].get("test_error"),
                            "ten_patch_test_error": r.get("ten_patch_test_error"),
                            "best_test_error": min(c.get("test_error", math.inf) for c in r["curve"]),
                            "final_train_error_clean": r["curve"][-1].get("train_error_clean"),
                            "gap": (r["curve"][-1].get("test_error") or 0) - (r["curve"][-1].get("train_error_clean") or 0)}
               for r in runs}
    conditions = {"model": "alexnet-cifar", "width": width, "hidden": hidden, "lrn": lrn, "lr": lr,
                  "schedule": "cosine to lr/100",
                  "epochs": epochs, "batch_size": batch_size, "momentum": momentum, "weight_decay": weight_decay,
                  "weight_decay_on": "weights, not biases", "colour_pca": pca.as_dict(), "seed": seed,
                  "data": data.summary(), **loop}
    return {"experiment": "dropout-augmentation", "conditions": conditions, "runs": runs, "summary": summary}


def read_results(folder: str | Path) -> tuple[list[dict], list[str]]:
    """Every results JSON in ``folder`` with its file name under ``"file"``, the headline first (:func:`headline_key`);
    and the files that are not results of this module, each as 'name (why)'."""
    results, skipped = [], []
    for path in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else ():
        try:
            result = json.loads(path.read_text())
            if not isinstance(result, dict) or not {"experiment", "runs", "summary"} <= set(result):
                raise ValueError("not an experiment result")
        except (OSError, ValueError) as exc:
            skipped.append(f"{path.name} ({type(exc).__name__})")
            continue
        results.append({**result, "file": path.name})
    newest_first = sorted(results, key=lambda r: str(r.get("finished", "")), reverse=True)
    return sorted(newest_first, key=headline_key), skipped  # a stable sort: the newest first among equals


def headline_key(result: dict) -> tuple:
    """Sort key, headline first: the paper's conditions (ReLU vs tanh: N(0, 0.01) weights and mean-subtracted pixels,
    as cuda-convnet fed them), then sweeps where both sides reached the target (one that never did is not a race's
    answer), then more training images."""
    conditions = result.get("conditions") if isinstance(result.get("conditions"), dict) else {}
    summary = result.get("summary") if isinstance(result.get("summary"), dict) else {}
    race = result.get("experiment") == "relu-vs-tanh"
    papers = not race or (conditions.get("init") == "gaussian" and conditions.get("input_scaling") == "mean")
    finished = not race or summary.get("ratio_epochs") is not None
    data = conditions.get("data") if isinstance(conditions.get("data"), dict) else {}
    train_size = data.get("train_size") if isinstance(data.get("train_size"), int) else 0
    return (not papers, not finished, -train_size)


def save_result(result: dict, out: str | Path | None = None, name: str | None = None) -> Path:
    """Write ``result`` as ``out/<name>.json`` (atomically; ``out`` defaults to :func:`results_dir`), adding when and
    where it ran."""
    out = Path(out) if out is not None else results_dir()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name or result['experiment']}.json"
    result = {**result, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "torch": torch.__version__, "threads": torch.get_num_threads()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=out)
    with os.fdopen(fd, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- command line


def _load(args: argparse.Namespace, size: int = 32) -> ImageData:
    """The data set at 32x32, decoding only about ``train_size`` / ``test_size`` images, class-balanced."""
    n_classes = class_count(args.data)

    def per_class(total: int | None) -> int | None:
        return None if total is None else max(1, math.ceil(total / n_classes))

    data = load_images(args.data, size=size, train_per_class=per_class(args.train_size),
                       test_per_class=per_class(args.test_size))
    return data.subset(args.train_size, args.test_size)


def _settings(args: argparse.Namespace, presets: dict[str, dict]) -> dict:
    chosen = dict(presets[args.preset])
    for key in chosen:
        value = getattr(args, key, None)
        if value is not None:
            chosen[key] = value
    return chosen


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The experiments' sub-commands (relu-tanh, dropout-aug, evaluate, time-retrieval) under ``sub``; each sets
    ``func`` to :func:`run`. ``convnet-lab experiment`` and ``python -m training.experiments`` share them."""

    def common(p: argparse.ArgumentParser, presets: dict[str, dict]) -> None:
        p.add_argument("--data", default="cifar10", help="'cifar10' (torchvision download) or an image folder / .tar.gz")
        p.add_argument("--preset", choices=sorted(presets), default="smoke",
                       help="; ".join(f"{k}: {v}" for k, v in presets.items()))
        p.add_argument("--train-size", type=int, help="training images (class-balanced subset)")
        p.add_argument("--test-size", type=int, help="test images")
        p.add_argument("--epochs", type=int, help="epochs (a cap for relu-tanh)")
        p.add_argument("--batch-size", type=int)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, ...")
        p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
        p.add_argument("--out", help="folder for the results JSON (default $CONVNET_LAB_EXPERIMENTS or "
                       "~/.cache/convnet-lab/runs/experiments)")
        p.add_argument("--name", help="file name of the results (without .json)")

    p = sub.add_parser("relu-tanh", help="Figure 1: epochs to 25 %% training error, ReLU vs tanh, lr swept per activation")
    common(p, RELU_TANH_PRESETS)
    p.add_argument("--lrs", type=lambda s: tuple(float(v) for v in s.split(",")), help="comma-separated rates, e.g. 0.01,0.03")
    p.add_argument("--width", type=int, help="channels of conv1 and conv2 (conv3 has twice as many)")
    p.add_argument("--init", choices=["default", "gaussian"], default="default", help="PyTorch's init or N(0, 0.01)")
    p.add_argument("--input-scaling", choices=["standardise", "mean"], default="standardise")
    p.add_argument("--target", type=float, help="training error to reach, percent (25 as in the paper; smoke: 50)")
    p.add_argument("--no-stop", action="store_true", help="keep training after the target (full curves)")

    p = sub.add_parser("dropout-aug", help="alexnet-cifar with dropout on/off x augmentation on/off")
    common(p, DROPOUT_AUG_PRESETS)
    p.add_argument("--width", type=float, help="channel multiplier of alexnet-cifar (1 = one GPU column of the paper)")
    p.add_argument("--hidden", type=int, help="units of fc6 and fc7")
    p.add_argument("--lr", type=float)
    p.add_argument("--no-lrn", action="store_true", help="without the paper's local response normalisation (faster)")
    p.add_argument("--warmup", type=float, default=0.0, help="epochs of linear warm-up from lr/10 (default 0)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="auto (fp32 on a CPU), fp32, bf16, fp16")

    p = sub.add_parser("evaluate", help="top-1 / top-5 error of a model on a labelled image folder")
    p.add_argument("model", help="a pretrained name (alexnet-torchvision, ...) or a convnet-lab checkpoint path")
    p.add_argument("--weights", help="weights file for the pretrained name (e.g. alexnet-owt-7be5be79.pth)")
    p.add_argument("--data", required=True, help="'cifar10', 'imagenette' or an image folder / .tar.gz")
    p.add_argument("--size", type=int, help="resize images (shorter side, centre crop) when loading; "
                   "default 256 for 224x224 models (the paper's protocol), else the model's input size")
    p.add_argument("--test-per-class", type=int)
    p.add_argument("--ten-patch", action="store_true", help="average the softmax of the ten patches")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto")

    p = sub.add_parser("time-retrieval", help="milliseconds per nearest-neighbour query over a 60,000 x 84 bank")
    p.add_argument("--n", type=int, default=60_000)
    p.add_argument("--dim", type=int, default=84)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")

    for p in sub.choices.values():
        p.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.experiments ...`` (the same as ``convnet-lab experiment ...``)."""
    parser = argparse.ArgumentParser(prog="convnet-lab experiment", description=__doc__.split("\n\n")[0])
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.argv = ["experiment", *(sys.argv[1:] if argv is None else argv)]
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run the experiment sub-command ``args.command``; 2 and one line on stderr for bad input."""
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    command = "convnet-lab " + shlex.join(args.argv)
    if args.command == "time-retrieval":
        print(json.dumps(benchmark_nearest(args.n, args.dim), indent=1))
        return 0
    try:
        if args.command == "evaluate":
            return _evaluate(args, device)
        if args.command == "relu-tanh":
            settings = _settings(args, RELU_TANH_PRESETS)
            args.train_size, args.test_size = settings["train_size"], settings["test_size"]
            data = _load(args).to(device)
            result = relu_vs_tanh(data, lrs=settings["lrs"], epochs=settings["epochs"], width=settings["width"],
                                  init=args.init, input_scaling=args.input_scaling, batch_size=settings["batch_size"],
                                  target_error=settings["target"], stop_at_target=not args.no_stop, seed=args.seed)
        else:
            settings = _settings(args, DROPOUT_AUG_PRESETS)
            args.train_size, args.test_size = settings["train_size"], settings["test_size"]
            data = _load(args).to(device)
            result = dropout_augmentation(data, epochs=settings["epochs"], width=settings["width"],
                                          hidden=settings["hidden"], lr=settings["lr"], batch_size=settings["batch_size"],
                                          seed=args.seed, lrn=not args.no_lrn, warmup=args.warmup,
                                          precision=args.precision)
    except (DataError, ValueError, convnets.CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result["command"] = command
    result["preset"] = args.preset
    result["device"] = describe_device(device)
    path = save_result(result, args.out, args.name)
    print(json.dumps(result["summary"], indent=1))
    print(f"results: {path}")
    return 0


def _evaluate(args: argparse.Namespace, device: torch.device) -> int:
    if Path(args.model).is_file():
        payload = convnets.read_checkpoint(args.model)
        model, name = convnets.model_from_checkpoint(payload, args.model), payload["model"]
    else:
        model, _ = convnets.load_pretrained(args.model, weights_path=args.weights)
        name = args.model
    model = model.to(device).eval()
    side = model.input_shape[-1]
    size = args.size or (256 if side == 224 else side)  # the paper's protocol: shorter side 256, then 224 crops
    data = load_images(args.data, size=size, train_per_class=0, test_per_class=args.test_per_class)
    result = evaluate_topk(model, data.to(device), k=(1, 5), ten_patch=args.ten_patch)
    print(json.dumps({"model": name, "data": data.summary()["description"], **result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
