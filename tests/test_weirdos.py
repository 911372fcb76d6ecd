"""Odd inputs (convnets.weirdos) and the 2-D map of embeddings (convnets.retrieval.pca_2d)."""

import numpy as np
import pytest
import torch

import convnets
from convnets.retrieval import nearest, pca_2d, project
from convnets.weirdos import broken, dilate, side_by_side, thin, weirdos


@pytest.fixture(scope="module")
def patterns(sample_data):
    return weirdos(sample_data.test_x.numpy(), sample_data.test_y.numpy())


def test_patterns_are_named_28x28_images_in_range(patterns):
    assert len(patterns) >= 12
    assert len({p.name for p in patterns}) == len(patterns)
    for p in patterns:
        assert p.image.shape == (28, 28) and p.image.dtype == np.float32, p.name
        assert 0.0 <= p.image.min() and p.image.max() <= 1.0, p.name
        assert p.description and p.reads in (None, *range(10))
    blank = next(p for p in patterns if p.name == "blank")
    assert not blank.image.any()
    assert sum(p.image.any() for p in patterns) == len(patterns) - 1  # every other one has ink


def test_patterns_are_deterministic(sample_data, patterns):
    again = weirdos(sample_data.test_x.numpy(), sample_data.test_y.numpy())
    assert [p.name for p in again] == [p.name for p in patterns]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(again, patterns, strict=True))
    floats = weirdos(sample_data.test_x.numpy().astype(np.float32) / 255.0, sample_data.test_y.numpy())
    assert all(np.allclose(a.image, b.image, atol=1e-6) for a, b in zip(floats, patterns, strict=True))


def test_edits_do_what_they_say():
    digit = np.zeros((28, 28), dtype=np.float32)
    digit[4:24, 12:15] = 1.0  # a vertical bar, a "1"
    cut = broken(digit)
    assert not cut[13:16].any() and cut[4:13].sum() + cut[16:].sum() == digit.sum() - 9  # 3 rows through the centre
    assert dilate(digit).sum() > digit.sum() and (dilate(digit) >= digit).all()
    assert 0 < thin(digit).sum() < digit.sum()
    pair = side_by_side(digit, digit)
    assert pair.shape == (28, 28) and pair.max() > 0.5
    columns = np.flatnonzero(pair.max(axis=0) > 0.5)
    assert len(np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1)) == 2  # two separate strokes


def test_weirdos_needs_every_class():
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    with pytest.raises(ValueError, match="no digit of class"):
        weirdos(images, np.array([0, 1, 2]))


def test_shipped_lenet5_reads_the_plain_digit(patterns):
    plain = next(p for p in patterns if p.name.startswith("plain"))
    model, _ = convnets.load_pretrained("lenet5")
    with torch.no_grad():
        assert int(model(torch.from_numpy(plain.image).view(1, 1, 28, 28)).argmax()) == plain.reads


def test_pca_2d_first_axis_has_the_most_variance():
    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([5.0, 2.0, 0.5, 0.1])
    bank = torch.randn(2000, 4, generator=g) * scales @ torch.linalg.qr(torch.randn(4, 4, generator=g))[0] + 3.0
    coords, mean, components = pca_2d(bank)
    assert coords.shape == (2000, 2) and mean.shape == (4,) and components.shape == (2, 4)
    assert torch.allclose(components @ components.T, torch.eye(2), atol=1e-5)  # orthonormal axes
    assert coords.mean(dim=0).abs().max() < 1e-3  # centred
    variances = coords.var(dim=0)
    assert variances[0] > variances[1]
    assert variances[0] == pytest.approx(25.0, rel=0.1) and variances[1] == pytest.approx(4.0, rel=0.1)
    for _ in range(5):  # no other unit direction carries more variance than the first axis
        direction = torch.nn.functional.normalize(torch.randn(4, generator=g), dim=0)
        assert ((bank - mean) @ direction).var() <= variances[0] + 1e-4
    assert torch.allclose(project(bank, mean, components), coords, atol=1e-4)
    assert torch.allclose(project(bank[5], mean, components), coords[5], atol=1e-4)
    again, _, _ = pca_2d(bank.flip(0))
    assert torch.allclose(again.flip(0), coords, atol=1e-4)  # same signs whatever the order: the map does not flip
    with pytest.raises(ValueError, match="needs a bank"):
        pca_2d(torch.zeros(5))


def test_a_bank_image_is_its_own_nearest_neighbour(sample_data):
    model, _ = convnets.load_pretrained("lenet5")
    images = sample_data.train_x[:300].unsqueeze(1).float() / 255
    bank = convnets.embed(model, images)
    distances, indices = nearest(bank[17], bank, k=6)
    assert indices[0] == 17 and distances[0] == pytest.approx(0.0, abs=1e-3)
    assert torch.all(distances[1:] >= distances[:-1])
