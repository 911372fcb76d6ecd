"""convnets.invariance: the transforms do what they say, sweeps are one batch, robustness agrees with plain accuracy."""

import numpy as np
import pytest
import torch

import convnets
from convnets.invariance import ROBUSTNESS_KINDS, TRANSFORMS, robustness, robustness_levels, sweep, transform
from training.data import as_float


def centre_of_mass(image: torch.Tensor) -> tuple[float, float]:
    image = image.double()
    rows, cols = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    total = image.sum()
    return float((image * rows).sum() / total), float((image * cols).sum() / total)


@pytest.fixture(scope="module")
def digits(sample_data) -> torch.Tensor:
    """The first 20 held-out digits as float (20, 28, 28) in [0, 1]."""
    return sample_data.test_x[:20].float() / 255


@pytest.fixture(scope="module")
def lenet5():
    model, _ = convnets.load_pretrained("lenet5")
    return model


@pytest.fixture(scope="module")
def asymmetric() -> torch.Tensor:
    """An L-shaped blob: no rotation or flip of it equals another."""
    x = torch.zeros(1, 28, 28)
    x[0, 5:10, 4:20] = 1.0
    x[0, 10:23, 4:8] = 0.6
    return x


@pytest.mark.parametrize("kind", list(TRANSFORMS))
def test_identity_levels_change_nothing(kind, digits):
    out = transform(digits, kind, TRANSFORMS[kind].identity)
    assert out.shape == digits.shape and out.dtype == torch.float32
    assert torch.allclose(out, digits, atol=1e-5)


@pytest.mark.parametrize("kind", list(TRANSFORMS))
def test_layouts_and_broadcasting(kind, digits):
    levels = TRANSFORMS[kind].levels(5)
    one_to_many = transform(digits[0], kind, levels)
    assert one_to_many.shape == (5, 28, 28)
    pairwise = transform(digits[:5].unsqueeze(1), kind, levels)
    assert pairwise.shape == (5, 1, 28, 28)
    assert float(pairwise.min()) >= 0 and float(pairwise.max()) <= 1
    if kind not in ("salt_pepper", "gaussian"):  # noise fields depend on the image's place in the batch
        assert torch.allclose(pairwise[2, 0], transform(digits[2:3], kind, levels[2])[0], atol=1e-6)
    with pytest.raises(ValueError, match="levels"):
        transform(digits[:3], kind, levels[:2])


def test_unknown_transform_names_the_choices(digits):
    with pytest.raises(ValueError, match="shift_x"):
        transform(digits, "blur", 1.0)


@pytest.mark.parametrize(("kind", "axis", "sign"), [("shift_x", 1, 1), ("shift_y", 0, 1)])
def test_shift_moves_the_centre_of_mass(kind, axis, sign, digits):
    for image in digits[:5]:
        before = centre_of_mass(image)
        for dx in (3.0, -3.0):
            after = centre_of_mass(transform(image, kind, dx)[0])
            assert after[axis] - before[axis] == pytest.approx(sign * dx, abs=0.05)
            assert after[1 - axis] == pytest.approx(before[1 - axis], abs=0.05)


def test_rotation_by_90_matches_rot90(asymmetric):
    out = transform(asymmetric, "rotate", [90.0, -90.0, 180.0])
    assert torch.allclose(out[0], torch.rot90(asymmetric[0], 1, dims=(0, 1)), atol=1e-4)  # counter-clockwise
    assert torch.allclose(out[1], torch.rot90(asymmetric[0], -1, dims=(0, 1)), atol=1e-4)
    assert torch.allclose(out[2], torch.rot90(asymmetric[0], 2, dims=(0, 1)), atol=1e-4)
    assert not torch.allclose(out[0], out[1], atol=0.1)


def test_scale_and_squeeze_change_the_extent(asymmetric):
    def extent(image: torch.Tensor, axis: int) -> int:
        return int((image > 0.3).any(dim=axis).sum())

    small, big = transform(asymmetric, "scale", [0.5, 1.4])
    assert extent(small, 0) < extent(asymmetric[0], 0) < extent(big, 0)
    wide, narrow = transform(asymmetric, "squeeze", [0.4, -0.3])
    assert extent(wide, 0) > extent(asymmetric[0], 0) > extent(narrow, 0)  # columns with ink: width
    assert extent(wide, 1) < extent(asymmetric[0], 1) < extent(narrow, 1)  # rows with ink: height


def test_stroke_width_adds_and_removes_ink(digits):
    levels = [-2, -1, -0.5, 0, 0.5, 1, 2]
    ink = transform(digits[0], "stroke", levels).sum(dim=(1, 2))
    assert (ink[1:] > ink[:-1]).all(), ink  # strictly more ink at every step
    assert ink[-1] > 2 * ink[3] and ink[0] < 0.5 * ink[3]
    thick = transform(digits[0], "stroke", 1.0)[0]
    assert torch.equal(thick, torch.nn.functional.max_pool2d(digits[0][None, None], 3, 1, 1)[0, 0])


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5])
def test_salt_and_pepper_fraction_and_seed(fraction):
    grey = torch.full((50, 28, 28), 0.5)
    noisy = transform(grey, "salt_pepper", fraction, seed=3)
    changed = (noisy != 0.5).float()
    assert float(changed.mean()) == pytest.approx(fraction, abs=0.01)
    assert float((noisy == 1).float().mean()) == pytest.approx(fraction / 2, abs=0.01)  # half salt, half pepper
    assert torch.equal(noisy, transform(grey, "salt_pepper", fraction, seed=3))
    assert not torch.equal(noisy, transform(grey, "salt_pepper", fraction, seed=4))


def test_noise_grows_on_the_same_pixels(digits):
    """One random field per image, shared by every level: a sweep adds noise, it does not reshuffle it."""
    low, high = transform(digits[0], "salt_pepper", [0.1, 0.3])
    hit_low, hit_high = low != digits[0], high != digits[0]
    assert (hit_high | ~hit_low).all()
    noisy = transform(digits[0], "gaussian", [0.1, 0.4])
    unclipped = ((noisy > 0) & (noisy < 1)).all(dim=0)
    assert unclipped.sum() > 100
    small, large = noisy - digits[0]
    assert torch.allclose(large[unclipped], 4 * small[unclipped], atol=1e-5)


def test_gaussian_noise_sigma_and_seed():
    grey = torch.full((50, 28, 28), 0.5)
    noisy = transform(grey, "gaussian", 0.1, seed=1)
    assert float((noisy - 0.5).std()) == pytest.approx(0.1, rel=0.05)
    assert torch.equal(noisy, transform(grey, "gaussian", 0.1, seed=1))
    assert float(transform(grey, "gaussian", 1.0).min()) == 0 and float(transform(grey, "gaussian", 1.0).max()) == 1


def test_sweep_is_one_batch_and_right_at_identity(lenet5, sample_data):
    calls = []
    handle = lenet5.register_forward_hook(lambda _m, inputs, _o: calls.append(inputs[0].shape[0]))
    try:
        result = sweep(lenet5, sample_data.test_x[0].float() / 255, "shift_x", np.linspace(-10, 10, 60))
    finally:
        handle.remove()
    assert calls == [60]
    assert result.probabilities.shape == (60, 10) and result.images.shape == (60, 28, 28)
    assert np.allclose(result.probabilities.sum(axis=1), 1, atol=1e-5)
    assert np.array_equal(result.predictions, result.probabilities.argmax(axis=1))
    assert np.allclose(result.confidences, result.probabilities.max(axis=1))


def test_sweep_of_shipped_lenet5_on_held_out_digits(lenet5, sample_data):
    """Right at the identity on held-out digits, much worse when the digit is pushed off-centre by 10 pixels."""
    right_at_identity, right_far = 0, 0
    n = 30
    for i in range(n):
        image, label = sample_data.test_x[i].float() / 255, int(sample_data.test_y[i])
        result = sweep(lenet5, image, "shift_x")  # the slider grid: -10..10 px in steps of 0.5
        middle = result.at(0.0)
        assert result.levels[middle] == 0
        with torch.no_grad():
            direct = torch.softmax(lenet5(image.view(1, 1, 28, 28)), dim=1)[0].numpy()
        assert np.allclose(result.probabilities[middle], direct, atol=1e-5)
        right_at_identity += int(result.predictions[middle] == label)
        right_far += int(result.predictions[0] == label) + int(result.predictions[-1] == label)
    assert right_at_identity >= n - 1
    assert right_far / (2 * n) < 0.5


def test_robustness_at_identity_equals_plain_accuracy(lenet5, sample_data):
    images, labels = sample_data.test_x[:300], sample_data.test_y[:300]
    with torch.no_grad():
        direct = int((lenet5(as_float(images)).argmax(dim=1) == labels).sum()) / len(labels)
    for kind in ROBUSTNESS_KINDS:
        levels = robustness_levels(kind)
        assert len(levels) == 11 and TRANSFORMS[kind].identity in levels
        accuracy = robustness(lenet5, images, labels, kind, levels, batch_size=128)
        assert accuracy.shape == (11,)
        identity = int(np.flatnonzero(levels == TRANSFORMS[kind].identity)[0])
        assert accuracy[identity] == pytest.approx(direct, abs=1e-9)
        assert accuracy.min() < direct - 0.2  # every axis hurts at its extremes
    shifted = robustness(lenet5, images, labels, "shift_x", [-6, -3, 0, 3, 6])
    assert shifted[2] > shifted[1] > shifted[0] and shifted[2] > shifted[3] > shifted[4]


def test_robustness_is_deterministic_for_noise(lenet5, sample_data):
    images, labels = sample_data.test_x[:200], sample_data.test_y[:200]
    first = robustness(lenet5, images, labels, "salt_pepper", [0.2, 0.4], batch_size=64, seed=5)
    assert np.array_equal(first, robustness(lenet5, images, labels, "salt_pepper", [0.2, 0.4], batch_size=64, seed=5))
    one_batch = robustness(lenet5, images, labels, "gaussian", [0.3], batch_size=200, seed=5)
    noisy = transform(images, "gaussian", 0.3, seed=5)  # the noise robustness draws for its first (only) batch
    with torch.no_grad():
        direct = int((lenet5(noisy.unsqueeze(1)).argmax(dim=1) == labels).sum()) / len(labels)
    assert one_batch[0] == pytest.approx(direct, abs=1e-9)
    with pytest.raises(ValueError, match="labels"):
        robustness(lenet5, images, labels[:10], "rotate")
