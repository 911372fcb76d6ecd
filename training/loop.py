"""The training loop: one function, read top to bottom.

Data sits on the device as uint8 tensors; each step slices a batch, converts
it to floats, optionally distorts it (on the device), and takes one optimiser
step (under ``torch.autocast`` on cuda). After each epoch the model is
evaluated on the test split and a checkpoint -- weights, optimiser, RNG states,
epoch -- is written atomically to ``out/last.pt``, from which ``resume=True``
continues exactly; the final weights with their card go to ``out/model.pt``.

The same function runs under ``torchrun --nproc_per_node=N``: every rank takes
its slice of each global batch, DistributedDataParallel averages gradients,
and rank 0 alone logs, reports and writes (see :mod:`training.distributed`).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import convnets
from convnets.checkpoint import load_state
from convnets.lenet import map_loss

from . import distributed
from .augment import Distortion
from .data import DataError, DigitData, as_float, load_digits
from .distributed import SINGLE, Dist

# Per-model defaults; any of them can be overridden on the command line.
RECIPES: dict[str, dict] = {
    "lenet5": {"optimizer": "adam", "lr": 0.002, "momentum": 0.9, "batch_size": 16, "epochs": 20},
    "lenet5-modern": {"optimizer": "adam", "lr": 0.003, "momentum": 0.9, "batch_size": 128, "epochs": 30},
}


@dataclass
class TrainConfig:
    """Everything that defines a run; stored in every checkpoint's card."""

    model: str = "lenet5"
    options: dict = field(default_factory=dict)
    data: str = "mnist"
    exclude_sample: bool = False
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float = 0.0
    distort: Distortion | None = None
    seed: int = 0
    device: str = "auto"
    train_limit: int | None = None  # use only the first N training digits (quick runs, tests)
    precision: str = "auto"  # auto: bf16 autocast on cuda (fp16 where bf16 is missing), fp32 elsewhere

    def resolved(self) -> TrainConfig:
        """Fill unset fields from the model's recipe and validate them."""
        recipe = RECIPES.get(self.model, RECIPES["lenet5-modern"])
        values = {k: (getattr(self, k) if getattr(self, k) is not None else recipe[k]) for k in recipe}
        config = TrainConfig(**{**asdict(self), "distort": self.distort, **values})
        if config.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {config.epochs}")
        if config.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {config.batch_size}")
        if not config.lr > 0:
            raise ValueError(f"learning rate must be positive, got {config.lr}")
        if config.optimizer not in ("sgd", "adam"):
            raise ValueError(f"unknown optimizer '{config.optimizer}'; choose sgd or adam")
        if config.precision not in PRECISIONS:
            raise ValueError(f"unknown precision '{config.precision}'; choose {', '.join(PRECISIONS)}")
        if config.train_limit is not None and config.train_limit < 1:
            raise ValueError(f"limit must be at least 1 digit, got {config.train_limit}")
        return config

    def card(self) -> dict:
        """Plain JSON-able values (the checkpoint card's ``config``, the run store's ``config``)."""
        d = asdict(self)
        d["distort"] = self.distort.as_dict() if self.distort else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of :meth:`card`."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(sorted(unknown))}")
        return cls(**{**d, "distort": Distortion(**d["distort"]) if d.get("distort") else None})


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
STOP_SYNC_STEPS = 25  # under DDP, ranks share a stop request every this many steps (and at every epoch's end)


class Stopped(Exception):
    """Raised by :func:`train` when its ``monitor`` asks it to stop (a cancelled run)."""


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_config(config: TrainConfig) -> TrainConfig:
    """The resolved config, or a ValueError naming the bad setting -- without loading any data."""
    model = convnets.get_model(config.model, **config.options)  # unknown model or option
    if getattr(model, "input_shape", None) != (1, 28, 28):
        digit_models = [n for n in convnets.model_names() if getattr(convnets.get_model(n), "input_shape", None) == (1, 28, 28)]
        raise ValueError(f"'{config.model}' takes colour images, and this loop trains digit models ({', '.join(digit_models)}); "
                         "train image models with `convnet-lab experiment`")
    source = config.data
    if source not in ("mnist", "sample"):  # the names load_digits accepts
        if not (os.sep in source or source.endswith(".npz") or Path(source).exists()):
            raise DataError(f"unknown data source '{source}'; use 'mnist', 'sample', or a path to an .npz or idx folder")
        if not Path(source).exists():
            raise DataError(f"data path {source} does not exist; pass an .npz file or a folder with the MNIST idx files")
    return config.resolved()


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype for ``torch.autocast`` (None: plain fp32). Mixed precision only on cuda."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if device.type != "cuda":
        raise ValueError(f"precision {precision} needs a cuda device (this run is on {device}); use --precision fp32")
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def describe_device(device: torch.device) -> str:
    """``cpu``, ``cuda:0 (NVIDIA H100 80GB HBM3)``, ..."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


def loss_fn(model: nn.Module, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The paper's MAP criterion for the RBF head, cross-entropy for a softmax head."""
    head = getattr(getattr(model, "module", model), "head", "softmax")  # look through a DDP wrapper
    return map_loss(scores, target) if head == "rbf" else F.cross_entropy(scores, target)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Predicted classes for uint8 images (N, 28, 28)."""
    was_training = model.training
    model.eval()
    preds = [model(as_float(images[i:i + batch_size])).argmax(1) for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long, device=images.device)


def error_rate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Classification error in percent."""
    return 100.0 * (predict(model, images) != labels).float().mean().item()


def _log(line: str) -> None:
    print(line, flush=True)


def _lr_at(config: TrainConfig, epoch: float) -> float:
    """Cosine decay from lr to lr/100 over the run (epoch may be fractional)."""
    progress = min(epoch / config.epochs, 1.0)
    return config.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum or Adam, as the (resolved) config says."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def epoch_steps(config: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer, train_x: torch.Tensor,
                train_y: torch.Tensor, epoch: int, generator: torch.Generator | None = None, *, ctx: Dist = SINGLE,
                distort_generator: torch.Generator | None = None, amp_dtype: torch.dtype | None = None,
                scaler: torch.amp.GradScaler | None = None) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """One epoch of optimiser steps over shuffled device-resident digits.

    Yields ``(step, summed loss, wrong count)`` of this rank's digits after each step, as tensors so the
    device is never forced to synchronise. Under DDP (``ctx.world > 1``) every rank draws the same
    permutation from ``generator`` and trains on its slice of each global batch of ``config.batch_size``.
    """
    n, batch_size = len(train_y), config.batch_size
    steps = distributed.num_steps(n, batch_size, ctx.world)
    order = torch.randperm(n, device=train_y.device, generator=generator)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(config, epoch + step / steps)
        batch = order[step * batch_size:(step + 1) * batch_size]
        idx = distributed.shard(batch, ctx)
        x, y = as_float(train_x[idx]), train_y[idx]
        if config.distort:
            x = config.distort(x, distort_generator or generator)
        with torch.autocast(x.device.type, dtype=amp_dtype) if amp_dtype else nullcontext():
            scores = model(x)
            loss = loss_fn(model, scores, y)
        # DDP averages gradients over ranks: weigh each rank's mean by its share of the global batch
        objective = loss * (len(y) * ctx.world / len(batch)) if ctx.world > 1 else loss
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(objective).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            objective.backward()
            optimizer.step()
        yield step, loss.detach() * len(y), (scores.detach().argmax(1) != y).sum()


def _rng_state(device: torch.device, generator: torch.Generator, distort_generator: torch.Generator) -> dict:
    state = {"device": device.type, "torch": torch.get_rng_state(), "order": generator.get_state(),
             "distort": distort_generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _resume(path: Path, config: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
            scaler: torch.amp.GradScaler | None, generator: torch.Generator, distort_generator: torch.Generator,
            ctx: Dist, device: torch.device) -> tuple[int, dict]:
    """Load ``last.pt`` into model, optimiser, scaler and RNGs; return (epochs done, card)."""
    payload = convnets.read_checkpoint(path)
    saved = TrainConfig.from_dict(payload["card"]["config"]).card()
    differs = sorted(k for k, v in config.card().items() if k != "device" and saved.get(k) != v)
    if differs:
        raise convnets.CheckpointError(f"{path} belongs to a run with other settings ({', '.join(differs)} differ); "
                                       "resume with the same options or train into a new --out folder")
    if "rng" not in payload:
        raise convnets.CheckpointError(f"{path} has no resume state (RNGs); train into a new --out folder")
    load_state(model, payload, str(path))
    optimizer.load_state_dict(payload["optimizer"])
    if scaler is not None and "scaler" in payload:
        scaler.load_state_dict(payload["scaler"])
    rng = payload["rng"][ctx.rank] if len(payload["rng"]) == ctx.world else payload["rng"][0]
    torch.set_rng_state(rng["torch"])
    if rng["device"] == device.type:  # a generator's state only fits a generator on the same kind of device
        generator.set_state(rng["order"])
        if distort_generator is not generator:
            distort_generator.set_state(rng["distort"])
        if "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], device)
    return payload["epoch"], payload["card"]


def train(config: TrainConfig, out: str | Path | None = None, data: DigitData | None = None,
          progress: bool = True, log: Callable[[str], None] = _log, recipe: str | None = None, *,
          resume: bool = False, monitor: Callable[[dict], bool | None] | None = None,
          report_every: float = 2.0) -> tuple[nn.Module, dict]:
    """Train ``config.model``; return the model (eval mode) and its card (config, data, metrics per epoch).

    ``resume=True`` continues from ``out/last.pt`` when there is one. ``monitor(event)`` (rank 0 only) gets
    ``{"event": "start" | "step" | "epoch", "epoch": epochs done (fractional), "step": optimiser steps done,
    "metrics": {name: value}}`` at the start, every ``report_every`` seconds of training and after each
    epoch; a true return stops the run with :class:`Stopped` (after the current step, or the checkpoint).
    Under torchrun (``WORLD_SIZE`` > 1) every rank calls this with the same arguments.
    """
    config = config.resolved()
    ctx, device = distributed.init(pick_device(config.device))
    master = ctx.master
    torch.manual_seed(config.seed)
    generator = torch.Generator(device=device)  # the data order: the same permutation on every rank
    generator.manual_seed(config.seed)
    distort_generator = generator  # one process: one stream, as always; under DDP each rank distorts differently
    if ctx.world > 1:
        distort_generator = torch.Generator(device=device)
        distort_generator.manual_seed(config.seed + 1 + ctx.rank)
    amp_dtype = autocast_dtype(config.precision, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None  # fp16 needs loss scaling, bf16 not
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # a worker trains many runs in one process

    data = (data or load_digits(config.data, exclude_sample=config.exclude_sample)).to(device)
    train_x, train_y = data.train_x, data.train_y
    if config.train_limit:
        train_x, train_y = train_x[:config.train_limit], train_y[:config.train_limit]
    model = convnets.get_model(config.model, **config.options).to(device)
    optimizer = make_optimizer(config, model)

    card = {"model": config.model, "options": config.options, "config": config.card(),
            "data": {**data.summary(), "train_size": len(train_y)},
            "recipe": recipe,
            "device": str(device), "torch": str(torch.__version__), "version": convnets.__version__, "epochs": []}
    start_epoch, elapsed = 0, 0.0
    last = Path(out) / "last.pt" if out is not None else None
    if resume and last is not None and last.exists():
        start_epoch, card = _resume(last, config, model, optimizer, scaler, generator, distort_generator, ctx, device)
        elapsed = card.get("elapsed", 0.0)
        log(f"resuming from {last} after epoch {start_epoch}")
    net = model
    if ctx.world > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        card["world_size"] = ctx.world
    if not master:
        log, monitor, progress = (lambda _line: None), None, False

    def memory() -> dict:
        return {"gpu_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20} if device.type == "cuda" else {}

    steps_per_epoch = distributed.num_steps(len(train_y), config.batch_size, ctx.world)
    seen = min(steps_per_epoch * config.batch_size, len(train_y))  # digits per epoch, all ranks together
    stop = bool(monitor and monitor({"event": "start", "epoch": start_epoch, "step": start_epoch * steps_per_epoch,
                                     "device": describe_device(device) + (f" x{ctx.world}" if ctx.world > 1 else ""),
                                     "metrics": {}}))
    start = time.perf_counter()
    for epoch in range(start_epoch, config.epochs):
        if distributed.any_rank(stop, device):
            raise Stopped(f"stopped before epoch {epoch + 1}")
        net.train()
        total_loss = torch.zeros((), device=device)
        wrong = torch.zeros((), dtype=torch.long, device=device)
        window_loss, window_wrong, window_n, window_start = 0.0, 0, 0, time.perf_counter()
        epoch_start = time.perf_counter()
        steps = epoch_steps(config, net, optimizer, train_x, train_y, epoch, generator, ctx=ctx,
                            distort_generator=distort_generator, amp_dtype=amp_dtype, scaler=scaler)
        bar = tqdm(steps, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress,
                   leave=False, file=sys.stderr)
        for step, loss_sum, wrong_count in bar:
            total_loss += loss_sum
            wrong += wrong_count
            if progress and step % 100 == 0:
                bar.set_postfix(loss=f"{total_loss.item() / min((step + 1) * config.batch_size, len(train_y)):.4f}")
            if monitor and time.perf_counter() - window_start >= report_every:
                # live metrics over the steps since the last report (rank 0's digits; throughput of all ranks)
                local = distributed.digits_seen(step + 1, len(train_y), config.batch_size, ctx)
                loss_now, wrong_now = total_loss.item(), wrong.item()
                now = time.perf_counter()
                metrics = {"loss": (loss_now - window_loss) / max(local - window_n, 1),
                           "train_error": 100.0 * (wrong_now - window_wrong) / max(local - window_n, 1),
                           "images_per_s": (local - window_n) * ctx.world / (now - window_start),
                           "lr": optimizer.param_groups[0]["lr"], **memory()}
                stop = bool(monitor({"event": "step", "epoch": epoch + (step + 1) / steps_per_epoch,
                                     "step": epoch * steps_per_epoch + step + 1, "metrics": metrics})) or stop
                window_loss, window_wrong, window_n, window_start = loss_now, wrong_now, local, time.perf_counter()
            if ctx.world > 1 and (step + 1) % STOP_SYNC_STEPS == 0:  # ranks agree on stopping at the same step
                stop = distributed.any_rank(stop, device)
            if stop:
                raise Stopped(f"stopped in epoch {epoch + 1}, step {step + 1}")
        distributed.all_sum(total_loss, wrong)
        total_loss, wrong = total_loss.item(), wrong.item()
        train_seconds = time.perf_counter() - epoch_start
        if master:
            test_error = error_rate(model, data.test_x, data.test_y)
            metrics = {"epoch": epoch + 1, "loss": total_loss / seen, "train_error": 100.0 * wrong / seen,
                       "test_error": test_error, "seconds": train_seconds, "images_per_s": seen / train_seconds}
            card["epochs"].append(metrics)
            card["elapsed"] = elapsed + time.perf_counter() - start
            log(f"epoch {epoch + 1:3d}  loss {metrics['loss']:.4f}  train err {metrics['train_error']:.2f}%  "
                f"test err {test_error:.2f}%  ({train_seconds:.1f}s, {metrics['images_per_s']:.0f} img/s)")
            if monitor:
                stop = bool(monitor({"event": "epoch", "epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch,
                                     "metrics": {"test_error": test_error, "epoch_loss": metrics["loss"],
                                                 "epoch_train_error": metrics["train_error"],
                                                 "epoch_seconds": train_seconds,
                                                 "epoch_images_per_s": metrics["images_per_s"], **memory()}})) or stop
        rng = distributed.gather(_rng_state(device, generator, distort_generator))
        if master and out is not None:
            convnets.save_checkpoint(last, config.model, config.options, model, card, optimizer=optimizer.state_dict(),
                                     epoch=epoch + 1, rng=rng, **({"scaler": scaler.state_dict()} if scaler else {}))
    if distributed.any_rank(stop, device):
        raise Stopped("stopped after the last epoch")
    if master:
        card["test_error"] = card["epochs"][-1]["test_error"]
        card["test_set"] = data.test_description
        card["train_seconds"] = elapsed + time.perf_counter() - start
        if out is not None:
            convnets.save_checkpoint(Path(out) / "model.pt", config.model, config.options, model, card)
    return model.eval(), card
