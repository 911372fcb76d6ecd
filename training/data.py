"""Digit data: MNIST through torchvision, a local copy, or the offline sample.

Everything is decoded once into uint8 tensors (N, 28, 28), ink = 255, and
moved to the training device whole; batches are sliced from there.

Sources (the ``--data`` argument):

* ``mnist`` -- the official MNIST through torchvision, downloaded once into the
  cache folder (``$CONVNET_LAB_DATA`` or ``~/.cache/convnet-lab``);
* a path -- an ``.npz`` with ``x_train, y_train, x_test, y_test`` or a folder
  with the four official idx files (optionally ``.gz``);
* ``sample`` -- 5,000 real MNIST digits shipped with the package (works offline):
  the first 500 of each class in MNIST's *training* set, so the shipped weights are trained
  with them excluded (``exclude_sample=True``) and they can serve as held out.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# sha256 of the official MNIST test images (10,000 x 28 x 28 uint8) followed by their uint8 labels:
# a copy is recognised by its content, wherever it came from.
OFFICIAL_TEST_SHA256 = "c3f9adf9c66efb572b1f9326c3a511b45910c7173b97be66ceceeeeaef6b802b"
SAMPLE_TEST_EVERY = 5  # the sample is sorted by class: every fifth digit is held out


class DataError(ValueError):
    """Data that cannot be used; the message names the problem and the fix."""


class OnDevice:
    """``to(device)`` for a frozen dataclass of train/test tensors (:class:`DigitData`, ``ImageData``)."""

    def to(self: _Data, device: str | torch.device) -> _Data:
        return replace(self, **{k: getattr(self, k).to(device) for k in ("train_x", "train_y", "test_x", "test_y")})


_Data = TypeVar("_Data", bound=OnDevice)


@dataclass(frozen=True)
class DigitData(OnDevice):
    """Train and test digits as uint8 tensors (N, 28, 28), ink = 255, and int64 labels."""

    name: str
    description: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    test_description: str = "held-out test split"

    def summary(self) -> dict:
        return {"name": self.name, "description": self.description, "test_set": self.test_description,
                "train_size": len(self.train_y), "test_size": len(self.test_y)}


def cache_dir() -> Path:
    """Where downloads go: ``$CONVNET_LAB_DATA`` or ``~/.cache/convnet-lab``."""
    return Path(os.environ.get("CONVNET_LAB_DATA", Path.home() / ".cache" / "convnet-lab"))


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [0, 1], the models' input."""
    return images.unsqueeze(1).float().div_(255)


def load_digits(source: str, exclude_sample: bool = False) -> DigitData:
    """Load ``mnist``, ``sample`` or a path (see module docstring) as a :class:`DigitData`."""
    if source == "mnist":
        data = _torchvision_mnist(cache_dir())
    elif source == "sample":
        data = load_sample()
    elif os.sep in source or source.endswith(".npz") or Path(source).exists():
        data = _local_copy(Path(source))
    else:
        raise DataError(f"unknown data source '{source}'; use 'mnist', 'sample', or a path to an .npz or idx folder")
    if source != "sample":
        data = replace(data, test_description=_describe_test(data))
    if exclude_sample:
        data = without_sample(data)
    return data


def _describe_test(data: DigitData) -> str:
    digest = hashlib.sha256(data.test_x.cpu().numpy().tobytes() + data.test_y.cpu().to(torch.uint8).numpy().tobytes())
    if digest.hexdigest() == OFFICIAL_TEST_SHA256:
        return "the official MNIST test set (10,000 digits)"
    return f"the test split of {data.name} ({len(data.test_y):,} digits)"


def _torchvision_mnist(root: Path) -> DigitData:
    from torchvision.datasets import MNIST

    try:
        train = MNIST(str(root), train=True, download=True)
        test = MNIST(str(root), train=False, download=True)
    except (RuntimeError, OSError) as exc:
        raise DataError(
            f"could not download MNIST into {root} ({exc}); connect to the internet, "
            "or pass the path of a local copy (.npz or the idx files), or use --data sample"
        ) from None
    return DigitData("mnist", "MNIST (official 60,000 train / 10,000 test)",
                     train.data.clone(), train.targets.clone(), test.data.clone(), test.targets.clone())


def _local_copy(path: Path) -> DigitData:
    if not path.exists():
        raise DataError(f"data path {path} does not exist; pass an .npz file or a folder with the MNIST idx files")
    if path.is_dir():
        arrays = {key: _read_idx(_find_idx(path, stem)) for key, stem in IDX_FILES.items()}
    else:
        try:
            with np.load(path, allow_pickle=False) as npz:
                missing = [k for k in IDX_FILES if k not in npz.files]
                if missing:
                    raise DataError(f"{path} lacks {', '.join(missing)}; an .npz needs x_train, y_train, x_test, y_test")
                arrays = {k: npz[k] for k in IDX_FILES}
        except (OSError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"{path} is not a readable .npz ({exc}); pass an .npz or a folder of idx files") from None
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (x.shape[0],):
            raise DataError(f"{path}: x_{split} must be (N, 28, 28) and y_{split} (N,); got {x.shape} and {y.shape}")
        if y.size and (y.min() < 0 or y.max() > 9):
            raise DataError(f"{path}: y_{split} must hold digit labels 0-9")
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    for key in ("x_train", "x_test"):
        tensors[key] = _to_uint8(tensors[key], path)
    return DigitData(f"path:{path.name}", f"MNIST-format digits from {path}",
                     tensors["x_train"], tensors["y_train"].long(), tensors["x_test"], tensors["y_test"].long())


def _to_uint8(x: torch.Tensor, path: Path) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x
    if x.is_floating_point() and x.numel() and x.max() <= 1.0:
        return (x * 255).round().clamp(0, 255).to(torch.uint8)
    return x.clamp(0, 255).to(torch.uint8)


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz", folder / stem.replace("-idx", ".idx")):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder} has no {stem}[.gz]; a data folder needs the four official MNIST idx files")


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte idx file; download the official MNIST files again")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated ({body.size} of {int(np.prod(dims))} values); download it again")
    return body.reshape(dims).copy()


def evaluation_source() -> str:
    """Which digits the dashboard evaluates on, without downloading anything.

    ``$CONVNET_LAB_MNIST``: a path to a local MNIST copy (.npz or idx folder), ``mnist`` or
    ``sample``. Unset: ``mnist`` when torchvision's copy is already in the cache folder, else
    ``sample`` (the offline held-out digits).
    """
    chosen = os.environ.get("CONVNET_LAB_MNIST", "").strip()
    if chosen:
        return chosen
    raw = cache_dir() / "MNIST" / "raw"
    downloaded = all((raw / f"{stem}").exists() or (raw / f"{stem}.gz").exists()
                     for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
    return "mnist" if downloaded else "sample"


def evaluation_digits(source: str | None = None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The test digits of ``source`` (default :func:`evaluation_source`): (uint8 images, labels, description).

    The official MNIST test set when the full MNIST is at hand, else the offline sample's 1,000
    held-out digits; the description says which (for captions: every number names its data).
    """
    source = source or evaluation_source()
    data = load_sample() if source == "sample" else load_digits(source)
    description = data.test_description if source != "sample" else \
        f"the {len(data.test_y):,} held-out digits of {data.description}"
    return data.test_x, data.test_y, description


def load_sample() -> DigitData:
    """The shipped 5,000 MNIST digits (500 per class): every fifth as a test split, the rest for training."""
    x, y = _sample_arrays()
    held_out = torch.arange(len(y)) % SAMPLE_TEST_EVERY == SAMPLE_TEST_EVERY - 1
    mixed = torch.randperm(int((~held_out).sum()), generator=torch.Generator().manual_seed(0))  # so --limit N sees every class
    return DigitData("sample", "5,000 MNIST training digits shipped with convnet-lab (4,000 train / 1,000 held out)",
                     x[~held_out][mixed], y[~held_out][mixed], x[held_out], y[held_out],
                     "1,000 held-out digits of the offline sample (from MNIST's training set)")


MNIST_SAMPLE_FILE = Path(__file__).parent / "samples" / "mnist-sample.npz"  # bench/make_mnist_sample.py made it


@functools.lru_cache(maxsize=1)
def _sample_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(MNIST_SAMPLE_FILE, allow_pickle=False) as arrays:
        x, y = arrays["x"], arrays["y"]
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


def _fingerprints(images: torch.Tensor) -> list[str]:
    flat = images.reshape(len(images), -1).cpu().numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=12).hexdigest() for row in flat]


def without_sample(data: DigitData) -> DigitData:
    """Drop every training digit that is also in the offline sample, so the sample stays unseen."""
    sample = set(_fingerprints(_sample_arrays()[0]))
    keep = torch.tensor([fp not in sample for fp in _fingerprints(data.train_x)], dtype=torch.bool)
    removed = int((~keep).sum())
    return replace(data, name=f"{data.name}-minus-sample",
                   description=f"{data.description}, minus the {removed} training digits of the offline sample",
                   train_x=data.train_x[keep.to(data.train_x.device)],
                   train_y=data.train_y[keep.to(data.train_y.device)])
