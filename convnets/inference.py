"""Running a model to look inside it: eval mode that is handed back afterwards, and capturing layers' outputs.

Every probe of :mod:`convnets` (and every evaluation in :mod:`training`) runs through :func:`inference`, so a probe
never leaves a model in another mode than it found it (a batch-norm model probed in train mode would change its
running statistics), and through :func:`capture` for layer outputs, so no hook outlives the probe.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn


@contextmanager
def inference(model: nn.Module, grad: bool = False) -> Iterator[nn.Module]:
    """``model`` in eval mode (without autograd unless ``grad``) for the block; afterwards every module has the
    train/eval mode it had before, even where they differed."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.set_grad_enabled(grad):
            yield model
    finally:
        for module, mode in modes:
            module.training = mode


@contextmanager
def capture(layers: Iterable[tuple[str, nn.Module]], detach: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """The output of each named module during the block, ``{name: tensor}`` (the last call's, detached unless
    ``detach=False``); the hooks are removed when the block ends."""
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str):
        return lambda _module, _inputs, out: outputs.__setitem__(name, out.detach() if detach else out)

    handles = [module.register_forward_hook(keep(name)) for name, module in layers]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()



def probabilities(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Softmax of the model's scores for the batch ``x`` (the faithful LeNet-5's scores are its negated RBF
    distances), in eval mode without autograd; the model's mode is handed back."""
    with inference(model):
        return torch.softmax(model(x).float(), dim=1)

def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters are (the CPU for a model without any)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def float_pixels(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Pixels from an array or a tensor as a detached float32 tensor (uint8 scaled by 1/255), any shape; NaN or
    infinite pixels are refused with a ValueError."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images).detach()
    x = x.float() / 255 if not x.is_floating_point() else x.float()
    if not torch.isfinite(x).all():
        raise ValueError("the image has NaN or infinite pixels")
    return x
