"""Re-create the CIFAR-10 sample shipped in ``training/samples/cifar10-sample.npz`` from a CIFAR-10 image folder.

The sample is 200 training images per class (2,000) and 100 test images per class (1,000), drawn
deterministically: within each class folder, files sorted by name, every 25th training file
(``train/<class>/0000.jpg``, ``0025.jpg``, ...) and every 10th test file (``test/<class>/0000.jpg``,
``0010.jpg``, ...); the test images come from CIFAR-10's official test split. The files' JPEG bytes are
stored as they are (no re-encoding), one buffer per split, so the sample decodes to exactly the pixels
of those files. Read it with :func:`training.images.cifar_sample`.

    python bench/make_cifar_sample.py ../shared/data/cifar10-jpeg.tar.gz      # or an extracted folder
    python bench/make_cifar_sample.py DIR --out training/samples/cifar10-sample.npz

Layout of the .npz (``numpy.load(..., allow_pickle=False)``): ``classes`` (10,) str; per split
``train_*`` / ``test_*``: ``jpeg`` uint8 (all files' bytes end to end), ``offsets`` int64 (N + 1,; file i is
``jpeg[offsets[i]:offsets[i + 1]]``), ``labels`` uint8 (N,), ``files`` (N,) str (``train/cat/0025.jpg``);
``source`` (a one-line note of where it came from).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from convnets.pictures import CIFAR10_CLASSES  # noqa: E402
from training.images import CIFAR_SAMPLE_FILE, _extract_once, _find_root  # noqa: E402

EVERY = {"train": 25, "test": 10}  # 5,000 -> 200 and 1,000 -> 100 files per class
PER_CLASS = {"train": 200, "test": 100}


def pick(root: Path, split: str) -> list[tuple[Path, int]]:
    """(file, label) of the sample's files of one split, in class order then file order."""
    chosen = []
    for label, name in enumerate(CIFAR10_CLASSES):
        files = sorted(p for p in (root / split / name).iterdir() if p.is_file() and not p.name.startswith("."))
        picked = files[::EVERY[split]][:PER_CLASS[split]]
        if len(picked) != PER_CLASS[split]:
            raise SystemExit(f"{root / split / name} has {len(files)} files; need at least "
                             f"{EVERY[split] * (PER_CLASS[split] - 1) + 1} (is this CIFAR-10?)")
        chosen += [(file, label) for file in picked]
    return chosen


def pack(root: Path, split: str) -> dict[str, np.ndarray]:
    """One split's JPEG bytes end to end, their offsets, labels and file names; every file checked to be 32x32 RGB."""
    chosen = pick(root, split)
    blobs = [file.read_bytes() for file, _ in chosen]
    for (file, _), blob in zip(chosen, blobs, strict=True):
        with Image.open(io.BytesIO(blob)) as image:
            if image.format != "JPEG" or image.size != (32, 32) or image.mode != "RGB":
                raise SystemExit(f"{file} is not a 32x32 RGB JPEG ({image.format}, {image.size}, {image.mode})")
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    return {f"{split}_jpeg": np.frombuffer(b"".join(blobs), dtype=np.uint8),
            f"{split}_offsets": offsets,
            f"{split}_labels": np.array([label for _, label in chosen], dtype=np.uint8),
            f"{split}_files": np.array([str(file.relative_to(root)) for file, _ in chosen])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cifar", type=Path, help="CIFAR-10 image folder (train/<class>/, test/<class>/) or a .tar.gz of one")
    parser.add_argument("--out", type=Path, default=CIFAR_SAMPLE_FILE, help="where to write the .npz")
    args = parser.parse_args()
    folder = _extract_once(args.cifar) if args.cifar.is_file() else args.cifar
    root = _find_root(folder)
    arrays = {**pack(root, "train"), **pack(root, "test")}
    source = ("CIFAR-10 (Krizhevsky 2009) as JPEG re-encodings of the original 32x32 images; every 25th training file "
              "and every 10th test file of each class, by name")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, classes=np.array(CIFAR10_CLASSES), source=np.array(source), **arrays)
    print(f"{args.out}: {len(arrays['train_labels']):,} training / {len(arrays['test_labels']):,} test images, "
          f"{args.out.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
