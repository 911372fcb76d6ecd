"""Invariance probes: transform digits along one axis and watch a model's answer change.

Every transform takes a float batch of 28x28 digits in [0, 1], ink = 1, shaped
(N, 28, 28) or (N, 1, 28, 28), and one *level* per output image, and is
batched and deterministic (the noises are seeded)::

    transform(images, "rotate", [-30, 0, 30])    # one image at three levels, or N images at N levels
    sweep(model, image, "shift_x")               # the whole range in ONE forward batch
    robustness(model, images, labels, "rotate")  # accuracy per level over a test set

The geometric transforms (shift, rotation, scale, squeeze) are one
``affine_grid`` + ``grid_sample`` call about the image centre; positive angles
turn the digit counter-clockwise on screen, like ``torch.rot90``. Stroke width
dilates (max-pool) or erodes (min-pool) with a 3x3 square, one pixel per side
per unit, interpolating between whole pixels. Noise uses one random field per
image for every level (common random numbers), so a sweep adds noise to the
same pixels as the level grows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .folding import folded
from .inference import inference
from .inference import probabilities as softmax_of

SIZE = 28


@dataclass(frozen=True)
class Transform:
    """One axis of the invariance lab: its name, unit, default range and the level that changes nothing."""

    name: str  # key in TRANSFORMS
    label: str  # for people, e.g. "rotation"
    unit: str  # of the level, e.g. "°"
    low: float  # default range
    high: float
    identity: float  # the level that leaves an image unchanged
    step: float  # a sensible slider step
    help: str  # what one level means, e.g. 'degrees counter-clockwise about the image centre'
    geometric: bool = False

    @property
    def axis(self) -> str:
        """An axis title, e.g. 'rotation (°)', 'salt-and-pepper noise (fraction of pixels)'."""
        unit = {"": "q", "×": "factor", "of pixels": "fraction of pixels"}.get(self.unit, self.unit)
        return f"{self.label} ({unit})"

    def levels(self, steps: int | None = None) -> np.ndarray:
        """The default range in slider steps (41-61 levels, the identity among them), or ``steps`` evenly spaced."""
        if steps is None:
            count = int(round((self.high - self.low) / self.step)) + 1
            return np.round(self.low + self.step * np.arange(count), 6)
        return np.round(np.linspace(self.low, self.high, steps), 6)

    def describe(self, level: float) -> str:
        """A level with its unit, e.g. '+3.5 px', '30°', '×1.20', 'σ 0.10', '5% of pixels'."""
        decimals = 0 if self.step >= 1 else 1 if self.step >= 0.1 else 2
        value = f"{level:+.{decimals}f}" if self.low < 0 and round(level, decimals) != 0 else f"{level:.{decimals}f}"
        if self.unit == "of pixels":
            return f"{level:.0%} of pixels"
        if self.unit == "px":
            return f"{value} px"
        if self.unit == "°":
            return f"{value}°"
        if self.unit == "×":
            return f"×{value}"
        if self.unit == "σ":
            return f"σ {value}"
        return value


TRANSFORMS: dict[str, Transform] = {t.name: t for t in (
    Transform("shift_x", "horizontal shift", "px", -10, 10, 0, 0.5, "pixels to the right; negative: left", True),
    Transform("shift_y", "vertical shift", "px", -10, 10, 0, 0.5, "pixels down; negative: up", True),
    Transform("rotate", "rotation", "°", -90, 90, 0, 3, "degrees counter-clockwise about the image centre", True),
    Transform("scale", "scale", "×", 0.5, 1.5, 1, 0.02, "size factor about the image centre", True),
    Transform("squeeze", "squeeze", "", -0.5, 0.5, 0, 0.02,
              "q: width × (1 + q), height ÷ (1 + q); negative: narrower and taller", True),
    Transform("stroke", "stroke width", "px", -2, 2, 0, 0.1,
              "pixels of ink added on each side of every stroke; negative: removed"),
    Transform("salt_pepper", "salt-and-pepper noise", "of pixels", 0, 0.5, 0, 0.01,
              "fraction of pixels replaced by black or white, half each"),
    Transform("gaussian", "Gaussian noise", "σ", 0, 1, 0, 0.02, "standard deviation of the added noise, clipped to [0, 1]"),
)}

# The axes of the test-set robustness curves, each with 11 levels (the sweep ranges, evenly spaced).
ROBUSTNESS_KINDS = ("shift_x", "rotate", "salt_pepper", "gaussian")
ROBUSTNESS_STEPS = 11


def robustness_levels(kind: str, steps: int = ROBUSTNESS_STEPS) -> np.ndarray:
    """The levels of a robustness curve: ``steps`` evenly spaced over the transform's default range."""
    return _get(kind).levels(steps)


def _get(kind: str) -> Transform:
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown transform '{kind}'; choose one of {', '.join(TRANSFORMS)}")
    return TRANSFORMS[kind]


def _as_batch(images: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, bool]:
    """(N, 28, 28) float32 and whether the input had a channel dimension."""
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8:
        x = x.float() / 255
    x = x.float()
    channel = x.dim() == 4
    if x.dim() == 2:
        x = x.unsqueeze(0)
    elif channel:
        if x.shape[1] != 1:
            raise ValueError(f"expected one channel, got {tuple(x.shape)}; pass grey digits (N, 1, 28, 28)")
        x = x[:, 0]
    if x.dim() != 3 or x.shape[-2:] != (SIZE, SIZE):
        raise ValueError(f"expected digits (N, 28, 28) or (N, 1, 28, 28), got {tuple(torch.as_tensor(images).shape)}")
    return x, channel


def _as_levels(levels: float | Sequence[float] | np.ndarray | torch.Tensor, n: int) -> torch.Tensor:
    """Levels as a float32 vector; a single level is used for every image."""
    values = torch.as_tensor(np.asarray(levels, dtype=np.float32) if not torch.is_tensor(levels) else levels).float()
    if values.dim() == 0:
        values = values.expand(n)
    if values.dim() != 1:
        raise ValueError(f"levels must be a number or a vector, got shape {tuple(values.shape)}")
    return values


def transform(images: torch.Tensor | np.ndarray, kind: str, levels: float | Sequence[float] | np.ndarray | torch.Tensor,
              seed: int = 0) -> torch.Tensor:
    """Apply transform ``kind`` at ``levels``: level i to image i, or one image to every level, or one level to all.

    ``images``: float (N, 28, 28) or (N, 1, 28, 28) in [0, 1] (uint8 is scaled by 1/255), or one (28, 28) image.
    Returns float32 in [0, 1] with the input's layout (a (28, 28) image gives (L, 28, 28)). The noises are drawn
    from ``torch.Generator().manual_seed(seed)``: the same call gives the same pixels.
    """
    spec = _get(kind)
    x, channel = _as_batch(images)
    level = _as_levels(levels, len(x))
    if len(level) != len(x) and len(x) != 1:
        raise ValueError(f"{len(x)} images and {len(level)} levels: pass one image, one level, or as many levels as images")
    if spec.geometric:
        out = _geometric(x.expand(len(level), SIZE, SIZE), kind, level)
    elif kind == "stroke":
        out = _stroke(x, level)
    else:
        out = _noise(x, kind, level, _noise_fields(x.shape, kind, torch.Generator().manual_seed(seed)))
    return out.unsqueeze(1) if channel else out


def _geometric(x: torch.Tensor, kind: str, level: torch.Tensor) -> torch.Tensor:
    """One affine_grid + grid_sample for the batch; theta maps output to input coordinates (normalised, centre 0).
    One level for the whole batch (a robustness curve): one grid, shared by every image."""
    total = len(x)
    if total > 1 and bool((level == level[0]).all()):
        level = level[:1]
    n = len(level)
    one, zero = torch.ones(n), torch.zeros(n)
    a = torch.stack([torch.stack([one, zero], -1), torch.stack([zero, one], -1)], -2)  # (n, 2, 2) inverse map
    t = torch.zeros(n, 2)
    if kind == "shift_x":
        t[:, 0] = -level * 2 / SIZE
    elif kind == "shift_y":
        t[:, 1] = -level * 2 / SIZE
    elif kind == "rotate":
        # counter-clockwise on screen (y points down): sample the input at the clockwise-rotated position
        rad = level * math.pi / 180
        cos, sin = torch.cos(rad), torch.sin(rad)
        a = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    elif kind == "scale":
        a = a / level.clamp_min(1e-3).view(-1, 1, 1)
    elif kind == "squeeze":
        grow = (1 + level).clamp_min(1e-3)
        a = torch.diag_embed(torch.stack([1 / grow, grow], -1))
    theta = torch.cat([a, t.unsqueeze(-1)], dim=-1)
    grid = F.affine_grid(theta, [n, 1, SIZE, SIZE], align_corners=False).expand(total, SIZE, SIZE, 2)
    return F.grid_sample(x.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]


def _morph(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Dilate (radius > 0) or erode (radius < 0) by |radius| pixels with a 3x3 square."""
    y = x.unsqueeze(1)
    for _ in range(abs(radius)):
        y = F.max_pool2d(y, 3, stride=1, padding=1) if radius > 0 else -F.max_pool2d(-y, 3, stride=1, padding=1)
    return y[:, 0]


def _stroke(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Interpolate between whole-pixel dilations/erosions: level 1.25 = 0.75 x dilate(1) + 0.25 x dilate(2)."""
    n = len(level)
    low = torch.floor(level)
    frac = (level - low).view(-1, 1, 1)
    out = torch.empty(n, SIZE, SIZE)
    radii = sorted({int(r) for r in low.tolist()} | {int(r) + 1 for r in low.tolist()})
    morphed = {r: _morph(x, r).expand(n, SIZE, SIZE) for r in radii}  # the input batch per radius: a few pooling calls
    for r in sorted({int(v) for v in low.tolist()}):
        rows = low == r
        out[rows] = (1 - frac[rows]) * morphed[r][rows] + frac[rows] * morphed[r + 1][rows]
    return out


def _noise_fields(shape: torch.Size, kind: str, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """The random fields of a noise, one per input image: (hit, salt) for salt-and-pepper, (z,) for Gaussian."""
    if kind == "salt_pepper":
        return torch.rand(shape, generator=generator), torch.rand(shape, generator=generator) < 0.5
    if kind == "gaussian":
        return (torch.randn(shape, generator=generator),)
    raise ValueError(f"no noise called '{kind}'")


def _noise(x: torch.Tensor, kind: str, level: torch.Tensor, fields: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Apply drawn noise fields at every level (x: the input batch, before expansion; one image or one per level)."""
    n = max(len(x), len(level))
    lv = level.view(-1, 1, 1)
    if kind == "salt_pepper":
        hit, salt = fields
        replace = hit.expand(n, SIZE, SIZE) < lv
        return torch.where(replace, salt.expand(n, SIZE, SIZE).float(), x.expand(n, SIZE, SIZE))
    (z,) = fields
    return (x + lv * z).clamp_(0, 1)


@dataclass(frozen=True)
class Sweep:
    """One image transformed at every level of a range and classified in one forward batch."""

    kind: str
    levels: np.ndarray  # (L,)
    images: np.ndarray  # (L, 28, 28) float32 in [0, 1], the model's inputs
    probabilities: np.ndarray  # (L, 10) softmax of the scores
    predictions: np.ndarray  # (L,) argmax class
    confidences: np.ndarray  # (L,) probability of the predicted class

    def at(self, level: float) -> int:
        """Index of the level nearest ``level``."""
        return int(np.abs(self.levels - level).argmin())


def sweep(model: nn.Module, image: torch.Tensor | np.ndarray, kind: str,
          levels: Sequence[float] | np.ndarray | None = None, seed: int = 0) -> Sweep:
    """Classify one 28x28 image (ink = 1) under transform ``kind`` at every level (default: its slider grid).

    All levels go through the model as ONE batch, in eval mode (the model's own mode is handed back).
    """
    x, _ = _as_batch(image)
    if len(x) != 1:
        raise ValueError(f"sweep takes one image, got {len(x)}")
    values = np.asarray(_get(kind).levels() if levels is None else levels, dtype=np.float64)
    batch = transform(x, kind, values, seed=seed)
    probabilities = softmax_of(model, batch.unsqueeze(1))
    confidences, predictions = probabilities.max(dim=1)
    return Sweep(kind=kind, levels=values, images=batch.numpy(), probabilities=probabilities.numpy(),
                 predictions=predictions.numpy(), confidences=confidences.numpy())


def robustness(model: nn.Module, images: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, kind: str,
               levels: Sequence[float] | np.ndarray | None = None, batch_size: int = 256, seed: int = 0,
               amp_dtype: torch.dtype | None = None, fold: bool = True) -> np.ndarray:
    """Accuracy (fraction right, per level) of ``model`` over ``images`` with every image transformed at each level.

    ``images`` uint8 or float (N, 28, 28) / (N, 1, 28, 28); default levels: 11 over the transform's range.
    Noise is seeded per batch (``seed`` + batch start), so a call is deterministic for a given ``batch_size``.
    The model runs :func:`~convnets.folding.folded` (batch norm and the squashing constants folded into the layers,
    NHWC layout; ``fold=False``: the model as it is, in eval mode), in batches of 256, which keep one thread's
    activations in cache (``bench/invariance.py``). ``amp_dtype``
    (``torch.bfloat16``) runs the model under ``torch.autocast``: faster again where the CPU has AVX-512 BF16 or AMX,
    and within a few tenths of a point of float32's accuracies (a few digits of 10,000 change their answer).
    """
    values = np.asarray(robustness_levels(kind) if levels is None else levels, dtype=np.float64)
    y = torch.as_tensor(np.asarray(labels)).long()
    n = len(y)
    if len(images) != n:
        raise ValueError(f"{len(images)} images but {n} labels")
    if n == 0:
        raise ValueError("no images to measure robustness on")
    right = torch.zeros(len(values), dtype=torch.long)
    level_tensor = torch.as_tensor(values, dtype=torch.float32)
    noisy = kind in ("salt_pepper", "gaussian")
    device = next(model.parameters()).device.type
    net = folded(model) if fold else model  # folded: the same answers with fewer elementwise passes, in NHWC
    with inference(model), torch.autocast(device, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        for start in range(0, n, batch_size):
            x, _ = _as_batch(images[start:start + batch_size])
            target = y[start:start + batch_size]
            fields = _noise_fields(x.shape, kind, torch.Generator().manual_seed(seed + start)) if noisy else None
            for i, level in enumerate(level_tensor):
                # the same pixels as transform(x, kind, level, seed=seed + start), with the noise drawn once per batch
                batch = _noise(x, kind, level.expand(len(x)), fields) if noisy else transform(x, kind, level)
                right[i] += (net(batch.unsqueeze(1)).argmax(dim=1) == target).sum()
    return right.numpy() / n
