"""Odd inputs in the spirit of LeCun et al.'s "weirdos": broken, thick, thin, doubled, noisy digits and non-digits.

:func:`weirdos` builds them deterministically from real digits (the first digit
of a class in the given set) and from shapes drawn in code. Each is a float32
28x28 image in [0, 1], ink = 1, placed the MNIST way (20x20 box, centred by mass)
where that makes sense, so only the oddity differs from an ordinary digit.

Numpy and Pillow, and the digit operations of :mod:`convnets.digits`; no UI code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .digits import SIZE, centre_by_mass, centre_of_mass, crop_to_ink, dilate, fit_in_box, prepare_digit

CANVAS = 112  # shapes are drawn at 4x and brought to 28x28 by the MNIST recipe (antialiased)
STROKE = 11  # pen width at 4x: about MNIST's 2-3 px strokes at 28x28


@dataclass(frozen=True)
class Weirdo:
    """One odd input: its name, what was done, the 28x28 image, and the digit a person reads (None: no single digit)."""

    name: str
    description: str
    image: np.ndarray  # float32 (28, 28) in [0, 1], ink = 1
    reads: int | None


def weirdos(images: np.ndarray, labels: np.ndarray, seed: int = 0) -> list[Weirdo]:
    """The odd inputs, built from ``images`` (N, 28, 28) uint8 (ink = 255) or float in [0, 1] and their ``labels``.

    Each edited digit is the most typical of its class in ``images`` (closest to the class's mean image), so the
    oddity is the edit and not the handwriting; ``seed`` fixes the noise.
    """
    scale = 255.0 if np.asarray(images).dtype == np.uint8 else 1.0
    labels = np.asarray(labels)

    def digit(cls: int) -> np.ndarray:
        members = np.asarray(images[labels == cls], dtype=np.float32) / scale
        if not len(members):
            raise ValueError(f"no digit of class {cls} among the {len(labels)} given; pass digits of every class")
        return members[((members - members.mean(axis=0)) ** 2).sum(axis=(1, 2)).argmin()]

    rng = np.random.default_rng(seed)
    zero, three, four, five, seven, eight = (digit(c) for c in (0, 3, 4, 5, 7, 8))
    return [
        Weirdo("plain 4", "A typical 4, untouched: the reference.", four, 4),
        Weirdo("broken 0", "A 0 with a 3-pixel band erased across its middle: both strokes cut.", broken(zero), 0),
        Weirdo("thick 3", "A 3 dilated twice (3x3 maximum): very thick strokes.",
               _remnist(dilate(three, 2, square=True)), 3),
        Weirdo("thin 8", "An 8 eroded to a hairline (2x2 minimum of the inked pixels).", thin(eight), 8),
        Weirdo("two digits", "A 3 and a 5 side by side, fitted in 20x20 together as MNIST would a picture of both.",
               side_by_side(three, five), None),
        Weirdo("noisy 5", "A 5 under heavy Gaussian noise (σ = 0.35, clipped to [0, 1]).",
               np.clip(five + rng.normal(0, 0.35, five.shape), 0, 1).astype(np.float32), 5),
        Weirdo("pure noise", "Uniform noise in [0, 1]: no digit at all.", rng.random((SIZE, SIZE), dtype=np.float32), None),
        Weirdo("blank", "An empty image: no ink anywhere.", np.zeros((SIZE, SIZE), dtype=np.float32), None),
        Weirdo("inverted 3", "A 3 as black ink on white: to the model, ink everywhere but the stroke.", 1.0 - three, 3),
        Weirdo("mirrored 7", "A 7 flipped left to right.", np.ascontiguousarray(seven[:, ::-1]), None),
        Weirdo("tiny 4", "A 4 shrunk to 12 px high, centred by mass: MNIST's digits are 20 px.", tiny(four), 4),
        Weirdo("ring", "A circle drawn in code: a 0 to some, a letter O to others.", drawn(_ring), None),
        Weirdo("cross", "A plus sign drawn in code.", drawn(_cross), None),
        Weirdo("bar", "A horizontal bar drawn in code: a minus sign.", drawn(_bar), None),
        Weirdo("letter A", "A capital A drawn in code with three strokes.", drawn(_letter_a), None),
    ]


def broken(image: np.ndarray, width: int = 3) -> np.ndarray:
    """Erase a horizontal band ``width`` rows high through the ink's centre of mass."""
    out = image.copy()
    centre = int(round(centre_of_mass(image)[0]))
    out[centre - width // 2:centre - width // 2 + width] = 0.0
    return out


def thin(image: np.ndarray) -> np.ndarray:
    """Strokes thinned to about one pixel: the 2x2 minimum of the inked (> 0.3) pixels, at full ink."""
    ink = (image > 0.3).astype(np.float32)
    padded = np.pad(ink, ((0, 1), (0, 1)))
    core = np.minimum.reduce([padded[:-1, :-1], padded[1:, :-1], padded[:-1, 1:], padded[1:, 1:]])
    return core if core.any() else ink


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 2) -> np.ndarray:
    """Two digits cropped to their ink, set side by side and placed as one MNIST digit (20x20 box, centred)."""
    a, b = _crop(left), _crop(right)
    height = max(a.shape[0], b.shape[0])
    pair = np.zeros((height, a.shape[1] + gap + b.shape[1]), dtype=np.float32)
    pair[(height - a.shape[0]) // 2:][:a.shape[0], :a.shape[1]] = a
    pair[(height - b.shape[0]) // 2:][:b.shape[0], a.shape[1] + gap:] = b
    return _remnist(pair)


def tiny(image: np.ndarray, box: int = 12) -> np.ndarray:
    """The digit's ink fitted in a ``box`` x ``box`` square and centred by mass in 28x28."""
    return centre_by_mass(fit_in_box(_crop(image), box))[0]


def drawn(draw: Callable[[ImageDraw.ImageDraw, int], None]) -> np.ndarray:
    """A shape drawn white on black at 112x112 by ``draw(pen, size)``, then prepared the MNIST way."""
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    draw(ImageDraw.Draw(canvas), CANVAS)
    return prepare_digit(np.asarray(canvas)).centred


def _ring(pen: ImageDraw.ImageDraw, n: int) -> None:
    pen.ellipse((n * 0.2, n * 0.2, n * 0.8, n * 0.8), outline=255, width=STROKE)


def _cross(pen: ImageDraw.ImageDraw, n: int) -> None:
    pen.line((n * 0.5, n * 0.15, n * 0.5, n * 0.85), fill=255, width=STROKE)
    pen.line((n * 0.15, n * 0.5, n * 0.85, n * 0.5), fill=255, width=STROKE)


def _bar(pen: ImageDraw.ImageDraw, n: int) -> None:
    pen.line((n * 0.15, n * 0.5, n * 0.85, n * 0.5), fill=255, width=STROKE)


def _letter_a(pen: ImageDraw.ImageDraw, n: int) -> None:
    pen.line((n * 0.2, n * 0.85, n * 0.5, n * 0.15, n * 0.8, n * 0.85), fill=255, width=STROKE, joint="curve")
    pen.line((n * 0.32, n * 0.6, n * 0.68, n * 0.6), fill=255, width=STROKE)


def _crop(image: np.ndarray) -> np.ndarray:
    return crop_to_ink(image)[0]


def _remnist(image: np.ndarray) -> np.ndarray:
    """Crop to the ink, fit in 20x20 and centre by mass: the MNIST placement of an edited digit."""
    return centre_by_mass(fit_in_box(_crop(image)))[0]
