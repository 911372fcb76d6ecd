"""Pictures into the networks' input: RGB conversion, resizing, the checks and the input layer that normalises.

Resizing, cropping and grey-to-RGB go through ``torchvision.transforms.v2.functional``; alpha compositing onto white
(which torchvision does not do for tensors) is :func:`to_rgb`'s own.

Every AlexNet-family model takes RGB tensors (N, 3, S, S) with values in [0, 1] and normalises them itself in its
first layer, :class:`RGBInput`; a wrong channel count or size is refused there with a ValueError that names the fix
(:func:`prepare_images`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageOps
from torch import nn

from .digits import check_size, pixels, to_unit

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def check_images(x: torch.Tensor, size: int) -> None:
    """Raise a ValueError naming the fix unless ``x`` is a float batch (N, 3, size, size)."""
    fix = f"convnets.pictures.prepare_images(x, {size}) converts greyscale/RGBA to RGB and resizes"
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        hint = "; add the batch dimension with x.unsqueeze(0)" if isinstance(x, torch.Tensor) and x.dim() == 3 else ""
        raise ValueError(f"expected RGB images of shape (N, 3, {size}, {size}) with values in [0, 1], got {shape}{hint}")
    if not x.is_floating_point():
        raise ValueError(f"expected float images in [0, 1], got dtype {x.dtype}; convert uint8 with x.float() / 255")
    channels = x.shape[1]
    if channels != 3:
        kind = {1: "greyscale", 2: "greyscale + alpha", 4: "RGBA"}.get(channels, f"{channels}-channel")
        raise ValueError(f"expected RGB images (N, 3, {size}, {size}), got {kind} images of shape {tuple(x.shape)}; {fix}")
    if x.shape[2:] != (size, size):
        raise ValueError(f"expected RGB images of size {size}x{size}, got {x.shape[2]}x{x.shape[3]}; {fix}")


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] with C = 1, 2, 3 or 4 -> RGB: grey is repeated, alpha composited onto white."""
    channels = x.shape[1]
    if channels in (2, 4):
        colour, alpha = x[:, :-1], x[:, -1:]
        x = colour * alpha + (1 - alpha)
        channels -= 1
    if channels == 1:
        return TF.grayscale_to_rgb(x).contiguous()
    if channels == 3:
        return x
    raise ValueError(f"cannot turn {x.shape[1]}-channel images into RGB; expected 1 (grey), 2, 3 (RGB) or 4 (RGBA) channels")


def fit_size(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the shorter side is ``size`` (bilinear, antialiased), then take the central size x size crop."""
    height, width = x.shape[-2:]
    if (height, width) != (size, size):
        scale = size / min(height, width)
        new = [max(size, round(height * scale)), max(size, round(width * scale))]
        if new != [height, width]:
            x = TF.resize(x, new, antialias=True)
        x = TF.center_crop(x, [size, size])
    return x


def image_to_rgb(image: Image.Image) -> torch.Tensor:
    """A decoded PIL picture of any mode -> (3, H, W) float RGB in [0, 1]: grey repeated, palette expanded, alpha
    composited onto white, CMYK / 16-bit converted (no size check, no EXIF rotation: see :func:`picture_to_rgb`)."""
    array = to_unit(pixels(image))
    x = torch.from_numpy(np.ascontiguousarray(array))
    x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
    return to_rgb(x.unsqueeze(0))[0].clamp(0, 1)


def picture_to_rgb(image: Image.Image) -> torch.Tensor:
    """A PIL picture of any mode -> (3, H, W) float RGB in [0, 1], ready for :func:`prepare_images`.

    Greyscale is repeated, alpha composited onto white, palette / CMYK / 16-bit converted; the
    camera's EXIF rotation is applied; an animation gives its first frame. Pictures over
    4096 pixels a side or under 8 are refused (ValueError naming the limit) before decoding.
    """
    check_size(image.height, image.width)  # before decoding any pixels
    return image_to_rgb(ImageOps.exif_transpose(image))


def prepare_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Any (N, C, H, W) or (C, H, W) image batch -> float RGB (N, 3, size, size) in [0, 1] (uint8 is divided by 255)."""
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if not x.is_floating_point():
        x = x.float() / 255
    return fit_size(to_rgb(x), size).clamp(0, 1)


class RGBInput(nn.Module):
    """Check (N, 3, size, size) in [0, 1], then normalise each channel: (x - mean) / std."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.size = size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, self.size)
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"size={self.size}, mean={tuple(round(v, 4) for v in self.mean.flatten().tolist())}"
