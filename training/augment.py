"""The paper's distortions, applied to whole batches on the device.

LeCun et al. (1998, Sec. III-C) distorted training digits with random planar
affine maps: horizontal and vertical translation, scaling, squeezing
(compress one axis while stretching the other) and horizontal shearing.
Elastic distortion (Simard et al. 2003) is an option, off by default.

Each image gets its own random map, so the whole batch is warped by one ``affine_grid`` + ``grid_sample`` call
(``torchvision.transforms.v2.functional.affine`` applies one map to a whole batch); the elastic field is smoothed
with torchvision's ``gaussian_blur``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF


@dataclass(frozen=True)
class Distortion:
    """Strengths of the random distortions; each is drawn uniformly in [-value, +value]."""

    translate: float = 2.0  # pixels, each axis
    scale: float = 0.1  # relative size change
    squeeze: float = 0.1  # x grows by (1 + s) while y shrinks by (1 + s), or the reverse
    shear: float = 0.2  # horizontal shear, x += shear * y
    rotate: float = 0.0  # degrees (not in the paper; off by default)
    elastic: float = 0.0  # elastic displacement in pixels (0 = off)
    elastic_sigma: float = 4.0  # smoothness of the elastic field, pixels

    def as_dict(self) -> dict:
        return asdict(self)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return distort(images, self, generator)


def _uniform(n: int, bound: float, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return (torch.rand(n, generator=generator, device=like.device, dtype=like.dtype) * 2 - 1) * bound


def affine_matrices(n: int, d: Distortion, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 2, 3) sampling matrices in normalised coordinates, one random distortion each."""
    height, width = like.shape[-2:]
    scale = 1 + _uniform(n, d.scale, like, generator)
    squeeze = 1 + _uniform(n, d.squeeze, like, generator)
    shear = _uniform(n, d.shear, like, generator)
    angle = _uniform(n, d.rotate, like, generator) * math.pi / 180
    tx = _uniform(n, d.translate, like, generator) * 2 / width
    ty = _uniform(n, d.translate, like, generator) * 2 / height
    # forward map: rotate, then shear, then scale/squeeze; the sampler needs its inverse
    sx, sy = scale * squeeze, scale / squeeze
    cos, sin = torch.cos(angle), torch.sin(angle)
    a = torch.stack([torch.stack([sx * (cos + shear * sin), sx * (-sin + shear * cos)], -1),
                     torch.stack([sy * sin, sy * cos], -1)], -2)
    inverse = torch.linalg.inv(a)
    shift = -(inverse @ torch.stack([tx, ty], -1).unsqueeze(-1))
    return torch.cat([inverse, shift], dim=-1)


def distort(images: torch.Tensor, d: Distortion, generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomly distort a float batch (N, C, H, W); background must be 0."""
    n = images.shape[0]
    theta = affine_matrices(n, d, images, generator)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    if d.elastic > 0:
        grid = grid + _elastic_field(images, d, generator)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _elastic_field(images: torch.Tensor, d: Distortion, generator: torch.Generator | None) -> torch.Tensor:
    n, _, height, width = images.shape
    noise = torch.rand(n, 2, height, width, generator=generator, device=images.device, dtype=images.dtype) * 2 - 1
    side = min(2 * int(math.ceil(3 * d.elastic_sigma)) + 1, 2 * ((min(height, width) - 1) // 2) + 1)  # reflect: < image
    smooth = TF.gaussian_blur(noise, [side, side], [d.elastic_sigma, d.elastic_sigma])
    smooth = smooth / smooth.abs().amax(dim=(2, 3), keepdim=True).clamp_min(1e-8)
    scale = torch.tensor([2 / width, 2 / height], device=images.device, dtype=images.dtype).view(1, 2, 1, 1)
    return (smooth * d.elastic * scale).permute(0, 2, 3, 1)
