"""Colour image data: CIFAR-10, Imagenette, or any image folder, decoded once into uint8 tensors.

Every source becomes an :class:`ImageData`: uint8 tensors (N, 3, H, W) and int64 labels, moved to
the training device whole; the models take ``as_float(x)`` = x / 255.

Sources (:func:`load_images`):

* ``cifar10`` -- CIFAR-10 through torchvision, downloaded once (with a progress bar) into the
  cache folder of :mod:`training.data` (``$CONVNET_LAB_DATA`` or ``~/.cache/convnet-lab``);
* ``imagenette`` (or ``imagenette-320px``, ``imagenette-full``) -- the 10-class ImageNet subset
  through ``torchvision.datasets.Imagenette``, 160px by default, into the same cache;
* a path -- a folder laid out as ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*`` (``val``
  is accepted for ``test``; either split may be absent), or a ``.tar.gz`` / ``.tgz`` / ``.tar``
  of that layout, extracted once into ``<cache>/folders/``.

Decoding (Pillow, then :mod:`convnets.pictures`, which uses torchvision's functional transforms): every image
is converted to RGB (grey repeated; palette expanded; alpha composited onto white). With ``size=S`` each image
is resized so its shorter side is S and the central S x S crop kept (the paper's recipe for ImageNet at S = 256);
without ``size`` all images must share one size, otherwise a DataError asks for ``size``. Files Pillow cannot read
(a text file, a corrupt image) are **skipped with a warning** (:class:`SkippedFilesWarning`, with their count and
first paths; the count is also in ``description``); hidden files (``.DS_Store``, ``._*``) are ignored silently.
A class folder with no readable image is a DataError.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from convnets.inference import inference
from convnets.pictures import fit_size, image_to_rgb

from .data import DataError, OnDevice, cache_dir
from .image_augment import centre_crop, ten_patch_probs

TEST_SPLITS = ("test", "val")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


class SkippedFilesWarning(UserWarning):
    """Some files in an image folder could not be read as images and were skipped."""


@dataclass(frozen=True)
class ImageData(OnDevice):
    """Train and test images as uint8 tensors (N, 3, H, W), int64 labels, and the class names."""

    name: str
    description: str
    classes: tuple[str, ...]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    test_description: str = "held-out test split"

    @property
    def image_size(self) -> tuple[int, int]:
        x = self.train_x if len(self.train_x) else self.test_x
        return int(x.shape[-2]), int(x.shape[-1])

    def summary(self) -> dict:
        return {"name": self.name, "description": self.description, "test_set": self.test_description,
                "classes": list(self.classes), "image_size": list(self.image_size),
                "train_size": len(self.train_y), "test_size": len(self.test_y)}

    def subset(self, train: int | None = None, test: int | None = None) -> ImageData:
        """The first ``train`` / ``test`` images in a class-balanced order (round robin over the classes)."""
        def pick(y: torch.Tensor, n: int | None) -> torch.Tensor:
            if n is None or n >= len(y):
                return torch.arange(len(y), device=y.device)
            rank = torch.zeros(len(y), dtype=torch.long, device=y.device)  # rank of each image within its class
            for c in y.unique():
                members = (y == c).nonzero().squeeze(1)
                rank[members] = torch.arange(len(members), device=y.device)
            order = torch.argsort(rank * (int(y.max()) + 1) + y, stable=True)
            return order[:n].sort().values

        tr, te = pick(self.train_y, train), pick(self.test_y, test)
        return replace(self, train_x=self.train_x[tr], train_y=self.train_y[tr], test_x=self.test_x[te],
                       test_y=self.test_y[te], description=f"{self.description}; subset {len(tr):,} train / {len(te):,} test")


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float in [0, 1], the models' input (float input is returned as it is)."""
    return images if images.is_floating_point() else images.float().div_(255)


def load_images(source: str, size: int | None = None, train_per_class: int | None = None,
                test_per_class: int | None = None) -> ImageData:
    """Load ``cifar10``, ``cifar10-sample`` (shipped, offline), ``imagenette[-160px|-320px|-full]`` or a folder /
    archive path (module docstring)."""
    if source == "cifar10":
        return _cifar10(cache_dir(), size, train_per_class, test_per_class)
    if source == "cifar10-sample":
        data = cifar_sample()
        if size not in (None, 32):
            data = replace(data, train_x=_resize_uint8(data.train_x, size), test_x=_resize_uint8(data.test_x, size))
        return data
    if source.startswith("imagenette"):
        variant = source.partition("-")[2] or "160px"
        return _imagenette(cache_dir(), variant, size, train_per_class, test_per_class)
    path = Path(source)
    if path.exists():
        return load_image_folder(path, size, train_per_class, test_per_class)
    raise DataError(f"unknown image source '{source}': use 'cifar10', 'imagenette', or the path of an image folder "
                    "(ROOT/train/<class>/*, ROOT/test/<class>/*) or of a .tar.gz of one")


def cifar_source() -> str | None:
    """CIFAR-10 if it is at hand without a download: ``$CONVNET_LAB_CIFAR`` (an image folder or .tar.gz,
    or ``cifar10``), else ``cifar10`` when torchvision's copy is in the cache folder, else None."""
    chosen = os.environ.get("CONVNET_LAB_CIFAR", "").strip()
    if chosen:
        return chosen
    return "cifar10" if (cache_dir() / "cifar-10-batches-py" / "test_batch").is_file() else None


CIFAR_SAMPLE_FILE = Path(__file__).parent / "samples" / "cifar10-sample.npz"


def cifar_sample() -> ImageData:
    """The CIFAR-10 sample shipped with convnet-lab (no download, no CIFAR-10 needed): 2,000 training images
    (200 per class) and 1,000 test images (100 per class, from the official test split), decoded from the JPEG
    bytes stored in ``training/samples/cifar10-sample.npz`` (how it was drawn: ``bench/make_cifar_sample.py``)."""
    arrays = _cifar_sample_arrays()
    train_x, train_y, test_x, test_y = (torch.tensor(arrays[k]) for k in ("train_x", "train_y", "test_x", "test_y"))
    classes = arrays["classes"]
    return ImageData("cifar10-sample", f"CIFAR-10 sample shipped with convnet-lab: {len(train_y):,} training / "
                     f"{len(test_y):,} test images", classes, train_x, train_y, test_x, test_y,
                     f"the sample's {len(test_y):,} test images (from the official CIFAR-10 test split)")


@functools.lru_cache(maxsize=1)
def _cifar_sample_arrays() -> dict:
    """The sample's images decoded once per process: uint8 (N, 3, 32, 32), int64 labels, class names. Read-only."""
    with np.load(CIFAR_SAMPLE_FILE, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    out: dict = {"classes": tuple(str(c) for c in arrays["classes"])}
    for split in ("train", "test"):
        blob, offsets = arrays[f"{split}_jpeg"].tobytes(), arrays[f"{split}_offsets"]
        images = []
        for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
            with Image.open(io.BytesIO(blob[start:end])) as image:
                images.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
        x = np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))
        y = arrays[f"{split}_labels"].astype(np.int64)
        x.flags.writeable = y.flags.writeable = False
        out[f"{split}_x"], out[f"{split}_y"] = x, y
    return out


# --------------------------------------------------------------------------- torchvision data sets


def _cifar10(root: Path, size: int | None, train_per_class: int | None, test_per_class: int | None) -> ImageData:
    from torchvision.datasets import CIFAR10

    try:
        train = CIFAR10(str(root), train=True, download=True)
        test = CIFAR10(str(root), train=False, download=True)
    except (RuntimeError, OSError) as exc:
        raise DataError(f"could not download CIFAR-10 into {root} ({exc}); connect to the internet, or pass the path of "
                        "a local copy in the image-folder layout (ROOT/train/<class>/*.png, ROOT/test/<class>/*) "
                        "or a .tar.gz of it") from None

    def tensors(ds, per_class: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.tensor(ds.targets, dtype=torch.long)
        keep = _first_per_class(y, per_class)
        x = torch.from_numpy(ds.data[keep.numpy()]).permute(0, 3, 1, 2).contiguous()
        if size is not None and size != 32:
            x = _resize_uint8(x, size)
        return x, y[keep]

    train_x, train_y = tensors(train, train_per_class)
    test_x, test_y = tensors(test, test_per_class)
    return ImageData("cifar10", "CIFAR-10 (torchvision; official 50,000 train / 10,000 test)", tuple(train.classes),
                     train_x, train_y, test_x, test_y, f"the CIFAR-10 test set ({len(test_y):,} images)")


def _first_per_class(y: torch.Tensor, per_class: int | None) -> torch.Tensor:
    if per_class is None:
        return torch.arange(len(y))
    keep = torch.zeros(len(y), dtype=torch.bool)
    for c in y.unique():
        keep[(y == c).nonzero().squeeze(1)[:per_class]] = True
    return keep.nonzero().squeeze(1)


def _resize_uint8(x: torch.Tensor, size: int) -> torch.Tensor:
    return (fit_size(x.float(), size)).round().clamp(0, 255).to(torch.uint8)


def _imagenette(root: Path, variant: str, size: int | None, train_per_class: int | None,
                test_per_class: int | None) -> ImageData:
    from torchvision.datasets import Imagenette

    if variant not in ("160px", "320px", "full"):
        raise DataError(f"unknown Imagenette size '{variant}'; use imagenette, imagenette-320px or imagenette-full")
    folder = root / "imagenette"
    try:
        ds = Imagenette(str(folder), split="val", size=variant, download=True)
    except (RuntimeError, OSError) as exc:
        raise DataError(f"could not download Imagenette ({variant}) into {folder} ({exc}); connect to the internet, "
                        "or pass the path of a local copy (its train/ and val/ folders)") from None
    names = {wnid: synonyms[0] for wnid, synonyms in zip(ds.wnids, ds.classes, strict=True)}
    default = {"160px": 160, "320px": 320, "full": 256}[variant]
    image_root = getattr(ds, "_image_root", None)  # <cache>/imagenette/imagenette2-160/val
    extracted = Path(image_root).parent if image_root else _find_root(folder)
    data = load_image_folder(extracted, size or default, train_per_class, test_per_class)
    return replace(data, name=f"imagenette-{variant}", classes=tuple(names.get(c, c) for c in data.classes),
                   description=f"Imagenette ({variant}; 10 ImageNet classes), {data.description}",
                   test_description=f"the Imagenette validation set ({len(data.test_y):,} images)")


# --------------------------------------------------------------------------- image folders


def load_image_folder(path: str | os.PathLike, size: int | None = None, train_per_class: int | None = None,
                      test_per_class: int | None = None) -> ImageData:
    """An image folder (or a .tar.gz of one) as :class:`ImageData`; see the module docstring for the rules."""
    path = Path(path)
    if path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES):
        root = _find_root(_extract_once(path))
    elif path.is_dir():
        root = _find_root(path)
    else:
        raise DataError(f"{path} is neither a folder nor a .tar.gz / .tgz / .tar archive of one")
    splits = {"train": root / "train"} if (root / "train").is_dir() else {}
    test = next((root / s for s in TEST_SPLITS if (root / s).is_dir()), None)
    if test is not None:
        splits["test"] = test
    classes = _class_names(splits["train"] if "train" in splits else splits["test"])
    skipped: list[Path] = []
    shapes: dict[tuple[int, int], Path] = {}
    arrays: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for split, folder in splits.items():
        if split == "test":
            extra = sorted(set(_class_names(folder)) - set(classes))
            if extra:
                raise DataError(f"{folder} has classes that {splits['train']} lacks: {', '.join(extra)}; "
                                "the test classes must be among the training classes")
        limit = train_per_class if split == "train" else test_per_class
        if limit == 0:
            continue  # a split not wanted (e.g. evaluation only)
        images, labels = [], []
        for label, name in enumerate(classes):
            class_dir = folder / name
            if not class_dir.is_dir():
                continue  # a test split may lack classes
            found = _decode_class(class_dir, size, limit, skipped)
            if not found:
                raise DataError(f"class folder {class_dir} holds no readable image; add images or remove the folder")
            for image, file in found:
                shapes.setdefault(image.shape[:2], file)
                if len(shapes) > 1:
                    (a, fa), (b, fb) = list(shapes.items())[:2]
                    raise DataError(f"images in {root} have different sizes ({a[1]}x{a[0]} in {fa}, {b[1]}x{b[0]} in {fb}); "
                                    "pass size=S (--size S) to resize every image (shorter side to S, then a centre crop)")
                images.append(image)
            labels += [label] * len(found)
        arrays[split] = (_stack(images), torch.tensor(labels, dtype=torch.long))
    if skipped:
        shown = ", ".join(str(p) for p in skipped[:3])
        warnings.warn(f"skipped {len(skipped)} file(s) that are not readable images, e.g. {shown}",
                      SkippedFilesWarning, stacklevel=2)
    if not shapes:
        raise DataError(f"no images loaded from {root}: ask for at least one image per class")
    height, width = next(iter(shapes))
    empty = (torch.zeros(0, 3, height, width, dtype=torch.uint8), torch.zeros(0, dtype=torch.long))
    train_x, train_y = arrays.get("train", empty)
    test_x, test_y = arrays.get("test", empty)
    note = f"; {len(skipped)} unreadable file(s) skipped" if skipped else ""
    if _is_cifar10(classes, (height, width), len(train_y), len(test_y)):
        return ImageData("cifar10", f"CIFAR-10, {len(train_y):,} training images (a local copy in the image-folder "
                         f"layout){note}", tuple(classes), train_x, train_y, test_x, test_y,
                         f"the CIFAR-10 test set ({len(test_y):,} images)")
    return ImageData(f"folder:{path.name}", f"image folder '{path.name}' ({len(classes)} classes, {width}x{height}, "
                     f"{len(train_y):,} training images){note}", tuple(classes), train_x, train_y, test_x, test_y,
                     f"the {test.name if test else 'test'} split of '{path.name}' ({len(test_y):,} images)")


def _is_cifar10(classes: Sequence[str], size: tuple[int, int], train: int, test: int) -> bool:
    """CIFAR-10 in the image-folder layout: its ten class names, 32x32, and the official split sizes (or fewer,
    when only part of it was asked for)."""
    from convnets.pictures import CIFAR10_CLASSES

    return tuple(classes) == CIFAR10_CLASSES and size == (32, 32) and train <= 50_000 and test <= 10_000


def class_count(source: str) -> int:
    """How many classes a source has, without decoding images (an archive is extracted once)."""
    if source in ("cifar10", "cifar10-sample") or source.startswith("imagenette"):
        return 10
    path = Path(source)
    if path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES):
        path = _extract_once(path)
    if not path.is_dir():
        raise DataError(f"unknown image source '{source}': use 'cifar10', 'imagenette', or an image folder / .tar.gz path")
    root = _find_root(path)
    return len(_class_names(next(root / s for s in ("train", *TEST_SPLITS) if (root / s).is_dir())))


def _find_root(folder: Path) -> Path:
    """``folder`` itself or its single sub-folder, whichever holds train/ or test/ (val/)."""
    for candidate in (folder, *sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))):
        if any((candidate / s).is_dir() for s in ("train", *TEST_SPLITS)):
            return candidate
    raise DataError(f"{folder} has no train/ or test/ folder; an image folder looks like ROOT/train/<class>/*.jpg "
                    "and ROOT/test/<class>/*.jpg (val/ is accepted for test/)")


def _class_names(split: Path) -> list[str]:
    names = sorted(p.name for p in split.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise DataError(f"{split} has no class folders; put each class's images in {split}/<class name>/")
    return names


def _decode_class(folder: Path, size: int | None, limit: int | None, skipped: list[Path]) -> list[tuple[np.ndarray, Path]]:
    found = []
    for file in sorted(folder.iterdir()):
        if limit is not None and len(found) >= limit:
            break
        if file.name.startswith(".") or not file.is_file():
            continue
        image = decode_image(file, size)
        if image is None:
            skipped.append(file)
        else:
            found.append((image, file))
    return found


def decode_image(path: str | os.PathLike, size: int | None = None) -> np.ndarray | None:
    """One file as an RGB uint8 array (H, W, 3), resized as :func:`load_image_folder` says; None if not an image."""
    try:
        with Image.open(path) as image:
            image.load()
            rgb = image_to_rgb(image)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    if size is not None:
        rgb = fit_size(rgb, size)
    return rgb.mul(255).round_().to(torch.uint8).permute(1, 2, 0).numpy()


def _stack(images: list[np.ndarray]) -> torch.Tensor:
    if not images:
        return torch.zeros(0, 3, 1, 1, dtype=torch.uint8)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def _extract_once(archive: Path) -> Path:
    """Extract ``archive`` into ``<cache>/folders/<name>-<hash>`` unless already there; return that folder."""
    stat = archive.stat()
    key = hashlib.sha1(f"{archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    stem = archive.name
    for suffix in ARCHIVE_SUFFIXES:
        stem = stem.removesuffix(suffix)
    target = cache_dir() / "folders" / f"{stem}-{key}"
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{stem}.", dir=target.parent))
    try:
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, filter="data")
            else:  # Python before 3.10.12 / 3.11.4: refuse members that would land outside the folder
                for member in tar.getmembers():
                    if member.name.startswith("/") or ".." in Path(member.name).parts or member.issym() or member.islnk():
                        raise DataError(f"{archive} has an unsafe member '{member.name}'; extract it yourself")
                tar.extractall(tmp)
        (tmp / ".complete").touch()
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"could not extract {archive} ({exc}); check the file, or extract it and pass the folder") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_topk(model: torch.nn.Module, data: ImageData | tuple[torch.Tensor, torch.Tensor], k: Sequence[int] = (1, 5),
                  ten_patch: bool = False, pad: int | None = None, batch_size: int = 200,
                  classes: Sequence[str] | None = None) -> dict:
    """Top-k error (percent) of ``model`` on the test split of ``data`` (or on ``(images, labels)``).

    Images larger than the model's input are centre-cropped, or with ``ten_patch=True`` judged by
    the average softmax of the paper's ten patches; for images already the model's size the patches
    are taken from the image zero-padded by ``pad`` pixels (default 4). When the data's class names
    differ from ``model.classes`` (e.g. Imagenette under an ImageNet model) labels are mapped by name.
    Returns ``{"top1_error": ..., "top5_error": ..., "images": N, "ten_patch": bool}``.
    """
    if isinstance(data, ImageData):
        images, labels, classes = data.test_x, data.test_y, classes or data.classes
    else:
        images, labels = data
    if len(labels) == 0:
        raise DataError("no test images to evaluate on")
    size = model.input_shape[-1]
    height, width = images.shape[-2:]
    if min(height, width) < size:
        raise DataError(f"images are {width}x{height} but the model takes {size}x{size}; load them with size={size} or larger")
    if pad is None:
        pad = 4 if ten_patch and min(height, width) == size else 0
    labels = _labels_for(model, labels, classes)
    device = next(model.parameters()).device
    ks = sorted(set(k))
    wrong = dict.fromkeys(ks, 0)
    with inference(model):
        for start in range(0, len(labels), batch_size):
            x = as_float(images[start:start + batch_size].to(device))
            y = labels[start:start + batch_size].to(device)
            scores = ten_patch_probs(model, x, size, pad) if ten_patch else model(centre_crop(x, size).contiguous())
            if int(labels.max()) >= scores.shape[1]:
                raise DataError(f"the model has {scores.shape[1]} outputs but the data has labels up to {int(labels.max())}; "
                                "evaluate a model trained on these classes")
            top = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
            for kk in ks:
                wrong[kk] += int((top[:, :kk] != y.unsqueeze(1)).all(dim=1).sum())
    return {**{f"top{kk}_error": 100.0 * wrong[kk] / len(labels) for kk in ks}, "images": len(labels), "ten_patch": ten_patch}


def _labels_for(model: torch.nn.Module, labels: torch.Tensor, classes: Sequence[str] | None) -> torch.Tensor:
    model_classes = getattr(model, "classes", None)
    if not classes or not model_classes or list(classes) == list(model_classes):
        return labels

    def norm(name: str) -> str:
        return name.lower().replace("_", " ").replace("-", " ")

    index = {norm(name): i for i, name in enumerate(model_classes)}
    missing = [c for c in classes if norm(c) not in index]
    if missing:
        raise DataError(f"the model has no class named {', '.join(missing[:5])}; name the class folders after the "
                        "model's classes (model.classes)")
    mapping = torch.tensor([index[norm(c)] for c in classes], dtype=torch.long)
    return mapping.to(labels.device)[labels]
