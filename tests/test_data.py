"""Data sources: local copies (.npz, idx), the offline sample, bad paths."""

import gzip
import struct

import numpy as np
import pytest
import torch

from training.data import IDX_FILES, DataError, DigitData, load_digits, load_sample, without_sample


def _arrays(n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }


def _write_idx(path, array, compress=False):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def test_npz_copy_loads_as_uint8_tensors(tmp_path):
    arrays = _arrays()
    np.savez(tmp_path / "digits.npz", **arrays)
    data = load_digits(str(tmp_path / "digits.npz"))
    assert data.train_x.dtype == torch.uint8 and data.train_x.shape == (12, 28, 28)
    assert torch.equal(data.test_x, torch.from_numpy(arrays["x_test"]))
    assert data.train_y.dtype == torch.int64 and data.train_y.tolist() == arrays["y_train"].tolist()


@pytest.mark.parametrize("compress", [False, True])
def test_idx_folder_loads(tmp_path, compress):
    arrays = _arrays()
    for key, name in IDX_FILES.items():
        _write_idx(tmp_path / (name + (".gz" if compress else "")), arrays[key], compress)
    data = load_digits(str(tmp_path))
    assert torch.equal(data.train_x, torch.from_numpy(arrays["x_train"]))
    assert data.test_y.tolist() == arrays["y_test"].tolist()


def test_truncated_idx_file_is_reported(tmp_path):
    arrays = _arrays()
    for key, name in IDX_FILES.items():
        _write_idx(tmp_path / name, arrays[key])
    raw = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw[:-100])
    with pytest.raises(DataError, match="truncated"):
        load_digits(str(tmp_path))


def test_bad_sources_give_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="unknown data source 'mnsit'"):
        load_digits("mnsit")
    with pytest.raises(DataError, match="does not exist"):
        load_digits(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "wrong.npz", **{**_arrays(), "x_train": np.zeros((12, 32, 32), np.uint8)})
    with pytest.raises(DataError, match=r"x_train must be \(N, 28, 28\)"):
        load_digits(str(tmp_path / "wrong.npz"))
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DataError, match="lacks y_train"):
        load_digits(str(tmp_path / "partial.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_digits(str(tmp_path / "junk.npz"))
    with pytest.raises(DataError, match="idx files"):
        load_digits(str(tmp_path))  # a folder without idx files


def test_offline_sample_is_real_balanced_digits(sample_data):
    assert sample_data.train_x.shape == (4000, 28, 28) and sample_data.test_x.shape == (1000, 28, 28)
    assert sample_data.train_y.bincount().tolist() == [400] * 10
    assert sample_data.test_y.bincount().tolist() == [100] * 10
    ink = sample_data.train_x.float().mean() / 255
    assert 0.1 < ink < 0.16  # MNIST's mean ink is 0.13


def test_without_sample_drops_exactly_the_sample_digits():
    sample = load_sample()
    arrays = _arrays(n_train=30)
    x = torch.cat([torch.from_numpy(arrays["x_train"]), sample.test_x[:7]])
    y = torch.cat([torch.from_numpy(arrays["y_train"]).long(), sample.test_y[:7]])
    data = DigitData("t", "test", x, y, x[:2], y[:2])
    kept = without_sample(data)
    assert len(kept.train_y) == 30
    assert torch.equal(kept.train_x, x[:30])
    assert "minus the 7 training digits" in kept.description


def test_full_mnist_without_sample_has_55000_training_digits(mnist_npz):
    data = load_digits(str(mnist_npz), exclude_sample=True)
    assert len(data.train_y) == 55_000 and len(data.test_y) == 10_000


def test_mnist_source_reads_torchvisions_cache_without_downloading(tmp_path, monkeypatch):
    """The real torchvision download path, fed from a cache that already holds the files."""
    arrays = _arrays(n_train=20, n_test=6)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for key, name in IDX_FILES.items():
        _write_idx(raw / name, arrays[key])
    monkeypatch.setenv("CONVNET_LAB_DATA", str(tmp_path))
    data = load_digits("mnist")
    assert data.name == "mnist"
    assert torch.equal(data.train_x, torch.from_numpy(arrays["x_train"]))
    assert data.test_y.tolist() == arrays["y_test"].tolist()


def test_the_official_test_set_is_recognised_by_content(mnist_npz, tmp_path):
    data = load_digits(str(mnist_npz))
    assert data.test_description == "the official MNIST test set (10,000 digits)"
    arrays = _arrays()
    np.savez(tmp_path / "other.npz", **arrays)
    assert load_digits(str(tmp_path / "other.npz")).test_description == "the test split of path:other.npz (5 digits)"


def test_any_prefix_of_the_offline_training_digits_holds_every_class(sample_data):
    assert sample_data.train_y[:100].unique().tolist() == list(range(10))  # so --limit 100 trains on all ten digits


def test_evaluation_digits_default_to_the_offline_held_out_digits(tmp_path, monkeypatch):
    from training.data import evaluation_digits, evaluation_source

    monkeypatch.delenv("CONVNET_LAB_MNIST", raising=False)
    monkeypatch.setenv("CONVNET_LAB_DATA", str(tmp_path))  # an empty cache: no torchvision download there
    assert evaluation_source() == "sample"
    images, labels, description = evaluation_digits()
    assert images.shape == (1000, 28, 28) and images.dtype == torch.uint8 and len(labels) == 1000
    assert "1,000 held-out digits" in description


def test_evaluation_digits_use_the_official_test_set_when_mnist_is_at_hand(mnist_npz, tmp_path, monkeypatch):
    from training.data import evaluation_digits, evaluation_source

    monkeypatch.setenv("CONVNET_LAB_MNIST", str(mnist_npz))
    images, labels, description = evaluation_digits()
    assert images.shape == (10_000, 28, 28)
    assert description == "the official MNIST test set (10,000 digits)"
    # torchvision's cached download is found without a download: a cache folder holding its raw test files
    monkeypatch.delenv("CONVNET_LAB_MNIST")
    monkeypatch.setenv("CONVNET_LAB_DATA", str(tmp_path))
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    assert evaluation_source() == "sample"
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / stem).write_bytes(b"")
    assert evaluation_source() == "mnist"


def test_evaluation_digits_name_a_bad_path(monkeypatch, tmp_path):
    from training.data import evaluation_digits

    monkeypatch.setenv("CONVNET_LAB_MNIST", str(tmp_path / "missing.npz"))
    with pytest.raises(DataError, match="missing.npz"):
        evaluation_digits()
