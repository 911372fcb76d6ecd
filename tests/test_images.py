"""Image data (folders, archives, real CIFAR-10 files), the paper's augmentation, and top-k evaluation."""

import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from convnets.pictures import CIFAR10_CLASSES
from training.data import DataError
from training.image_augment import (
    ImageAugment,
    colour_pca,
    pca_colour,
    random_crop,
    random_flip,
    ten_patch_probs,
    ten_patches,
)
from training.images import ImageData, SkippedFilesWarning, evaluate_topk, load_image_folder, load_images

CIFAR_TAR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-jpeg.tar.gz"


def extract_cifar_subset(target: Path, train_per_class: int, test_per_class: int) -> Path:
    """Only the files numbered below the limits, per class and split, of the shared CIFAR-10 archive."""
    if not CIFAR_TAR.is_file():
        pytest.skip(f"CIFAR-10 archive not found at {CIFAR_TAR} (see ../shared/data/README.md)")
    limits = {"train": train_per_class, "test": test_per_class}
    with tarfile.open(CIFAR_TAR) as tar:
        members = [m for m in tar if m.isfile() and len(parts := Path(m.name).parts) == 3 and parts[0] in limits
                   and int(Path(m.name).stem) < limits[parts[0]]]
        tar.extractall(target, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return target


def _write(path: Path, array: np.ndarray, mode: str | None = None, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path, format=fmt)


def make_folder(root: Path, size: int = 8, per_class: int = 3) -> Path:
    """train/{cat,dog}, test/{cat,dog}: RGB PNGs and JPEGs whose first pixel's red value encodes class and index."""
    for split in ("train", "test"):
        for label, name in enumerate(("cat", "dog")):
            for i in range(per_class):
                image = np.full((size, size, 3), 40 * label + i, dtype=np.uint8)
                fmt = "PNG" if i % 2 == 0 else "BMP"  # lossless, so pixel values can be checked exactly
                _write(root / split / name / f"{i}.{fmt.lower()}", image, fmt=fmt)
    return root


def test_image_folder_loads_as_uint8_tensors(tmp_path):
    data = load_image_folder(make_folder(tmp_path))
    assert isinstance(data, ImageData) and data.classes == ("cat", "dog")
    assert data.train_x.shape == (6, 3, 8, 8) and data.train_x.dtype == torch.uint8
    assert data.train_y.tolist() == [0, 0, 0, 1, 1, 1] and data.test_x.shape == (6, 3, 8, 8)
    assert data.train_x[:, 0, 0, 0].tolist() == [0, 1, 2, 40, 41, 42]
    assert data.summary()["image_size"] == [8, 8]


def test_grey_rgba_and_non_image_files(tmp_path):
    root = make_folder(tmp_path)
    _write(root / "train" / "cat" / "grey.png", np.full((8, 8), 200, dtype=np.uint8), "L")
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)  # transparent black: composited onto white
    rgba[0, 0] = (255, 0, 0, 255)  # one opaque red pixel
    _write(root / "train" / "dog" / "rgba.png", rgba, "RGBA")
    _write(root / "train" / "dog" / "photo.jpg", np.full((8, 8, 3), 90, dtype=np.uint8), fmt="JPEG")
    (root / "train" / "dog" / "notes.txt").write_text("not an image")
    (root / "train" / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"\x00\x01")  # hidden: ignored silently
    with pytest.warns(SkippedFilesWarning, match="skipped 2 file") as record:
        data = load_image_folder(root)
    assert "notes.txt" in str(record[0].message) or "broken.png" in str(record[0].message)
    assert "2 unreadable file(s) skipped" in data.description
    names = sorted(p.name for p in (root / "train" / "cat").iterdir() if p.suffix in (".png", ".bmp"))
    grey = data.train_x[names.index("grey.png")]
    assert torch.all(grey == 200)
    dog = sorted(p.name for p in (root / "train" / "dog").iterdir() if p.suffix in (".png", ".bmp", ".jpg")
                 and p.name != "broken.png")
    image = data.train_x[(data.train_y == 1).nonzero().squeeze(1)[dog.index("rgba.png")]]
    assert image[:, 0, 0].tolist() == [255, 0, 0] and torch.all(image[:, 1:, :] == 255)
    assert data.train_x.shape[0] == 3 + 1 + 3 + 2  # cat: 3 + grey; dog: 3 + rgba + jpeg (text and broken PNG skipped)


def test_empty_class_folder_is_an_error(tmp_path):
    root = make_folder(tmp_path)
    (root / "train" / "bird").mkdir()
    with pytest.raises(DataError, match="bird holds no readable image"):
        load_image_folder(root)
    (root / "train" / "bird" / "readme.txt").write_text("only text")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="bird holds no readable image"):
            load_image_folder(root)


def test_mixed_sizes_need_a_size_and_are_resized_with_it(tmp_path):
    root = make_folder(tmp_path)
    _write(root / "train" / "cat" / "big.png", np.full((20, 30, 3), 7, dtype=np.uint8))
    with pytest.raises(DataError, match="different sizes.*size=S"):
        load_image_folder(root)
    data = load_image_folder(root, size=8)
    assert data.train_x.shape == (7, 3, 8, 8)
    assert torch.all(data.train_x[3] == 7)  # 30x20 -> shorter side 8, centre crop 8x8


def test_limits_test_only_folders_and_class_checks(tmp_path):
    root = make_folder(tmp_path)
    data = load_image_folder(root, train_per_class=1, test_per_class=2)
    assert data.train_y.tolist() == [0, 1] and data.test_y.tolist() == [0, 0, 1, 1]
    assert len(load_image_folder(root, train_per_class=0).train_y) == 0
    _write(root / "test" / "bird" / "0.png", np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(DataError, match="classes that .* lacks: bird"):
        load_image_folder(root)
    with pytest.raises(DataError, match="no train/ or test/"):
        load_image_folder(root / "train")
    with pytest.raises(DataError, match="unknown image source"):
        load_images("no-such-source")


def test_archive_is_extracted_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVNET_LAB_DATA", str(tmp_path / "cache"))
    root = make_folder(tmp_path / "src" / "pets")
    archive = tmp_path / "pets.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="pets")
    first = load_images(str(archive))
    assert first.classes == ("cat", "dog") and first.train_x.shape == (6, 3, 8, 8)
    extracted = list((tmp_path / "cache" / "folders").iterdir())
    assert len(extracted) == 1 and (extracted[0] / ".complete").exists()

    def no_second_extraction(*_a, **_k):
        raise AssertionError("extracted twice")

    monkeypatch.setattr(tarfile, "open", no_second_extraction)
    assert torch.equal(load_images(str(archive)).train_x, first.train_x)


@pytest.fixture(scope="module")
def cifar_folder(tmp_path_factory):
    return extract_cifar_subset(tmp_path_factory.mktemp("cifar"), train_per_class=20, test_per_class=10)


def test_real_cifar_files_load(cifar_folder):
    data = load_images(str(cifar_folder))
    assert data.classes == CIFAR10_CLASSES
    assert data.train_x.shape == (200, 3, 32, 32) and data.test_x.shape == (100, 3, 32, 32)
    assert torch.bincount(data.train_y).tolist() == [20] * 10
    mean = data.train_x.float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(mean, torch.tensor([0.49, 0.48, 0.45]), atol=0.06)  # CIFAR-10's channel means, roughly
    subset = data.subset(train=30, test=10)
    assert torch.bincount(subset.train_y).tolist() == [3] * 10 and len(subset.test_y) == 10
    pca = colour_pca(data.train_x)
    assert pca.eigenvalues[0] > 5 * pca.eigenvalues[1] > 0  # brightness dominates natural images' colour
    assert all(v > 0.5 for v in pca.eigenvectors[0]) or all(v < -0.5 for v in pca.eigenvectors[0])


# --------------------------------------------------------------------------- augmentation


def _coloured_along(direction: torch.Tensor, n: int = 64, seed: int = 0) -> torch.Tensor:
    """Float images whose pixel colours vary mostly along ``direction`` (plus a little isotropic noise)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(n, 1, 8, 8, generator=g) * 0.2
    noise = torch.randn(n, 3, 8, 8, generator=g) * 0.01
    return 0.5 + t * direction.view(1, 3, 1, 1) + noise


def test_pca_colour_uses_the_datas_eigenvectors_and_keeps_each_images_structure():
    direction = torch.tensor([1.0, 1.0, 0.0]) / 2**0.5
    images = _coloured_along(direction)
    pca = colour_pca(images)
    values, vectors = pca.basis()
    assert abs(float(vectors[:, 0] @ direction)) > 0.999
    assert values[0] > 100 * values[1] and values[1] >= values[2] >= 0
    pixels = images.permute(1, 0, 2, 3).reshape(3, -1).double().numpy()
    numpy_values = np.linalg.eigvalsh(np.cov(pixels))[::-1]
    assert np.allclose(values.numpy(), numpy_values, rtol=1e-4, atol=1e-9)

    g = torch.Generator().manual_seed(1)
    out = pca_colour(images, pca, std=0.1, generator=g)
    shift = out - images
    assert torch.allclose(shift, shift[:, :, :1, :1].expand_as(shift), atol=1e-6)  # one colour shift per image

    def centred(x):
        return x - x.mean(dim=(2, 3), keepdim=True)

    assert torch.allclose(centred(out), centred(images), atol=1e-6)  # the image's own structure is untouched
    per_image = shift[:, :, 0, 0]
    along = (per_image @ direction).pow(2).sum() / per_image.pow(2).sum()
    assert along > 0.999  # the shifts' energy lies along the data's principal axis
    # sum_i alpha_i lambda_i p_i with alpha ~ N(0, 0.1): the projection on p_1 has std 0.1 * lambda_1
    many = pca_colour(torch.zeros(20_000, 3, 1, 1), pca, std=0.1, generator=g).view(-1, 3) @ vectors[:, 0]
    assert many.std().item() == pytest.approx(0.1 * values[0].item(), rel=0.05)


def test_random_crops_are_windows_of_the_padded_image_and_flips_are_reflections():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 8, 8, generator=g)
    crops = random_crop(x, 8, pad=2, generator=g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = set()
    for i in range(16):
        match = [(t, s) for t in range(5) for s in range(5) if torch.equal(padded[i, :, t:t + 8, s:s + 8], crops[i])]
        assert match, i
        offsets.add(match[0])
    assert len(offsets) > 4  # translations differ from image to image
    flipped = random_flip(x, g)
    same = [torch.equal(flipped[i], x[i]) for i in range(16)]
    assert all(same[i] or torch.equal(flipped[i], x[i].flip(-1)) for i in range(16)) and 0 < sum(same) < 16
    aug = ImageAugment.cifar()
    x32 = torch.rand(4, 3, 32, 32, generator=g)
    out = aug.train_batch(x32, pca=colour_pca(x32), generator=g)
    assert out.shape == x32.shape and not torch.equal(out, x32)
    with pytest.raises(ValueError, match="needs the training set's ColourPCA"):
        aug.train_batch(x32)
    assert ImageAugment.imagenet().as_dict() == {"crop": 224, "pad": 0, "flip": True, "pca_std": 0.1, "ten_patch": True}


def test_ten_patches_are_corners_centre_and_their_reflections():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    patches = ten_patches(x, 4)
    assert len(patches) == 10 and all(p.shape == (2, 3, 4, 4) for p in patches)
    assert torch.equal(patches[0], x[..., :4, :4]) and torch.equal(patches[3], x[..., 2:, 2:])
    assert torch.equal(patches[4], x[..., 1:5, 1:5])
    assert all(torch.equal(patches[i + 5], patches[i].flip(-1)) for i in range(5))
    model = _Mean()
    probs = ten_patch_probs(model, x, 4)
    assert torch.allclose(probs.sum(1), torch.ones(2))


class _Mean(nn.Module):
    """Scores (mean, -mean) of the image: a toy two-class model for any input size."""

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([m, -m], dim=1)


# --------------------------------------------------------------------------- top-k evaluation


class _Lookup(nn.Module):
    """Scores read from a table, row chosen by the image's first red pixel (0-255)."""

    input_shape = (3, 4, 4)

    def __init__(self, table: torch.Tensor, classes=None):
        super().__init__()
        self.table = nn.Parameter(table, requires_grad=False)
        self.classes = classes

    def forward(self, x):
        return self.table[(x[:, 0, 0, 0] * 255).round().long()]


def test_topk_errors_are_counted_exactly():
    # 6 images, 7 classes; the true class ranks 1st, 1st, 2nd, 5th, 6th, 7th
    ranks = [1, 1, 2, 5, 6, 7]
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    table = torch.zeros(6, 7)
    for i, (label, rank) in enumerate(zip(labels.tolist(), ranks, strict=True)):
        others = [c for c in range(7) if c != label]
        order = others[:rank - 1] + [label] + others[rank - 1:]
        table[i, order] = torch.arange(7, 0, -1, dtype=torch.float32)
    images = torch.zeros(6, 3, 6, 6, dtype=torch.uint8)
    images[:, 0, 1, 1] = torch.arange(6, dtype=torch.uint8)  # read at (0, 0) of the 4x4 centre crop of 6x6 images
    result = evaluate_topk(_Lookup(table), (images, labels), k=(1, 5))
    assert result == {"top1_error": pytest.approx(100 * 4 / 6), "top5_error": pytest.approx(100 * 2 / 6),
                      "images": 6, "ten_patch": False}
    with pytest.raises(DataError, match="load them with size=4"):
        evaluate_topk(_Lookup(table), (images[..., :3, :3], labels))


def test_topk_maps_class_names_to_the_models_classes():
    table = torch.eye(3)  # image i -> class i of the model
    model = _Lookup(table, classes=["tench", "English springer", "cassette player"])
    images = torch.zeros(3, 3, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.tensor([2, 0, 1], dtype=torch.uint8)  # model predicts 2, 0, 1
    data = ImageData("t", "t", ("cassette_player", "tench", "English springer"), images[:0], torch.zeros(0, dtype=torch.long),
                     images, torch.tensor([0, 1, 2]))
    assert evaluate_topk(model, data, k=(1,))["top1_error"] == 0.0
    bad = ImageData("t", "t", ("zebra", "tench", "English springer"), images[:0], torch.zeros(0, dtype=torch.long),
                    images, torch.tensor([0, 1, 2]))
    with pytest.raises(DataError, match="no class named zebra"):
        evaluate_topk(model, bad)


def test_ten_patch_evaluation_runs_on_model_sized_images(cifar_folder):
    import convnets

    data = load_images(str(cifar_folder), test_per_class=2, train_per_class=0)
    torch.manual_seed(0)
    model = convnets.get_model("cnn4-cifar", width=4)
    centre = evaluate_topk(model, data)
    ten = evaluate_topk(model, data, ten_patch=True)
    assert ten["ten_patch"] and ten["images"] == centre["images"] == 20
    assert 0 <= ten["top1_error"] <= 100 and ten["top5_error"] <= ten["top1_error"]


# --------------------------------------------------------------------------- torchvision sources, without the network


def test_cifar10_through_torchvision_is_limited_per_class_and_resized(monkeypatch, tmp_path):
    import torchvision.datasets

    monkeypatch.setenv("CONVNET_LAB_DATA", str(tmp_path))
    calls = []

    class FakeCIFAR10:
        classes = list(CIFAR10_CLASSES)

        def __init__(self, root, train, download):
            calls.append((root, train, download))
            n = 50 if train else 20
            self.targets = [i % 10 for i in range(n)]
            self.data = np.stack([np.full((32, 32, 3), i, dtype=np.uint8) for i in range(n)])

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    data = load_images("cifar10", train_per_class=2, size=40)
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]  # downloads into the shared cache
    assert data.train_x.shape == (20, 3, 40, 40) and data.train_y.tolist() == list(range(10)) * 2
    assert data.test_x.shape == (20, 3, 40, 40) and data.classes == CIFAR10_CLASSES
    assert data.train_x[11].unique().tolist() == [11]

    class Offline:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with pytest.raises(DataError, match="could not download CIFAR-10.*image-folder layout"):
        load_images("cifar10")


def test_imagenette_through_torchvision_gets_class_names(monkeypatch, tmp_path):
    import torchvision.datasets

    monkeypatch.setenv("CONVNET_LAB_DATA", str(tmp_path))
    wnids = ["n01440764", "n02102040"]

    class FakeImagenette:
        def __init__(self, root, split, size, download):
            assert (split, size, download) == ("val", "160px", True)
            base = Path(root) / "imagenette2-160"
            for s in ("train", "val"):
                for i, wnid in enumerate(wnids):
                    _write(base / s / wnid / f"{i}.JPEG", np.full((20, 30, 3), 50 * i, dtype=np.uint8), fmt="JPEG")
            self._image_root = str(base / split)
            self.wnids = wnids
            self.classes = [("tench", "Tinca tinca"), ("English springer", "English springer spaniel")]

    monkeypatch.setattr(torchvision.datasets, "Imagenette", FakeImagenette)
    data = load_images("imagenette")
    assert data.classes == ("tench", "English springer") and data.name == "imagenette-160px"
    assert data.train_x.shape == (2, 3, 160, 160) and data.test_y.tolist() == [0, 1]
    with pytest.raises(DataError, match="unknown Imagenette size"):
        load_images("imagenette-80px")
