"""The model registry: names users type, mapped to constructors."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .alexnet import AlexNet, AlexNetCifar, FourLayerCNN
from .checkpoint import CheckpointError, load_state, read_checkpoint
from .lenet import LeNet5, LeNet5Modern
from .torchvision_alexnet import TorchvisionAlexNet, load_torchvision_alexnet

MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet5": LeNet5,
    "lenet5-modern": LeNet5Modern,
    "alexnet": AlexNet,
    "alexnet-torchvision": TorchvisionAlexNet,
    "alexnet-cifar": AlexNetCifar,
    "cnn4-cifar": FourLayerCNN,
}

# Pretrained weights fetched from elsewhere rather than shipped: name -> loader(weights_path) -> (model, card).
DOWNLOADABLE: dict[str, Callable[..., tuple[nn.Module, dict]]] = {
    "alexnet-torchvision": load_torchvision_alexnet,
}

WEIGHTS_DIR = Path(__file__).parent / "weights"

# Shipped weights of a registered model built with other options: weights name -> model name.
SHIPPED_VARIANTS: dict[str, str] = {
    "alexnet-cifar-columns": "alexnet-cifar",  # the paper's two columns: 96 conv1 kernels as 2 x 48
}


def model_names() -> list[str]:
    """Names accepted by :func:`get_model`."""
    return sorted(MODELS)


def get_model(name: str, **options) -> nn.Module:
    """Build a fresh, randomly initialised model by name, e.g. ``get_model("lenet5")``."""
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(model_names())}")
    constructor = MODELS[name]
    accepted = set(inspect.signature(constructor).parameters)
    unknown = set(options) - accepted
    if unknown:
        allowed = ", ".join(sorted(accepted)) or "none"
        raise ValueError(f"model '{name}' has no option {', '.join(sorted(unknown))}; its options: {allowed}")
    model = constructor(**options)
    model.name = name
    model.options = dict(options)
    return model


class _NoRandomFill(TorchFunctionMode):
    """Skips random initialisation of meta tensors: they hold no values, and torch's meta ``normal_`` would
    import torch._dynamo (1.6 s, 150 MB) the first time."""

    FILLS = frozenset({"normal_", "uniform_", "bernoulli_", "exponential_", "random_", "cauchy_", "log_normal_",
                       "geometric_"})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor")  # torch.nn.init passes it by keyword
        if getattr(func, "__name__", "") in self.FILLS and isinstance(target, torch.Tensor) and target.is_meta:
            return target
        return func(*args, **kwargs)


def expected_shapes(name: str, options: dict) -> tuple[str, dict[str, tuple[int, ...]]]:
    """(class name, state_dict shapes) of ``get_model(name, **options)`` without allocating its weights.

    Built on the meta device, except a model that takes no options (the faithful LeNet-5, whose C3 table needs
    real values): it has one size, so building it for real is bounded.
    """
    constructor = MODELS.get(name)
    if constructor is not None and not inspect.signature(constructor).parameters:
        model = get_model(name, **options)
    else:
        with torch.device("meta"), _NoRandomFill():
            model = get_model(name, **options)
    return type(model).__name__, {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_fits(payload: dict, source: str = "checkpoint") -> None:
    """A CheckpointError unless the payload's options build a model whose weights have the payload's shapes.

    Checked before anything is allocated, so a small file claiming a huge model (``hidden=20000``) costs nothing.
    """
    name, options = payload["model"], payload.get("options", {})
    try:
        kind, expected = expected_shapes(name, options)
    except Exception as exc:  # unknown model or option, or a constructor refusing a value: the file is wrong
        raise CheckpointError(f"{source} names a model that cannot be built ({type(exc).__name__}: {exc}); "
                              f"it says model '{name}' with options {options}") from None
    got = {k: tuple(v.shape) for k, v in payload["state_dict"].items()}
    missing, unexpected = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
    wrong = [f"{k}: {got[k]} in the file, {expected[k]} in the model" for k in expected if k in got and got[k] != expected[k]]
    if missing or unexpected or wrong:
        detail = (f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(unexpected[:3])}"
                  if unexpected else wrong[0])
        raise CheckpointError(f"{source} does not fit {kind} ({detail}); "
                              f"it was written for model '{name}' with options {options}")


def model_from_checkpoint(payload: dict, source: str = "checkpoint") -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (shapes checked before the model is built)."""
    check_fits(payload, source)
    model = get_model(payload["model"], **payload.get("options", {}))
    return load_state(model, payload, source)


def load_pretrained(name: str, weights_path: str | os.PathLike | None = None) -> tuple[nn.Module, dict]:
    """Pretrained weights for ``name``: ``(model in eval mode, card)``.

    Shipped models read ``weights/<name>.pt`` (or the convnet-lab checkpoint at ``weights_path``);
    the card says what the weights were trained on, the exact training command and the test error.
    ``alexnet-torchvision`` is torchvision's IMAGENET1K_V1: from ``weights_path`` (a torchvision
    state dict), ``$CONVNET_LAB_WEIGHTS/alexnet-*.pth``, or torchvision's download.
    """
    if name in DOWNLOADABLE:
        return DOWNLOADABLE[name](weights_path)
    path = Path(weights_path) if weights_path is not None else WEIGHTS_DIR / f"{name}.pt"
    if not path.is_file():
        if weights_path is not None:
            raise CheckpointError(f"no checkpoint at {path}: check weights_path")
        shipped = sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))
        raise ValueError(f"no shipped weights for '{name}'; shipped: {', '.join(shipped) or 'none'}; "
                         f"downloadable: {', '.join(sorted(DOWNLOADABLE))}; or pass weights_path=CHECKPOINT")
    payload = read_checkpoint(path)
    expected = SHIPPED_VARIANTS.get(name, name)
    if payload["model"] != expected:
        raise CheckpointError(f"{path} holds weights for '{payload['model']}', not '{expected}'")
    model = model_from_checkpoint(payload, str(path))
    return model.eval(), dict(payload["card"])
