"""The CIFAR-10 sample shipped inside the package (training/samples/cifar10-sample.npz): real, small, offline."""

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import convnets
from convnets.pictures import CIFAR10_CLASSES
from training.images import CIFAR_SAMPLE_FILE, _cifar_sample_arrays, as_float, cifar_sample

ROOT = Path(__file__).resolve().parents[1]
CIFAR_TAR = ROOT / ".." / "shared" / "data" / "cifar10-jpeg.tar.gz"
MAX_MB = 4.0


@pytest.fixture(scope="module")
def sample():
    return cifar_sample()


def test_the_sample_is_200_training_and_100_test_images_per_class(sample):
    assert sample.name == "cifar10-sample" and sample.classes == CIFAR10_CLASSES
    assert sample.train_x.shape == (2000, 3, 32, 32) and sample.test_x.shape == (1000, 3, 32, 32)
    assert sample.train_x.dtype == sample.test_x.dtype == torch.uint8
    assert sample.train_y.dtype == sample.test_y.dtype == torch.int64
    assert torch.bincount(sample.train_y, minlength=10).tolist() == [200] * 10
    assert torch.bincount(sample.test_y, minlength=10).tolist() == [100] * 10
    assert sample.description == "CIFAR-10 sample shipped with convnet-lab: 2,000 training / 1,000 test images"
    assert "official CIFAR-10 test split" in sample.test_description
    assert sample.summary()["image_size"] == [32, 32]
    # real photographs, not blank or constant images: every image has spread, the set has CIFAR-10's mean colour
    assert (sample.train_x.flatten(1).float().std(dim=1) > 5).all()
    mean = as_float(sample.train_x).mean(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.tensor([0.4914, 0.4822, 0.4465]), atol=0.03)


def test_the_sample_loads_the_same_every_time(sample):
    _cifar_sample_arrays.cache_clear()  # decode the file again
    again = cifar_sample()
    for key in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(sample, key), getattr(again, key))
    again.train_x[0] = 0  # each call hands out its own tensors: the cached pixels stay as they were
    assert torch.equal(cifar_sample().train_x, sample.train_x)


def test_test_images_are_distinct_from_training_images(sample):
    with np.load(CIFAR_SAMPLE_FILE, allow_pickle=False) as npz:
        train_files, test_files = set(npz["train_files"].tolist()), set(npz["test_files"].tolist())
    assert len(train_files) == 2000 and len(test_files) == 1000
    assert all(f.startswith("train/") for f in train_files) and all(f.startswith("test/") for f in test_files)
    train = {bytes(x.numpy().tobytes()) for x in sample.train_x}
    test = {bytes(x.numpy().tobytes()) for x in sample.test_x}
    assert len(train) == 2000 and len(test) == 1000  # no duplicates inside a split
    assert not train & test  # no test image is also a training image


def test_the_file_is_small_and_shipped_as_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    assert CIFAR_SAMPLE_FILE.stat().st_size <= MAX_MB * 1e6
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(CIFAR_SAMPLE_FILE.match(pattern) for pattern in package_data["training"])
    assert package_data["convnets"] == ["weights/*.pt"]  # the existing entry is kept


def test_the_shipped_alexnet_classifies_the_sample_like_cifar10(sample):
    """The sample's test images are real CIFAR-10 in the classes' order: the shipped model (34.99 % test error on the
    official 10,000) lands near that error on them, far from chance (90 %)."""
    torch.set_num_threads(1)
    model, card = convnets.load_pretrained("alexnet-cifar")
    with torch.no_grad():
        predictions = torch.cat([model(as_float(x)).argmax(1) for x in sample.test_x.split(250)])
    error = 100 * (predictions != sample.test_y).float().mean().item()
    assert abs(error - card["test_error"]) < 8, error


def test_the_sample_holds_the_files_of_the_shared_copy_byte_for_byte():
    """Where the shared CIFAR-10 copy is at hand: every stored JPEG is that file's bytes, picked by the documented rule
    (bench/make_cifar_sample.py: every 25th training and every 10th test file of each class, by name)."""
    if not CIFAR_TAR.is_file():
        pytest.skip(f"CIFAR-10 copy not found at {CIFAR_TAR} (see ../shared/data/README.md)")
    with np.load(CIFAR_SAMPLE_FILE, allow_pickle=False) as npz:
        stored = {}
        for split, every in (("train", 25), ("test", 10)):
            blob, offsets = npz[f"{split}_jpeg"].tobytes(), npz[f"{split}_offsets"]
            names, labels = npz[f"{split}_files"].tolist(), npz[f"{split}_labels"]
            for i, name in enumerate(names):
                _, cls, file = name.split("/")
                assert CIFAR10_CLASSES[labels[i]] == cls and int(file.removesuffix(".jpg")) % every == 0
                stored[name] = blob[offsets[i]:offsets[i + 1]]
    found = 0
    with tarfile.open(CIFAR_TAR) as tar:
        for member in tar:
            name = "/".join(Path(member.name).parts[-3:])
            if name in stored:
                assert tar.extractfile(member).read() == stored[name], name
                found += 1
    assert found == len(stored) == 3000
    with Image.open(io.BytesIO(next(iter(stored.values())))) as image:
        assert image.format == "JPEG" and image.size == (32, 32)
