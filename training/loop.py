"""The training loop: one function, read top to bottom, for digit and colour-image models alike (its named
pieces: ``_prepare``, ``_train_epoch``, ``_record_epoch``, ``_save_last``; the schedule is a ``LambdaLR``).

Data sits on the device as uint8 tensors; each step slices a batch, converts
it to floats, optionally distorts it (digits: the paper's affine distortions;
images: AlexNet's crops, reflections and PCA colour -- all on the device), and
takes one optimiser step (under ``torch.autocast`` with ``precision`` bf16/fp16). After each epoch the model is
evaluated on the test split and a checkpoint -- weights, optimiser, RNG states,
epoch -- is written atomically to ``out/last.pt``, from which ``resume=True``
continues exactly; the final weights with their card go to ``out/model.pt``.

The same function runs under ``torchrun --nproc_per_node=N``: every rank takes
its slice of each global batch, DistributedDataParallel averages gradients,
and rank 0 alone logs, reports and writes (see :mod:`training.distributed`).
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

import convnets
from convnets.checkpoint import load_state
from convnets.inference import inference
from convnets.lenet import map_loss

from . import distributed
from .augment import Distortion
from .data import DataError, DigitData, load_digits
from .distributed import SINGLE, Dist
from .image_augment import ColourPCA, ImageAugment, colour_pca
from .images import ImageData, class_count, load_images

# What a recipe does not say: plain cross-entropy, no warm-up, cosine decay to lr/100, no image augmentation.
BASE_RECIPE = {"weight_decay": 0.0, "label_smoothing": 0.0, "nesterov": False, "warmup": 0.0, "schedule": "cosine",
               "augment": False, "channels_last": False}
# Per-model defaults; any of them can be overridden on the command line.
RECIPES: dict[str, dict] = {
    # The faithful LeNet-5 to the paper's 0.95 % in about a minute of a 2-core CPU (README, "Training time"): batch 128
    # in NHWC for throughput (bench/lenet_speed.py), a peak rate raised to match, 12 epochs; with --distort, 24.
    "lenet5": {"optimizer": "adam", "lr": 0.005, "momentum": 0.9, "batch_size": 128, "epochs": 12, "warmup": 1.0,
               "channels_last": True},
    "lenet5-modern": {"optimizer": "adam", "lr": 0.003, "momentum": 0.9, "batch_size": 128, "epochs": 30},
    # AlexNet on CIFAR-10 within about an hour of a 2-core CPU (README, "AlexNet on CIFAR-10"):
    # SGD + Nesterov, 2 epochs of warm-up, then a straight line to 0; label smoothing 0.1; weight decay
    # on weights only; the paper's augmentation (translations, reflections, PCA colour).
    "alexnet-cifar": {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "batch_size": 128, "epochs": 40,
                      "weight_decay": 5e-4, "label_smoothing": 0.1, "nesterov": True, "warmup": 2.0,
                      "schedule": "linear", "augment": True, "channels_last": True},
}
IMAGE_RECIPE = "alexnet-cifar"  # the default for colour-image models without a recipe of their own
SCHEDULES = ("cosine", "linear", "constant")


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
    weight_decay: float | None = None
    label_smoothing: float | None = None  # softmax heads only
    nesterov: bool | None = None
    warmup: float | None = None  # epochs of linear warm-up from lr/10
    schedule: str | None = None  # after warm-up: cosine (to lr/100), linear (to 0) or constant
    augment: bool | None = None  # colour images: random crops (pad 4), reflections, PCA colour
    channels_last: bool | None = None  # NHWC weights and batches: faster on CPU for some models (bench/*_speed.py)
    distort: Distortion | None = None
    seed: int = 0
    device: str = "auto"
    train_limit: int | None = None  # use only the first N training digits (quick runs, tests)
    precision: str = "auto"  # auto: bf16 autocast on cuda (fp16 where bf16 is missing), fp32 elsewhere; bf16 on cpu too

    def resolved(self) -> TrainConfig:
        """Fill unset fields from the model's recipe and validate them."""
        default = IMAGE_RECIPE if takes_images(self.model) else "lenet5-modern"
        recipe = {**BASE_RECIPE, **RECIPES.get(self.model, RECIPES[default])}
        values = {k: (getattr(self, k) if getattr(self, k) is not None else recipe[k]) for k in recipe}
        if self.warmup is None:  # the recipe's warm-up, but never more than a tenth of a short run
            values["warmup"] = min(values["warmup"], values["epochs"] / 10)
        config = TrainConfig(**{**asdict(self), "distort": self.distort, **values})
        if config.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {config.epochs}")
        if config.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {config.batch_size}")
        if not config.lr > 0:
            raise ValueError(f"learning rate must be positive, got {config.lr}")
        if not math.isfinite(config.lr):
            raise ValueError(f"learning rate must be a finite number, got {config.lr}")
        if not (config.momentum >= 0 and math.isfinite(config.momentum)):
            raise ValueError(f"momentum must be a finite number >= 0, got {config.momentum}")
        if not (config.weight_decay >= 0 and math.isfinite(config.weight_decay)):
            raise ValueError(f"weight decay must be a finite number >= 0, got {config.weight_decay}")
        if not 0 <= config.label_smoothing < 1:
            raise ValueError(f"label smoothing must be in [0, 1), got {config.label_smoothing}")
        if not 0 <= config.warmup < config.epochs:
            raise ValueError(f"warm-up must be at least 0 and shorter than the run ({config.epochs} epochs), got {config.warmup}")
        if config.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule '{config.schedule}'; choose {' or '.join(SCHEDULES)}")
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


class Diverged(ValueError):
    """Raised by :func:`train` when the training loss is NaN or infinite; the last checkpoint keeps the last good epoch."""


def _check_finite(loss: float, epoch: int, config: TrainConfig) -> None:
    if not math.isfinite(loss):
        raise Diverged(f"diverged at epoch {epoch} (loss {loss}); lower --lr (now {config.lr:g})")


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; a device that is unknown or not on this machine is a ValueError."""
    if name != "auto":
        try:
            device = torch.device(name)
        except (RuntimeError, TypeError):
            device = None
        if device is None or device.type not in ("cpu", "cuda", "mps"):
            raise ValueError(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps")
        if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
            raise ValueError(f"no {name} on this machine ({torch.cuda.device_count()} cuda device(s)); use --device auto or cpu")
        if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError("no mps device on this machine; use --device auto or cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def takes_images(model: str) -> bool:
    """Whether the registered model ``model`` takes colour images (N, 3, S, S) rather than digits -- without building it."""
    constructor = convnets.models.MODELS.get(model)
    return getattr(constructor, "input_shape", (1,))[0] == 3


DIGIT_SOURCES = ("mnist", "sample")
IMAGE_SOURCES = ("cifar10", "cifar10-sample")
NAMED_SOURCES = DIGIT_SOURCES + IMAGE_SOURCES  # data named rather than given as a path


def check_config(config: TrainConfig) -> TrainConfig:
    """The resolved config, or a ValueError naming the bad setting -- without loading any data."""
    try:
        model = convnets.get_model(config.model, **config.options)  # unknown model or option (ValueError)
    except (TypeError, RuntimeError) as exc:  # an option of the wrong type or size, e.g. dropout=abc
        raise ValueError(f"model '{config.model}' refuses options {config.options}: {exc}") from None
    config = config.resolved()
    images = getattr(model, "input_shape", (1,))[0] == 3
    source = config.data
    if images:
        if config.distort:
            raise ValueError(f"--distort is the digits' affine distortion; '{config.model}' takes colour images: "
                             "use --augment (crops, reflections, PCA colour)")
        if config.exclude_sample:
            raise ValueError("--exclude-sample holds out the offline digits; it does not apply to colour-image models")
        if source in DIGIT_SOURCES or source.endswith(".npz"):
            raise DataError(f"'{config.model}' takes colour images, and '{source}' is digit data; "
                            "use --data cifar10 or the path of an image folder (ROOT/train/<class>/*) or a .tar.gz of one")
        if source not in IMAGE_SOURCES and not Path(source).exists():
            raise DataError(f"data path {source} does not exist; use --data cifar10, cifar10-sample (offline) or an image "
                            "folder / .tar.gz")
        class_count(source)  # a path that is not an image-folder layout is refused here, before anything is queued
    else:
        if config.augment:
            raise ValueError(f"--augment is for colour-image models; '{config.model}' takes digits: use --distort")
        if source in IMAGE_SOURCES or source.endswith((".tar.gz", ".tgz", ".tar")):
            raise DataError(f"'{config.model}' takes digits, and '{source}' is colour image data; "
                            "use --data mnist, sample, or a path to an .npz or idx folder")
        if source not in DIGIT_SOURCES:  # the names load_digits accepts
            if not (os.sep in source or source.endswith(".npz") or Path(source).exists()):
                raise DataError(f"unknown data source '{source}'; use 'mnist', 'sample', or a path to an .npz or idx folder")
            if not Path(source).exists():
                raise DataError(f"data path {source} does not exist; pass an .npz file or a folder with the MNIST idx files")
    if config.label_smoothing and getattr(model, "head", "softmax") != "softmax":
        raise ValueError(f"label smoothing needs a softmax head; '{config.model}' ends in RBF units (use --label-smoothing 0)")
    autocast_dtype(config.precision, pick_device(config.device))  # bf16/fp16 where the device cannot
    return config


def load_data(config: TrainConfig) -> DigitData | ImageData:
    """The run's data: digits for digit models, colour images (uint8, N x 3 x H x W) for image models.

    A source that cannot be parsed (an empty .npz, a corrupt .gz, string pixels, NaN labels) is one DataError line.
    """
    images = takes_images(config.model)
    try:
        data = load_images(config.data) if images else load_digits(config.data, exclude_sample=config.exclude_sample)
    except DataError:
        raise
    except (OSError, EOFError, ValueError, TypeError, IndexError, KeyError, zlib.error, zipfile.BadZipFile) as exc:
        raise DataError(f"{config.data} cannot be read as {'images' if images else 'digits'} ({type(exc).__name__}: "
                        f"{exc}); check the file, or download it again") from None
    classes = len(getattr(data, "classes", None) or range(10))
    for split, labels in (("training", data.train_y), ("test", data.test_y)):
        if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < classes):
            raise DataError(f"{config.data}: the {split} labels must be whole numbers 0-{classes - 1} "
                            "(NaN or negative labels read as garbage); fix the labels")
    return data


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype for ``torch.autocast`` (None: plain fp32). ``auto``: mixed precision on cuda only;
    ``bf16`` also on a CPU (fast where it has AVX-512 BF16 or AMX, slow elsewhere); fp16 on cuda only."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if device.type == "cpu" and precision == "bf16":
        return torch.bfloat16
    if device.type != "cuda":
        raise ValueError(f"precision {precision} needs a cuda device (this run is on {device}); use --precision fp32"
                         + (" or bf16" if device.type == "cpu" else ""))
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX), so ``--precision bf16`` speeds training up
    (measured here: about 2x for alexnet-cifar, ``bench/train_speed.py``); read from ``/proc/cpuinfo`` (Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def describe_device(device: torch.device) -> str:
    """``cpu``, ``cuda:0 (NVIDIA H100 80GB HBM3)``, ..."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


def loss_fn(model: nn.Module, scores: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """The paper's MAP criterion for the RBF head, cross-entropy (optionally label-smoothed) for a softmax head."""
    head = getattr(getattr(model, "module", model), "head", "softmax")  # look through a DDP wrapper
    if head == "rbf":
        return map_loss(scores, target)
    return F.cross_entropy(scores.float(), target, label_smoothing=label_smoothing)


def model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 digits (N, 28, 28) -> (N, 1, 28, 28), uint8 colour images (N, 3, H, W) -> the same shape; floats in [0, 1]."""
    x = images.unsqueeze(1) if images.dim() == 3 else images
    return x.float().div_(255) if not x.is_floating_point() else x


def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 1000, amp_dtype: torch.dtype | None = None,
            flip: bool = False) -> torch.Tensor:
    """Predicted classes for uint8 digits (N, 28, 28) or colour images (N, 3, S, S).

    ``flip=True`` averages the softmax of each image and its mirror image (test-time reflection)."""
    preds = []
    with inference(model):
        for i in range(0, len(images), batch_size):
            x = model_input(images[i:i + batch_size])
            with torch.autocast(x.device.type, dtype=amp_dtype) if amp_dtype else nullcontext():
                scores = model(x).float()
                if flip:
                    scores = scores.softmax(1) + model(x.flip(-1)).float().softmax(1)
            preds.append(scores.argmax(1))
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long, device=images.device)


def error_rate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, amp_dtype: torch.dtype | None = None,
               flip: bool = False) -> float:
    """Classification error in percent."""
    return 100.0 * (predict(model, images, amp_dtype=amp_dtype, flip=flip) != labels).float().mean().item()


def _log(line: str) -> None:
    print(line, flush=True)


def lr_at(config: TrainConfig, epoch: float) -> float:
    """The learning rate ``epoch`` epochs into the run (fractional): a linear warm-up from lr/10 over
    ``warmup`` epochs, then cosine decay to lr/100, a straight line to 0 at the end, or constant."""
    if epoch < config.warmup:
        return config.lr * (0.1 + 0.9 * epoch / config.warmup)
    if config.schedule == "constant":
        return config.lr
    progress = min((epoch - config.warmup) / (config.epochs - config.warmup), 1.0)
    if config.schedule == "linear":
        return config.lr * (1.0 - progress)
    return config.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with (Nesterov) momentum or Adam, as the (resolved) config says; weight decay on weights, not biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() > 1], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    # one fused kernel per step instead of a handful of ops per tensor: on a tiny network the per-tensor ops cost
    # a tenth of a CPU step (bench/lenet_speed.py); fused kernels exist for CPU and CUDA
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params) or None
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, fused=fused)
    return torch.optim.Adam(groups, lr=config.lr, fused=fused)


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                   done_steps: int = 0) -> LambdaLR:
    """:func:`lr_at` as a ``LambdaLR`` stepped after every optimiser step; ``done_steps`` were taken already (a resumed
    run, whose optimiser state may predate the scheduler: hence the ``initial_lr`` default)."""
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", config.lr)
    return LambdaLR(optimizer, lambda step: lr_at(config, step / steps_per_epoch) / config.lr, last_epoch=done_steps - 1)


def epoch_steps(config: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer, train_x: torch.Tensor,
                train_y: torch.Tensor, epoch: int, generator: torch.Generator | None = None, *, ctx: Dist = SINGLE,
                distort_generator: torch.Generator | None = None, amp_dtype: torch.dtype | None = None,
                scaler: torch.amp.GradScaler | None = None,
                augment: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None,
                channels_last: bool | None = None,
                scheduler: LambdaLR | None = None) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """One epoch of optimiser steps over shuffled device-resident digits or images.

    Yields ``(step, summed loss, wrong count)`` of this rank's examples after each step, as tensors so the
    device is never forced to synchronise. Under DDP (``ctx.world > 1``) every rank draws the same
    permutation from ``generator`` and trains on its slice of each global batch of ``config.batch_size``.
    ``augment(x, generator)`` changes each float batch (digits: ``config.distort``; images: crops, flips, colour);
    ``channels_last`` (default: ``config.channels_last``) hands the model NHWC batches; ``scheduler`` (:func:`make_scheduler`)
    steps after every optimiser step (without one the learning rate stays as it is).
    """
    n, batch_size = len(train_y), config.batch_size
    steps = distributed.num_steps(n, batch_size, ctx.world)
    order = torch.randperm(n, device=train_y.device, generator=generator)
    augment = augment or config.distort
    if channels_last is None:
        channels_last = bool(config.channels_last)
    for step in range(steps):
        batch = order[step * batch_size:(step + 1) * batch_size]
        idx = distributed.shard(batch, ctx)
        x, y = model_input(train_x[idx]), train_y[idx]
        if augment:
            x = augment(x, distort_generator or generator)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=amp_dtype) if amp_dtype else nullcontext():
            scores = model(x)
            loss = loss_fn(model, scores, y, config.label_smoothing)
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
        if scheduler is not None:
            scheduler.step()
        yield step, loss.detach() * len(y), (scores.detach().argmax(1) != y).sum()


def image_augmentation(config: TrainConfig, data: ImageData, size: int,
                       pca: ColourPCA | None) -> Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None:
    """The paper's augmentation for a colour-image run (None when ``config.augment`` is off): random ``size`` crops
    (after 4 pixels of padding when the images are already ``size``), reflections, PCA colour."""
    if not config.augment:
        return None
    augment = ImageAugment(crop=size, pad=4 if data.image_size == (size, size) else 0)
    return lambda x, generator: augment.train_batch(x, pca, generator)


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
    try:
        saved = TrainConfig.from_dict(payload["card"]["config"]).resolved().card()  # older cards lack newer settings
    except (KeyError, TypeError, ValueError) as exc:
        raise convnets.CheckpointError(f"{path} has no readable settings ({type(exc).__name__}: {exc}); "
                                       "train into a new --out folder") from None
    differs = sorted(k for k, v in config.card().items() if k != "device" and saved.get(k) != v)
    if differs:
        raise convnets.CheckpointError(f"{path} belongs to a run with other settings ({', '.join(differs)} differ); "
                                       "resume with the same options or train into a new --out folder")
    if "rng" not in payload or "epoch" not in payload:
        raise convnets.CheckpointError(f"{path} has no resume state (epoch, RNGs); train into a new --out folder")
    load_state(model, payload, str(path))
    try:
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
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:  # a damaged resume state
        raise convnets.CheckpointError(f"{path} holds a resume state that does not fit this run ({type(exc).__name__}: "
                                       f"{exc}); train into a new --out folder") from None
    return payload["epoch"], payload["card"]


@dataclass
class _Run:
    """What one call of :func:`train` holds while it runs."""

    config: TrainConfig
    ctx: Dist
    device: torch.device
    data: DigitData | ImageData
    train_x: torch.Tensor
    train_y: torch.Tensor
    model: nn.Module  # the model itself; ``net`` is what trains (the model, or its DDP wrapper)
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR
    scaler: torch.amp.GradScaler | None
    amp_dtype: torch.dtype | None
    generator: torch.Generator  # the data order: the same permutation on every rank
    distort_generator: torch.Generator
    augment: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None
    card: dict
    steps_per_epoch: int
    start_epoch: int
    elapsed: float  # seconds of earlier lives of a resumed run

    @property
    def images(self) -> bool:
        return isinstance(self.data, ImageData)

    def memory(self) -> dict:
        return {"gpu_memory_mb": torch.cuda.max_memory_allocated(self.device) / 2**20} if self.device.type == "cuda" else {}


def _prepare(config: TrainConfig, data: DigitData | ImageData | None, out: str | Path | None, resume: bool,
             log: Callable[[str], None], recipe: str | None) -> _Run:
    """Device, seeds, data on the device, model, optimiser, schedule, augmentation and card; resumed from
    ``out/last.pt`` when asked and there is one; wrapped in DDP under torchrun."""
    ctx, device = distributed.init(pick_device(config.device))
    torch.manual_seed(config.seed)
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed)
    distort_generator = generator  # one process: one stream, as always; under DDP each rank distorts differently
    if ctx.world > 1:
        distort_generator = torch.Generator(device=device)
        distort_generator.manual_seed(config.seed + 1 + ctx.rank)
    amp_dtype = autocast_dtype(config.precision, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None  # fp16 needs loss scaling, bf16 not
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # a worker trains many runs in one process

    data = data or load_data(config)
    if config.train_limit and isinstance(data, ImageData):
        data = data.subset(train=config.train_limit)  # class-balanced: image folders are sorted by class
    data = data.to(device)
    train_x, train_y = data.train_x, data.train_y
    if config.train_limit:
        train_x, train_y = train_x[:config.train_limit], train_y[:config.train_limit]
    if len(train_y) == 0 or len(data.test_y) == 0:
        split = "training" if len(train_y) == 0 else "test"
        raise DataError(f"{config.data} has no {split} examples; point --data at a source with both splits "
                        "(an image folder needs ROOT/train/<class>/* and ROOT/test/<class>/*)")
    model = convnets.get_model(config.model, **config.options).to(device)
    images = isinstance(data, ImageData)
    if config.channels_last:  # oneDNN's preferred layout; which models gain is measured in bench/*_speed.py
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(config, model)
    pca = colour_pca(train_x) if images and config.augment else None
    augment = image_augmentation(config, data, model.input_shape[-1], pca) if images else None
    card = {"model": config.model, "options": config.options, "config": config.card(),
            "data": {**data.summary(), "train_size": len(train_y)},
            **({"colour_pca": pca.as_dict()} if pca is not None else {}),
            "recipe": recipe,
            "device": str(device), "torch": str(torch.__version__), "version": convnets.__version__, "epochs": []}
    start_epoch, elapsed = 0, 0.0
    last = Path(out) / "last.pt" if out is not None else None
    if resume and last is not None and last.exists():
        start_epoch, card = _resume(last, config, model, optimizer, scaler, generator, distort_generator, ctx, device)
        elapsed = card.get("elapsed", 0.0)
        log(f"resuming from {last} after epoch {start_epoch}")
    steps_per_epoch = distributed.num_steps(len(train_y), config.batch_size, ctx.world)
    scheduler = make_scheduler(config, optimizer, steps_per_epoch, start_epoch * steps_per_epoch)
    net = model
    if ctx.world > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        card["world_size"] = ctx.world
    return _Run(config, ctx, device, data, train_x, train_y, model, net, optimizer, scheduler, scaler, amp_dtype, generator,
                distort_generator, augment, card, steps_per_epoch, start_epoch, elapsed)


def _train_epoch(run: _Run, epoch: int, monitor: Callable[[dict], bool | None] | None, progress: bool,
                 report_every: float, stop: bool) -> tuple[float, int, float, bool]:
    """One epoch of steps, reporting live metrics to ``monitor`` every ``report_every`` seconds and at the epoch's last
    step; returns (summed loss, wrong count, training seconds, stop requested). Raises :class:`Stopped` mid-epoch."""
    config, ctx, train_y = run.config, run.ctx, run.train_y
    run.net.train()
    total_loss = torch.zeros((), device=run.device)
    wrong = torch.zeros((), dtype=torch.long, device=run.device)
    window_loss, window_wrong, window_n, window_start = 0.0, 0, 0, time.perf_counter()
    epoch_start = time.perf_counter()
    steps = epoch_steps(config, run.net, run.optimizer, run.train_x, train_y, epoch, run.generator, ctx=ctx,
                        distort_generator=run.distort_generator, amp_dtype=run.amp_dtype, scaler=run.scaler,
                        augment=run.augment, scheduler=run.scheduler)
    bar = tqdm(steps, total=run.steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress,
               leave=False, file=sys.stderr)
    for step, loss_sum, wrong_count in bar:
        total_loss += loss_sum
        wrong += wrong_count
        if progress and step % 100 == 0:
            bar.set_postfix(loss=f"{total_loss.item() / min((step + 1) * config.batch_size, len(train_y)):.4f}")
        # every report_every seconds, and at an epoch's last step, so epochs shorter than that still get a point
        if monitor and (time.perf_counter() - window_start >= report_every or step == run.steps_per_epoch - 1):
            # live metrics over the steps since the last report (rank 0's digits; throughput of all ranks)
            local = distributed.digits_seen(step + 1, len(train_y), config.batch_size, ctx)
            loss_now, wrong_now = total_loss.item(), wrong.item()
            if ctx.world == 1:  # under DDP the ranks stop together, at the epoch's end
                _check_finite(loss_now, epoch + 1, config)
            now = time.perf_counter()
            metrics = {"loss": (loss_now - window_loss) / max(local - window_n, 1),
                       "train_error": 100.0 * (wrong_now - window_wrong) / max(local - window_n, 1),
                       "images_per_s": (local - window_n) * ctx.world / (now - window_start),
                       "lr": run.optimizer.param_groups[0]["lr"], **run.memory()}
            stop = bool(monitor({"event": "step", "epoch": epoch + (step + 1) / run.steps_per_epoch,
                                 "step": epoch * run.steps_per_epoch + step + 1, "metrics": metrics})) or stop
            window_loss, window_wrong, window_n, window_start = loss_now, wrong_now, local, time.perf_counter()
        if ctx.world > 1 and (step + 1) % STOP_SYNC_STEPS == 0:  # ranks agree on stopping at the same step
            stop = distributed.any_rank(stop, run.device)
        if stop:
            raise Stopped(f"stopped in epoch {epoch + 1}, step {step + 1}")
    distributed.all_sum(total_loss, wrong)
    total_loss, wrong = total_loss.item(), wrong.item()
    _check_finite(total_loss, epoch + 1, config)  # every rank: all_sum gave them the same total
    return total_loss, wrong, time.perf_counter() - epoch_start, stop


def _record_epoch(run: _Run, epoch: int, total_loss: float, wrong: int, train_seconds: float, since: float,
                  monitor: Callable[[dict], bool | None] | None, extra_metrics: Callable[[nn.Module], dict] | None,
                  log: Callable[[str], None]) -> bool:
    """Rank 0 after an epoch: the test error (and ``extra_metrics``) into the card, the log and ``monitor``; returns
    whether ``monitor`` asked to stop."""
    seen = min(run.steps_per_epoch * run.config.batch_size, len(run.train_y))  # examples per epoch, all ranks together
    test_error = error_rate(run.model, run.data.test_x, run.data.test_y, run.amp_dtype)
    extra = extra_metrics(run.model) if extra_metrics else {}
    metrics = {"epoch": epoch + 1, "loss": total_loss / seen, "train_error": 100.0 * wrong / seen,
               "test_error": test_error, "seconds": train_seconds, "images_per_s": seen / train_seconds, **extra}
    run.card["epochs"].append(metrics)
    run.card["elapsed"] = run.elapsed + time.perf_counter() - since
    log(f"epoch {epoch + 1:3d}  loss {metrics['loss']:.4f}  train err {metrics['train_error']:.2f}%  "
        f"test err {test_error:.2f}%  ({train_seconds:.1f}s, {metrics['images_per_s']:.0f} img/s)")
    if not monitor:
        return False
    return bool(monitor({"event": "epoch", "epoch": epoch + 1, "step": (epoch + 1) * run.steps_per_epoch,
                         "metrics": {"test_error": test_error, "epoch_loss": metrics["loss"],
                                     "epoch_train_error": metrics["train_error"], "epoch_seconds": train_seconds,
                                     "epoch_images_per_s": metrics["images_per_s"], **extra, **run.memory()}}))


def _save_last(run: _Run, last: Path, epoch: int) -> None:
    """The resume point after ``epoch``: weights, optimiser, schedule, scaler, every rank's RNG states (rank 0 writes)."""
    rng = distributed.gather(_rng_state(run.device, run.generator, run.distort_generator))  # every rank takes part
    if run.ctx.master:
        convnets.save_checkpoint(last, run.config.model, run.config.options, run.model, run.card,
                                 optimizer=run.optimizer.state_dict(), epoch=epoch + 1, rng=rng,
                                 **({"scaler": run.scaler.state_dict()} if run.scaler else {}))


def train(config: TrainConfig, out: str | Path | None = None, data: DigitData | ImageData | None = None,
          progress: bool = True, log: Callable[[str], None] = _log, recipe: str | None = None, *,
          resume: bool = False, monitor: Callable[[dict], bool | None] | None = None,
          report_every: float = 2.0, extra_metrics: Callable[[nn.Module], dict] | None = None) -> tuple[nn.Module, dict]:
    """Train ``config.model`` (a digit or a colour-image model); return the model (eval mode) and its card
    (config, data, metrics per epoch; image models add the test error with test-time reflections).

    ``resume=True`` continues from ``out/last.pt`` when there is one. ``monitor(event)`` (rank 0 only) gets
    ``{"event": "start" | "step" | "epoch", "epoch": epochs done (fractional), "step": optimiser steps done,
    "metrics": {name: value}}`` at the start, every ``report_every`` seconds of training and after each
    epoch (just before its checkpoint is written); a true return stops the run with :class:`Stopped` (after the
    current step, or the checkpoint). A NaN or infinite training loss raises :class:`Diverged` (a ValueError) before
    its epoch is saved. ``extra_metrics(model)`` adds measurements of its own to every epoch's record (rank 0).
    Under torchrun (``WORLD_SIZE`` > 1) every rank calls this with the same arguments.
    """
    config = config.resolved()
    run = _prepare(config, data, out, resume, log, recipe)
    if not run.ctx.master:
        log, monitor, progress = (lambda _line: None), None, False
    stop = bool(monitor and monitor({"event": "start", "epoch": run.start_epoch,
                                     "step": run.start_epoch * run.steps_per_epoch,
                                     "device": describe_device(run.device) + (f" x{run.ctx.world}" if run.ctx.world > 1 else ""),
                                     "metrics": {}}))
    start = time.perf_counter()
    for epoch in range(run.start_epoch, config.epochs):
        if distributed.any_rank(stop, run.device):
            raise Stopped(f"stopped before epoch {epoch + 1}")
        total_loss, wrong, train_seconds, stop = _train_epoch(run, epoch, monitor, progress, report_every, stop)
        if run.ctx.master:
            stop = _record_epoch(run, epoch, total_loss, wrong, train_seconds, start, monitor, extra_metrics, log) or stop
        if out is not None:
            _save_last(run, Path(out) / "last.pt", epoch)
    if distributed.any_rank(stop, run.device):
        raise Stopped("stopped after the last epoch")
    card = run.card
    if run.ctx.master:
        card["test_error"] = card["epochs"][-1]["test_error"]
        if run.images:
            card["test_error_flip"] = error_rate(run.model, run.data.test_x, run.data.test_y, run.amp_dtype, flip=True)
        card["test_set"] = run.data.test_description
        card["train_seconds"] = run.elapsed + time.perf_counter() - start
        if out is not None:
            convnets.save_checkpoint(Path(out) / "model.pt", config.model, config.options, run.model, card)
    return run.model.eval(), card
