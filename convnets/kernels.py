"""The first layer's kernels as pictures, and how colour-specific they are (the paper's Figure 3)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _first_rgb_conv(model: nn.Module) -> nn.Conv2d:
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None or conv.in_channels != 3:
        raise ValueError(f"{type(model).__name__} has no RGB first conv layer")
    return conv


def kernel_groups(model: nn.Module) -> int:
    """How many groups (GPU columns) the first layer's kernels fall into: ``model.columns`` where the model has it
    (``alexnet-cifar``), 2 for the paper's two-GPU ``alexnet``, else 1. Group g is the g-th contiguous block."""
    columns = getattr(model, "columns", None)
    if isinstance(columns, int) and not isinstance(columns, bool) and columns >= 1:
        return columns
    return 2 if getattr(model, "two_gpu", False) else 1


def first_layer_kernels(model: nn.Module) -> tuple[np.ndarray, int]:
    """The first conv layer's RGB kernels as images (n, k, k, 3) in [0, 1], and how many groups they fall into.

    Each kernel is min-max scaled on its own (as cuda-convnet showed them, and the paper's Figure 3),
    so weak kernels stay visible. Groups (:func:`kernel_groups`): ``model.columns`` for
    ``alexnet-cifar`` (2 with ``columns=2``: the first n/2 kernels are column 0), 2 for the paper's
    two-GPU ``alexnet`` (48 kernels per GPU), else 1.
    """
    w = _first_rgb_conv(model).weight.detach().float().cpu()
    low = w.amin(dim=(1, 2, 3), keepdim=True)
    high = w.amax(dim=(1, 2, 3), keepdim=True)
    images = ((w - low) / (high - low).clamp_min(1e-12)).permute(0, 2, 3, 1).numpy()
    return images, kernel_groups(model)


# A kernel whose chroma (:func:`kernel_chroma`) is under this is "nearly grey": at most a fifth of its energy is
# colour-opponent, i.e. at least 80 % lies along R = G = B. Random kernels sit near 2/3, a pure-red one at 2/3 too.
GREY_CHROMA = 0.2


def kernel_chroma(weights: torch.Tensor) -> torch.Tensor:
    """Per kernel of ``weights`` (n, 3, k, k): the share of its energy that is colour-opponent, in [0, 1].

    chroma(w) = sum_p ||w_p - mean_c(w_p)||^2 / sum_p ||w_p||^2 over the pixels p, w_p being the RGB
    3-vector at p and mean_c(w_p) its channel mean repeated three times. 0 for a grey kernel (R = G = B
    at every pixel), 1 when the channels sum to zero at every pixel (red minus green, say), 2/3 for a
    pure-red kernel. The "no structure" baseline: kernels drawn i.i.d. zero-mean give about 2/3 in
    expectation (two of the three colour directions are opponent; exactly 2/3 for Gaussian weights).
    An all-zero kernel has no colour: 0. Returns float64 (n,).
    """
    w = torch.as_tensor(weights).detach().to("cpu", torch.float64)
    if w.dim() != 4 or w.shape[1] != 3:
        raise ValueError(f"expected RGB kernels of shape (n, 3, k, k), got {tuple(w.shape)}")
    opponent = (w - w.mean(dim=1, keepdim=True)).square().sum(dim=(1, 2, 3))
    energy = w.square().sum(dim=(1, 2, 3))
    return torch.where(energy > 0, opponent / energy.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(energy))


def kernel_colour(model_or_weights: nn.Module | torch.Tensor | np.ndarray, groups: int | None = None) -> list[dict]:
    """How colour-specific the first layer's kernels are, per group (GPU column): the paper's Figure 3 observation.

    ``model_or_weights``: a model (its first RGB conv; ``groups`` defaults to :func:`kernel_groups`) or
    a weight tensor (n, 3, k, k) (``groups`` defaults to 1). Group g is the g-th contiguous n / groups
    kernels. Per group: ``{"group": g, "kernels": n / groups, "mean_chroma": float, "grey_fraction":
    share of kernels with chroma < GREY_CHROMA, "chroma": [per-kernel chroma]}`` (:func:`kernel_chroma`;
    random kernels give a mean chroma near 2/3 and almost no grey kernels).
    """
    if isinstance(model_or_weights, nn.Module):
        weights = _first_rgb_conv(model_or_weights).weight
        groups = kernel_groups(model_or_weights) if groups is None else groups
    else:
        weights, groups = model_or_weights, 1 if groups is None else groups
    chroma = kernel_chroma(weights)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or len(chroma) % groups:
        raise ValueError(f"groups must be a positive integer dividing the {len(chroma)} kernels, got {groups!r}")
    per_group = len(chroma) // groups
    result = []
    for g in range(groups):
        values = chroma[g * per_group:(g + 1) * per_group]
        result.append({"group": g, "kernels": per_group, "mean_chroma": float(values.mean()),
                       "grey_fraction": float((values < GREY_CHROMA).double().mean()), "chroma": values.tolist()})
    return result
