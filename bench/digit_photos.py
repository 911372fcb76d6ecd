"""Photo-like pictures of handwritten digits with known labels, and how the shipped models read them.

We have no camera, so the set is made, deterministically (fixed seeds), in two halves:

* **rendered**: digits 0-9 drawn as pen strokes (smoothed polylines, random slant, size, aspect and
  wobble) with pen widths from a fine liner (1.5 % of the digit's height) to a marker (7 %), including
  thin 1s -- a single vertical stroke, with a flag, with a flag and a base serif, slightly slanted;
* **mnist**: held-out MNIST digits of the shipped sample (not in the shipped models' training set)
  enlarged 16x to photo size, smoothed, and with their strokes thinned or thickened.

Every picture is then "photographed": dark ink on a 600x600 sheet of off-white paper with grain,
uneven lighting (a gradient and a vignette), a Gaussian blur and JPEG compression (quality 55-85).

Run ``python bench/digit_photos.py`` to print, for both shipped models, what each picture is read as
through ``convnets.digits.prepare_digit`` and the accuracy; ``--save DIR`` writes the pictures as JPEG
files to look at. Tests import :func:`photo_set` from this file.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PHOTO = 600  # side of every picture, pixels
SUPER = 2  # strokes are drawn at 2x and reduced (antialiased edges)

# Each digit as strokes of control points in a unit box (x right, y down), smoothed by Chaikin's corner cutting.
STROKES: dict[str, list[list[tuple[float, float]]]] = {
    "0": [[(0.5, 0.0), (0.1, 0.15), (0.05, 0.6), (0.3, 1.0), (0.75, 0.95), (0.95, 0.5), (0.85, 0.1), (0.5, 0.0),
           (0.35, 0.05)]],
    "1": [[(0.5, 0.0), (0.5, 1.0)]],
    "1-flag": [[(0.2, 0.2), (0.55, 0.0), (0.55, 1.0)]],
    "1-serif": [[(0.2, 0.2), (0.55, 0.0), (0.55, 1.0)], [(0.25, 1.0), (0.85, 1.0)]],
    "1-slant": [[(0.65, 0.0), (0.35, 1.0)]],
    "2": [[(0.1, 0.25), (0.4, 0.0), (0.85, 0.1), (0.85, 0.4), (0.05, 1.0), (0.95, 0.98)]],
    "3": [[(0.1, 0.1), (0.6, 0.0), (0.85, 0.25), (0.4, 0.48), (0.9, 0.7), (0.7, 1.0), (0.1, 0.9)]],
    "4": [[(0.6, 0.0), (0.05, 0.65), (0.95, 0.65)], [(0.7, 0.3), (0.7, 1.0)]],
    "5": [[(0.85, 0.0), (0.2, 0.0), (0.15, 0.45), (0.7, 0.4), (0.9, 0.75), (0.6, 1.0), (0.1, 0.9)]],
    "6": [[(0.75, 0.0), (0.25, 0.35), (0.1, 0.8), (0.45, 1.0), (0.85, 0.8), (0.7, 0.5), (0.3, 0.55), (0.15, 0.75)]],
    "7": [[(0.05, 0.05), (0.95, 0.05), (0.35, 1.0)]],
    "8": [[(0.5, 0.45), (0.15, 0.25), (0.45, 0.0), (0.85, 0.2), (0.5, 0.45), (0.1, 0.75), (0.45, 1.0), (0.9, 0.75),
           (0.5, 0.45)]],
    "9": [[(0.85, 0.25), (0.5, 0.0), (0.15, 0.2), (0.3, 0.5), (0.85, 0.3), (0.85, 0.3), (0.7, 1.0)]],
}


@dataclass(frozen=True)
class Photo:
    """One picture: the RGB photo (H, W, 3) uint8, its true label, and how it was made."""

    image: np.ndarray
    label: int
    name: str


def _smooth(points: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Chaikin's corner cutting: a polyline rounded like a pen's path (end points kept)."""
    for _ in range(rounds):
        if len(points) < 3:
            return points
        a, b = points[:-1], points[1:]
        cut = np.empty((2 * len(a), 2))
        cut[0::2], cut[1::2] = 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b
        points = np.vstack([points[:1], cut, points[-1:]])
    return points


def render_strokes(key: str, pen: float, rng: np.random.Generator) -> np.ndarray:
    """Digit ``key`` drawn in a random hand: float32 ink mask (PHOTO, PHOTO), 1 = ink; ``pen`` in units of height."""
    height = rng.uniform(0.45, 0.75) * PHOTO
    aspect = rng.uniform(0.55, 0.8) if key[0] != "1" else rng.uniform(0.35, 0.5)
    slant = rng.uniform(-0.15, 0.2)
    top, left = rng.uniform(0.08, 0.92 - height / PHOTO) * PHOTO, rng.uniform(0.1, 0.5) * PHOTO
    canvas = Image.new("L", (PHOTO * SUPER, PHOTO * SUPER), 0)
    draw = ImageDraw.Draw(canvas)
    for stroke in STROKES[key]:
        unit = np.asarray(stroke, dtype=np.float64) + rng.normal(0, 0.02, (len(stroke), 2))
        path = _smooth(unit)
        x = left + (path[:, 0] * aspect + slant * (1 - path[:, 1])) * height
        y = top + path[:, 1] * height
        width = max(1, round(pen * height * SUPER))
        xy = [(float(a) * SUPER, float(b) * SUPER) for a, b in zip(x, y, strict=True)]
        draw.line(xy, fill=255, width=width, joint="curve")
        for cx, cy in (xy[0], xy[-1]):  # round pen tips
            draw.ellipse((cx - width / 2, cy - width / 2, cx + width / 2, cy + width / 2), fill=255)
    small = canvas.resize((PHOTO, PHOTO), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255


def enlarge_mnist(digit: np.ndarray, change: int, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 MNIST digit (uint8, ink 255) at photo size: 16x, smoothed, strokes grown (change > 0) or thinned."""
    scale = 16
    big = Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    big = big.filter(ImageFilter.GaussianBlur(6)).point(lambda v: 255 if v > 110 else 0)
    if change:
        size = 2 * abs(change) + 1
        big = big.filter(ImageFilter.MaxFilter(size) if change > 0 else ImageFilter.MinFilter(size))
    big = big.filter(ImageFilter.GaussianBlur(1.5))
    canvas = Image.new("L", (PHOTO, PHOTO), 0)
    offset = (int(rng.integers(0, PHOTO - big.width + 1)), int(rng.integers(0, PHOTO - big.height + 1)))
    canvas.paste(big, offset)
    return np.asarray(canvas, dtype=np.float32) / 255


def photograph(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dark ink (mask in [0, 1]) on off-white paper: grain, uneven light, blur, JPEG. RGB uint8 (H, W, 3)."""
    h, w = ink.shape
    paper = np.array([rng.uniform(215, 245), rng.uniform(210, 240), rng.uniform(195, 230)])
    pen = np.array([rng.uniform(10, 50), rng.uniform(10, 50), rng.uniform(30, 110)])  # black to blue
    grain = np.asarray(Image.fromarray(rng.normal(128, 40, (h, w)).clip(0, 255).astype(np.uint8))
                       .filter(ImageFilter.GaussianBlur(1.2)), dtype=np.float32) - 128
    rows, cols = np.mgrid[0:h, 0:w] / max(h, w)
    angle = rng.uniform(0, 2 * np.pi)
    light = 1 - rng.uniform(0.05, 0.25) * (np.cos(angle) * cols + np.sin(angle) * rows)  # a gradient
    light *= 1 - rng.uniform(0.05, 0.2) * ((rows - 0.5) ** 2 + (cols - 0.5) ** 2) * 2  # and a vignette
    strength = ink[..., None] * rng.uniform(0.8, 1.0)
    picture = (paper * (1 - strength) + pen * strength + grain[..., None] * 0.15) * light[..., None]
    image = Image.fromarray(picture.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.5)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(55, 86)))
    with Image.open(buffer) as jpeg:
        return np.asarray(jpeg.convert("RGB"))


def photo_set(seed: int = 0) -> list[Photo]:
    """The whole set, 60 pictures: 30 rendered (12 of them 1s) and 30 enlarged held-out MNIST digits (3 of each)."""
    from training.data import load_sample

    rng = np.random.default_rng(seed)
    photos = []
    pens = (0.015, 0.025, 0.04, 0.07)
    keys = [k for k in STROKES if k[0] != "1"] * 2 + ["1", "1-flag", "1-serif", "1-slant"] * 3
    for i, key in enumerate(keys):
        pen = pens[i % len(pens)]
        photos.append(Photo(photograph(render_strokes(key, pen, rng), rng), int(key[0]),
                            f"rendered {key} pen {pen:.1%}"))
    data = load_sample()
    x, y = data.test_x.numpy(), data.test_y.numpy()
    changes = (-6, -3, 0, 4, 8)  # at 16x: MNIST's ~2 px strokes (about 32 px here) thinned to a third ... thickened
    for digit in range(10):
        for k, index in enumerate(np.flatnonzero(y == digit)[:3]):
            change = changes[(digit + k) % len(changes)]
            photos.append(Photo(photograph(enlarge_mnist(x[index], change, rng), rng), digit,
                                f"mnist #{index} strokes {change:+d}px@16x"))
    return photos


def baseline_prepare(rev: str) -> Callable:
    """``prepare_digit`` as ``convnets/digits.py`` was at git revision ``rev`` (to measure before beside after)."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:convnets/digits.py"], check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType(f"digits_at_{rev}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:convnets/digits.py", "exec"), module.__dict__)  # noqa: S102 - our own file, from git
    return module.prepare_digit


def read_all(photos: list[Photo], prepare: Callable | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per shipped model: (predicted classes, their softmax probabilities) of every photo through ``prepare``
    (default: convnets.digits.prepare_digit)."""
    import torch

    import convnets
    from convnets.digits import prepare_digit

    prepare = prepare or prepare_digit
    batch = torch.cat([prepare(p.image).tensor for p in photos])
    out = {}
    for name in ("lenet5", "lenet5-modern"):
        model, _ = convnets.load_pretrained(name)
        with torch.no_grad():
            probs = model(batch).softmax(dim=1)
        out[name] = (probs.argmax(1).numpy(), probs.max(1).values.numpy())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--save", type=Path, help="write the pictures here as JPEG files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", metavar="REV", help="also read the set with prepare_digit as of this git revision")
    args = parser.parse_args()
    photos = photo_set(args.seed)
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        for i, p in enumerate(photos):
            Image.fromarray(p.image).save(args.save / f"{i:02d}-{p.label}.jpg", quality=90)
    runs = {"now": read_all(photos)}
    if args.baseline:
        runs = {args.baseline: read_all(photos, baseline_prepare(args.baseline)), **runs}
    labels = np.array([p.label for p in photos])
    columns = [(run, name) for run in runs for name in ("lenet5", "lenet5-modern")]
    print(f"{'picture':36s} {'true':>4s} " + " ".join(f"{f'{name} ({run})':>22s}" for run, name in columns))
    for i, p in enumerate(photos):
        cells = [f"{runs[r][n][0][i]} {runs[r][n][1][i]:5.0%}" + (" " if runs[r][n][0][i] == p.label else "*")
                 for r, n in columns]
        print(f"{p.name:36s} {p.label:4d} " + " ".join(f"{c:>22s}" for c in cells))
    ones, rendered = labels == 1, np.array([p.name.startswith("rendered") for p in photos])
    for run, name in columns:
        pred = runs[run][name][0]
        right = pred == labels
        print(f"{name:14s} ({run}): {int(right.sum())}/{len(labels)} right; 1s {int(right[ones].sum())}/"
              f"{int(ones.sum())}; rendered {int(right[rendered].sum())}/{int(rendered.sum())}, "
              f"mnist {int(right[~rendered].sum())}/{int((~rendered).sum())}")


if __name__ == "__main__":
    main()
