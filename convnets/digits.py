"""Turn any picture of one digit into the models' input, the way MNIST was made.

:func:`prepare_digit` follows the MNIST recipe and keeps every step, so an app
can show them: grayscale (with alpha composited away), inversion of
dark-on-light pictures, crop to the ink, fit in a 20x20 box keeping the aspect
ratio (antialiased), and placement in 28x28 with the centre of mass at the
centre. The result is the (1, 1, 28, 28) float tensor in [0, 1], ink = 1,
that every model in :mod:`convnets` takes.

Pure numpy, Pillow and torch; no UI code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps

MAX_SIDE = 4096  # larger pictures are refused before their pixels are decoded
MIN_SIDE = 8
BOX = 20  # MNIST fits each digit's bounding box in 20x20 ...
SIZE = 28  # ... and centres it by mass in 28x28
CENTRE = 14.0  # where MNIST's centres of mass sit (row, column), measured on the offline sample
NOISE_FLOOR = 0.15  # after stretching to [0, 1], weaker ink is treated as background (paper grain, JPEG noise)
MIN_CONTRAST = 0.08  # ink must differ from the background by this much (of full scale) to count


@dataclass(frozen=True)
class DigitSteps:
    """Every step of :func:`prepare_digit`, as float32 arrays in [0, 1] unless noted."""

    gray: np.ndarray  # (H, W) luminance as given, alpha composited away
    inverted: bool  # True when the picture was dark ink on a light background
    ink: np.ndarray  # (H, W) ink = 1, background = 0 (inverted if needed, background removed)
    bbox: tuple[int, int, int, int]  # (top, left, bottom, right) of the ink in ``ink``, exclusive ends
    cropped: np.ndarray  # (h, w) the ink's bounding box
    fitted: np.ndarray  # (h', w') with max(h', w') == 20, aspect ratio kept
    centred: np.ndarray  # (28, 28) the model input as an image
    centre_of_mass: tuple[float, float]  # (row, column) of ``centred``
    tensor: torch.Tensor  # (1, 1, 28, 28) float32, the model input

    def gallery(self) -> list[tuple[str, np.ndarray]]:
        """The steps in order as (caption, image) pairs, for display."""
        return [
            ("grayscale", self.gray),
            ("inverted: ink = 1" if self.inverted else "ink = 1 (no inversion needed)", self.ink),
            (f"cropped to ink {self.cropped.shape[0]}x{self.cropped.shape[1]}", self.cropped),
            (f"fitted in 20x20: {self.fitted.shape[0]}x{self.fitted.shape[1]}", self.fitted),
            ("28x28, centred by mass", self.centred),
        ]


def prepare_digit(image: np.ndarray | Image.Image) -> DigitSteps:
    """Preprocess one digit picture (array or PIL image, any size up to 4096x4096) the MNIST way.

    Accepts grayscale (H, W), (H, W, 1), gray+alpha (H, W, 2), RGB (H, W, 3) or
    RGBA (H, W, 4) arrays (uint8, uint16, bool or float in [0, 1]) and PIL
    images. Light-on-dark and dark-on-light both work. Raises ``ValueError``
    with the fix when the picture is empty, has the wrong shape or is too big.
    """
    gray = to_grayscale(image)
    ink, inverted = _ink(gray)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    bbox = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    cropped = ink[bbox[0]:bbox[2], bbox[1]:bbox[3]]
    fitted = fit_in_box(cropped, BOX)
    centred, com = centre_by_mass(fitted, SIZE)
    tensor = torch.from_numpy(centred.copy()).view(1, 1, SIZE, SIZE)
    return DigitSteps(gray=gray, inverted=inverted, ink=ink, bbox=bbox, cropped=cropped, fitted=fitted,
                      centred=centred, centre_of_mass=com, tensor=tensor)


def to_grayscale(image: np.ndarray | Image.Image) -> np.ndarray:
    """Luminance in [0, 1] as float32 (H, W); transparent pixels become the background.

    Alpha is composited over the colour that contrasts with the opaque pixels:
    white strokes on a transparent canvas land on black, black strokes on white,
    so either way the strokes stay ink.
    """
    if isinstance(image, Image.Image):
        array = pil_to_array(image)
    elif isinstance(image, np.ndarray):
        array = image
    else:
        raise ValueError(f"expected a numpy array or PIL image, got {type(image).__name__}; open the file with PIL first")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (2, 3, 4)):
        raise ValueError(
            f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {array.shape}; pass one picture, not a batch"
        )
    _check_size(array.shape[0], array.shape[1])
    values = to_unit(array)
    if values.ndim == 2:
        return values
    colour, alpha = (values[..., :1], values[..., 1]) if values.shape[2] == 2 else (values[..., :3], None)
    if values.shape[2] == 4:
        alpha = values[..., 3]
    luma = colour[..., 0] if colour.shape[2] == 1 else colour @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if alpha is None or alpha.min() >= 1.0:
        return np.ascontiguousarray(luma, dtype=np.float32)
    if alpha.max() <= 0.0:
        raise ValueError("the image is fully transparent: no ink found; draw a digit first")
    stroke_luma = float((luma * alpha).sum() / alpha.sum())
    background = 0.0 if stroke_luma >= 0.5 else 1.0
    return (luma * alpha + background * (1.0 - alpha)).astype(np.float32)


def fit_in_box(image: np.ndarray, box: int = BOX) -> np.ndarray:
    """Resize so the longer side is ``box`` pixels, keeping the aspect ratio (Lanczos, antialiased)."""
    h, w = image.shape
    scale = box / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL wants (width, height)
    resized = Image.fromarray(image.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def centre_by_mass(image: np.ndarray, size: int = SIZE, centre: float = CENTRE) -> tuple[np.ndarray, tuple[float, float]]:
    """Place ``image`` in a ``size`` x ``size`` canvas, shifted by whole pixels so its centre of mass is at ``centre``.

    Returns the canvas and its centre of mass (row, column). The digit is never
    cut: the shift is clamped to keep it inside.
    """
    h, w = image.shape
    if h > size or w > size:
        raise ValueError(f"image {h}x{w} does not fit in {size}x{size}; fit it in the 20x20 box first")
    com = _centre_of_mass(image)
    top = int(np.clip(round(centre - com[0]), 0, size - h))
    left = int(np.clip(round(centre - com[1]), 0, size - w))
    canvas = np.zeros((size, size), dtype=np.float32)
    canvas[top:top + h, left:left + w] = image
    return canvas, (com[0] + top, com[1] + left)


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    total = float(image.sum())
    if total <= 0:
        raise ValueError("no ink found: draw a digit first")
    rows, cols = np.arange(image.shape[0]), np.arange(image.shape[1])
    return float(image.sum(axis=1) @ rows / total), float(image.sum(axis=0) @ cols / total)


def _ink(gray: np.ndarray) -> tuple[np.ndarray, bool]:
    """Ink = 1 on background = 0: invert dark-on-light pictures, subtract the background, stretch, drop noise."""
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    background = float(np.median(border))
    inverted = background > 0.5
    ink = 1.0 - gray if inverted else gray
    background = 1.0 - background if inverted else background
    peak = float(ink.max())
    if peak - background < MIN_CONTRAST:
        raise ValueError("no ink found (the picture is one flat colour): draw a digit first")
    ink = np.clip((ink - background) / (peak - background), 0.0, 1.0)
    ink[ink < NOISE_FLOOR] = 0.0
    return ink.astype(np.float32), inverted


def _check_size(height: int, width: int) -> None:
    if height > MAX_SIDE or width > MAX_SIDE:
        raise ValueError(f"image is {width}x{height} pixels; the limit is {MAX_SIDE}x{MAX_SIDE}: resize it first")
    if height < MIN_SIDE or width < MIN_SIDE:
        raise ValueError(f"image is {width}x{height} pixels; it needs at least {MIN_SIDE}x{MIN_SIDE}: use a larger picture")


def pil_to_array(image: Image.Image) -> np.ndarray:
    """A PIL picture as an array of its own pixels (size checked before decoding, EXIF rotation applied)."""
    _check_size(image.height, image.width)  # before decoding any pixels
    image = ImageOps.exif_transpose(image)  # phone photos: apply the camera's rotation
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        array = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode.startswith("I") and array.max() > 255 else 255.0
        return np.clip(array / top, 0.0, 1.0)
    if image.mode not in ("1", "L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
    return np.asarray(image)


def to_unit(array: np.ndarray) -> np.ndarray:
    """Any supported dtype -> float32 in [0, 1]."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        if not np.isfinite(values).all():
            raise ValueError("the image has NaN or infinite values; pass finite pixel values")
        if values.min() < 0.0 or values.max() > 255.0:
            raise ValueError(f"float pixels must lie in [0, 1] (or [0, 255]); got {values.min():.3g}..{values.max():.3g}")
        return values / 255.0 if values.max() > 1.0 else values
    raise ValueError(f"unsupported pixel type {array.dtype}; pass uint8, uint16, bool or float pixels")
