"""Turn any picture of one digit into the models' input, the way MNIST was made; the digit-specific image operations.

:func:`prepare_digit` follows the MNIST recipe and keeps every step, so an app
can show them: grayscale (with alpha composited away), inversion of
dark-on-light pictures, removal of the background (uneven light too), crop to
the ink, strokes thinner than MNIST's widened to MNIST's width, fit in a 20x20
box keeping the aspect ratio (antialiased), and placement in 28x28 with the
centre of mass at the centre. The result is the (1, 1, 28, 28) float tensor in
[0, 1], ink = 1, that every model in :mod:`convnets` takes.

The operations torchvision has (grayscale, resize, blur) go through
``torchvision.transforms.v2.functional``; the ones it lacks and only digits need
live here, once: :func:`crop_to_ink`, :func:`centre_of_mass`,
:func:`centre_by_mass`, :func:`dilate` and :func:`stroke_width`.

Numpy arrays in and out, torch inside; no UI code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageOps

MAX_SIDE = 4096  # larger pictures are refused before their pixels are decoded
MIN_SIDE = 8
BOX = 20  # MNIST fits each digit's bounding box in 20x20 ...
SIZE = 28  # ... and centres it by mass in 28x28
CENTRE = 14.0  # where MNIST's centres of mass sit (row, column), measured on the offline sample
NOISE_FLOOR = 0.15  # after stretching to [0, 1], weaker ink is treated as background (paper grain, JPEG noise)
MIN_CONTRAST = 0.08  # ink must differ from the background by this much (of full scale) to count
MNIST_STROKES = (1.38, 3.09)  # 5th and 95th percentiles of stroke_width over MNIST's 10,000 test digits ...
MNIST_STROKE = 2.0  # ... and their median
WORK = 4 * BOX  # strokes are measured and widened with the digit fitted to 80 px, 4x its final size


@dataclass(frozen=True)
class DigitSteps:
    """Every step of :func:`prepare_digit`, as float32 arrays in [0, 1] unless noted."""

    gray: np.ndarray  # (H, W) luminance as given, alpha composited away
    inverted: bool  # True when the picture was dark ink on a light background
    ink: np.ndarray  # (H, W) ink = 1, background = 0 (inverted if needed, background removed)
    bbox: tuple[int, int, int, int]  # (top, left, bottom, right) of the ink in ``ink``, exclusive ends
    cropped: np.ndarray  # (h, w) the ink's bounding box
    fitted: np.ndarray  # (h', w') with max(h', w') == 20, aspect ratio kept (strokes widened when too thin)
    centred: np.ndarray  # (28, 28) the model input as an image
    centre_of_mass: tuple[float, float]  # (row, column) of ``centred``
    tensor: torch.Tensor  # (1, 1, 28, 28) float32, the model input
    stroke: tuple[float, float] = (0.0, 0.0)  # stroke width in 20x20-box pixels, as drawn and as fitted

    def gallery(self) -> list[tuple[str, np.ndarray]]:
        """The steps in order as (caption, image) pairs, for display."""
        drawn, fitted = self.stroke
        widened = f"; strokes widened {drawn:.1f} → {fitted:.1f} px" if fitted > drawn + 0.05 else ""
        return [
            ("grayscale", self.gray),
            ("inverted: ink = 1" if self.inverted else "ink = 1 (no inversion needed)", self.ink),
            (f"cropped to ink {self.cropped.shape[0]}x{self.cropped.shape[1]}", self.cropped),
            (f"fitted in 20x20: {self.fitted.shape[0]}x{self.fitted.shape[1]}", self.fitted),
            (f"28x28, centred by mass{widened}", self.centred),  # the widest picture: room for the longer caption
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
    cropped, bbox = crop_to_ink(ink)
    fitted, stroke = fit_strokes(cropped)
    centred, com = centre_by_mass(fitted, SIZE)
    tensor = torch.from_numpy(centred.copy()).view(1, 1, SIZE, SIZE)
    return DigitSteps(gray=gray, inverted=inverted, ink=ink, bbox=bbox, cropped=cropped, fitted=fitted,
                      centred=centred, centre_of_mass=com, tensor=tensor, stroke=stroke)


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
    check_size(array.shape[0], array.shape[1])
    values = to_unit(array)
    if values.ndim == 2:
        return values
    colour, alpha = (values[..., :1], values[..., 1]) if values.shape[2] == 2 else (values[..., :3], None)
    if values.shape[2] == 4:
        alpha = values[..., 3]
    luma = colour[..., 0] if colour.shape[2] == 1 else _np(TF.rgb_to_grayscale(torch.from_numpy(colour).permute(2, 0, 1)))
    if alpha is None or alpha.min() >= 1.0:
        return np.ascontiguousarray(luma, dtype=np.float32)
    if alpha.max() <= 0.0:
        raise ValueError("the image is fully transparent: no ink found; draw a digit first")
    stroke_luma = float((luma * alpha).sum() / alpha.sum())
    background = 0.0 if stroke_luma >= 0.5 else 1.0
    return (luma * alpha + background * (1.0 - alpha)).astype(np.float32)


def fit_in_box(image: np.ndarray, box: int = BOX) -> np.ndarray:
    """Resize so the longer side is ``box`` pixels, keeping the aspect ratio exactly (bicubic, antialiased).

    The shorter side is not rounded to whole pixels: the image is first padded with background to a whole number
    of output pixels, so a stroke 1.5 px wide at the new size covers two pixels at partial ink rather than one in full.
    """
    h, w = image.shape
    scale = box / max(h, w)
    size = [max(1, math.ceil(h * scale - 1e-6)), max(1, math.ceil(w * scale - 1e-6))]
    pad_h, pad_w = (max(0, round(n / scale) - m) for n, m in zip(size, (h, w), strict=True))
    x = F.pad(_tensor(image), (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
    resized = TF.resize(x, size, interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    return _np(resized.clamp_(0.0, 1.0))


def fit_strokes(cropped: np.ndarray, box: int = BOX) -> tuple[np.ndarray, tuple[float, float]]:
    """Fit the cropped ink in ``box`` (:func:`fit_in_box`), first widening strokes thinner than MNIST's.

    A pen that is thin for the digit's size (a fine liner on a large digit, a thin 1 in a photo) would end up far
    thinner than MNIST's strokes, which are about 2 px at 28x28 whatever the writer's pen: strokes thinner than 95 %
    of MNIST's (its 5th percentile) are dilated (a disk), with the digit fitted to 4x the box, to MNIST's median
    width, and the result is cropped and fitted to the box. (Widened only to the 5th percentile, a vertical 1 keeps
    less ink than any MNIST digit and is taken for "not a digit".) Returns the fitted digit and its stroke width in
    box pixels (as drawn, as fitted).
    """
    scale, target = box / WORK, MNIST_STROKE
    work = fit_in_box(cropped, WORK)
    drawn = stroke_width(work) * scale
    if drawn >= MNIST_STROKES[0]:
        return fit_in_box(cropped, box), (drawn, drawn)
    # widening by g at 4x grows the digit too: (w + g) / (WORK + g) * box = target for a vertical stroke; diagonal
    # strokes read thinner (see stroke_width), so a second try scales g by what the first one achieved
    grow = (target - drawn) / scale / (1 - target / box)
    for _ in range(2):
        radius = grow / 2
        widened = crop_to_ink(dilate(np.pad(work, math.ceil(radius)), radius))[0]
        reached = stroke_width(widened) * scale
        if reached >= target - 0.02:
            break
        grow *= (target - drawn) / max(reached - drawn, 1e-3)
    return fit_in_box(widened, box), (drawn, reached)


def stroke_width(image: np.ndarray) -> float:
    """Mean stroke width in pixels: twice the ink's mass over its total variation (its outline's length).

    A stroke of width w and length L has mass w L and an outline of about 2 L; edges blurred by antialiasing leave
    both unchanged. Diagonal strokes read about 0.7x as wide (the variation is summed along rows and columns).
    """
    x = np.pad(np.asarray(image, dtype=np.float32), 1)  # a crop's own edges are outline too
    variation = float(np.abs(np.diff(x, axis=0)).sum() + np.abs(np.diff(x, axis=1)).sum())
    return 2.0 * float(x.sum()) / variation if variation > 0 else 0.0


def dilate(image: np.ndarray, radius: float = 1.0, square: bool = False) -> np.ndarray:
    """Grey-level dilation: each pixel becomes the maximum over a disk (or a square) of ``radius`` pixels around it.

    A fractional disk radius blends the two whole-pixel dilations around it; the square takes whole pixels
    (``dilate(x, 2, square=True)`` is two 3x3 maxima in a row).
    """
    x = _tensor(image)
    if square:
        r = int(radius)
        return _np(F.max_pool2d(x, 2 * r + 1, stride=1, padding=r)) if r > 0 else _np(x)
    low, frac = int(math.floor(radius)), radius - math.floor(radius)
    below = _disk_max(x, low)
    return _np(below if frac < 1e-6 else (1 - frac) * below + frac * _disk_max(x, low + 1))


def _disk_max(x: torch.Tensor, r: int) -> torch.Tensor:
    if r <= 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (r, r, r, r))
    out = x.clone()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dx * dx + dy * dy <= r * r + r:  # a digital disk (r^2 + r keeps the four diagonal-ish points of r = 1)
                out = torch.maximum(out, padded[..., r + dy:r + dy + h, r + dx:r + dx + w])
    return out


def crop_to_ink(image: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The bounding box of the non-zero pixels and its (top, left, bottom, right), exclusive ends."""
    rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
    if not len(rows):
        raise ValueError("no ink found: draw a digit first")
    bbox = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    return image[bbox[0]:bbox[2], bbox[1]:bbox[3]], bbox


def centre_by_mass(image: np.ndarray, size: int = SIZE, centre: float = CENTRE) -> tuple[np.ndarray, tuple[float, float]]:
    """Place ``image`` in a ``size`` x ``size`` canvas, shifted by whole pixels so its centre of mass is at ``centre``.

    Returns the canvas and its centre of mass (row, column). The digit is never
    cut: the shift is clamped to keep it inside.
    """
    h, w = image.shape
    if h > size or w > size:
        raise ValueError(f"image {h}x{w} does not fit in {size}x{size}; fit it in the 20x20 box first")
    com = centre_of_mass(image)
    top = int(np.clip(round(centre - com[0]), 0, size - h))
    left = int(np.clip(round(centre - com[1]), 0, size - w))
    canvas = np.zeros((size, size), dtype=np.float32)
    canvas[top:top + h, left:left + w] = image
    return canvas, (com[0] + top, com[1] + left)


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, column) of the ink's centre of mass; ValueError for an image without ink."""
    total = float(image.sum())
    if total <= 0:
        raise ValueError("no ink found: draw a digit first")
    rows, cols = np.arange(image.shape[0]), np.arange(image.shape[1])
    return float(image.sum(axis=1) @ rows / total), float(image.sum(axis=0) @ cols / total)


def _ink(gray: np.ndarray) -> tuple[np.ndarray, bool]:
    """Ink = 1 on background = 0: invert dark-on-light pictures, subtract the (unevenly lit) background, stretch,
    drop noise."""
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    inverted = float(np.median(border)) > 0.5
    ink = 1.0 - gray if inverted else gray
    ink = ink - background(ink)
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise ValueError("no ink found (the picture is one flat colour): draw a digit first")
    ink = np.clip(ink / peak, 0.0, 1.0)
    ink[ink < NOISE_FLOOR] = 0.0
    return ink.astype(np.float32), inverted


def background(ink: np.ndarray, work: int = 64, rounds: int = 4) -> np.ndarray:
    """The slowly varying background under light strokes (paper under uneven light, once inverted).

    A quadratic surface in (row, column) -- a gradient and a vignette -- fitted by least squares to the picture reduced
    to ``work`` px a side, refitted ``rounds`` times to the pixels it does not see as ink (more than 3 robust standard
    deviations above it), so strokes of any width leave it alone. Never above the picture itself.
    """
    h, w = ink.shape
    scale = min(1.0, work / max(h, w))
    small = TF.resize(_tensor(ink), [max(2, round(h * scale)), max(2, round(w * scale))], antialias=True)[0, 0]
    design = _terms(*small.shape).reshape(6, -1).T
    values = small.reshape(-1).double()
    keep = torch.ones_like(values, dtype=torch.bool)
    for _ in range(rounds):
        coefficients = torch.linalg.lstsq(design[keep], values[keep, None]).solution[:, 0]
        residual = values - design @ coefficients
        middle = residual[keep].median()
        spread = 1.4826 * float((residual[keep] - middle).abs().median()) + 1e-3
        keep = residual < middle + 3 * spread
    a, b, c, d, e, f = coefficients.tolist()
    r, q = (((torch.arange(n, dtype=torch.float32) + 0.5) * scale / 64) for n in (h, w))
    surface = (a + b * r + d * r * r)[:, None] + (c * q + f * q * q)[None, :] + e * r[:, None] * q[None, :]
    return np.minimum(surface.numpy(), ink)


def _terms(h: int, w: int) -> torch.Tensor:
    """The six terms (1, r, c, r^2, r c, c^2) of a quadratic surface at the pixel centres, (6, h, w), r and c over
    64 to keep the least-squares problem well conditioned."""
    r, c = torch.meshgrid(*((torch.arange(n, dtype=torch.float64) + 0.5) / 64 for n in (h, w)), indexing="ij")
    return torch.stack([torch.ones_like(r), r, c, r * r, r * c, c * c])


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).view(1, 1, *image.shape)


def _np(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.reshape(x.shape[-2:]).numpy(), dtype=np.float32)


def check_size(height: int, width: int) -> None:
    """ValueError naming the limit unless a picture is between 8x8 and 4096x4096 pixels."""
    if height > MAX_SIDE or width > MAX_SIDE:
        raise ValueError(f"image is {width}x{height} pixels; the limit is {MAX_SIDE}x{MAX_SIDE}: resize it first")
    if height < MIN_SIDE or width < MIN_SIDE:
        raise ValueError(f"image is {width}x{height} pixels; it needs at least {MIN_SIDE}x{MIN_SIDE}: use a larger picture")


def pil_to_array(image: Image.Image) -> np.ndarray:
    """A PIL picture as an array of its own pixels (size checked before decoding, EXIF rotation applied)."""
    check_size(image.height, image.width)  # before decoding any pixels
    return pixels(ImageOps.exif_transpose(image))  # phone photos: apply the camera's rotation


def pixels(image: Image.Image) -> np.ndarray:
    """The pixels of a PIL picture of any mode as L, LA, RGB, RGBA, 1-bit or float-in-[0, 1] arrays."""
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
