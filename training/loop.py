"""The training loop: one function, read top to bottom.

Data sits on the device as uint8 tensors; each step slices a batch, converts
it to floats, optionally distorts it (on the device), and takes one optimiser
step. After each epoch the model is evaluated on the test split and a
checkpoint is written atomically to ``out/last.pt``; the final weights with
their card go to ``out/model.pt``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

import convnets
from convnets.lenet import map_loss

from .augment import Distortion
from .data import DigitData, as_float, load_digits

# Per-model defaults; any of them can be overridden on the command line.
RECIPES: dict[str, dict] = {
    "lenet5": {"optimizer": "sgd", "lr": 0.001, "momentum": 0.9, "batch_size": 8, "epochs": 20},
    "lenet5-modern": {"optimizer": "adam", "lr": 0.003, "momentum": 0.9, "batch_size": 128, "epochs": 15},
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
        return config

    def card(self) -> dict:
        d = asdict(self)
        d["distort"] = self.distort.as_dict() if self.distort else None
        return d


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def loss_fn(model: nn.Module, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The paper's MAP criterion for the RBF head, cross-entropy for a softmax head."""
    return map_loss(scores, target) if getattr(model, "head", "softmax") == "rbf" else F.cross_entropy(scores, target)


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
                train_y: torch.Tensor, epoch: int, generator: torch.Generator | None = None
                ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """One epoch of optimiser steps over shuffled device-resident digits.

    Yields ``(step, summed loss, wrong count)`` after each step, as tensors so
    the device is never forced to synchronise.
    """
    steps = math.ceil(len(train_y) / config.batch_size)
    order = torch.randperm(len(train_y), device=train_y.device, generator=generator)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(config, epoch + step / steps)
        idx = order[step * config.batch_size:(step + 1) * config.batch_size]
        x, y = as_float(train_x[idx]), train_y[idx]
        if config.distort:
            x = config.distort(x, generator)
        scores = model(x)
        loss = loss_fn(model, scores, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        yield step, loss.detach() * len(y), (scores.detach().argmax(1) != y).sum()


def train(config: TrainConfig, out: str | Path | None = None, data: DigitData | None = None,
          progress: bool = True, log: Callable[[str], None] = _log, recipe: str | None = None) -> tuple[nn.Module, dict]:
    """Train ``config.model``; return the model (eval mode) and its card (config, data, metrics per epoch)."""
    config = config.resolved()
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed)

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
    steps_per_epoch = math.ceil(len(train_y) / config.batch_size)
    start = time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        total_loss = torch.zeros((), device=device)
        wrong = torch.zeros((), dtype=torch.long, device=device)
        epoch_start = time.perf_counter()
        steps = epoch_steps(config, model, optimizer, train_x, train_y, epoch, generator)
        bar = tqdm(steps, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress,
                   leave=False, file=sys.stderr)
        for step, loss_sum, wrong_count in bar:
            total_loss += loss_sum
            wrong += wrong_count
            if progress and step % 100 == 0:
                bar.set_postfix(loss=f"{total_loss.item() / min((step + 1) * config.batch_size, len(train_y)):.4f}")
        seen = len(train_y)
        total_loss, wrong = total_loss.item(), wrong.item()
        train_seconds = time.perf_counter() - epoch_start
        test_error = error_rate(model, data.test_x, data.test_y)
        metrics = {"epoch": epoch + 1, "loss": total_loss / seen, "train_error": 100.0 * wrong / seen,
                   "test_error": test_error, "seconds": train_seconds, "images_per_s": seen / train_seconds}
        card["epochs"].append(metrics)
        log(f"epoch {epoch + 1:3d}  loss {metrics['loss']:.4f}  train err {metrics['train_error']:.2f}%  "
            f"test err {test_error:.2f}%  ({train_seconds:.1f}s, {metrics['images_per_s']:.0f} img/s)")
        if out is not None:
            convnets.save_checkpoint(Path(out) / "last.pt", config.model, config.options, model, card,
                                     optimizer=optimizer.state_dict(), epoch=epoch + 1)
    card["test_error"] = card["epochs"][-1]["test_error"]
    card["test_set"] = data.description
    card["train_seconds"] = time.perf_counter() - start
    if out is not None:
        convnets.save_checkpoint(Path(out) / "model.pt", config.model, config.options, model, card)
    return model.eval(), card
