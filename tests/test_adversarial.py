"""convnets.adversarial: FGSM and PGD on the shipped digit models -- known answers, the smallest ε, accuracy vs ε."""

import numpy as np
import pytest
import torch

import convnets
from convnets import adversarial as A

torch.set_num_threads(1)
MODELS = ("lenet5", "lenet5-modern")


@pytest.fixture(scope="module")
def models():
    return {name: convnets.load_pretrained(name)[0] for name in MODELS}


@pytest.fixture(scope="module")
def digits(sample_data):
    """The first 200 held-out digits of the offline sample, float (N, 28, 28) in [0, 1], and their labels."""
    return sample_data.test_x[:200].float() / 255, sample_data.test_y[:200]


def answers(model, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images.view(-1, 1, 28, 28)).argmax(dim=1)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("target", [None, 3])
def test_fgsm_with_zero_epsilon_returns_the_input(models, digits, name, target):
    image = digits[0][5]
    out = A.fgsm(models[name], image, [0.0, 0.1], target=target)
    assert out.shape == (2, 1, 28, 28)
    assert torch.equal(out[0, 0], image)
    assert (out[1] - image).abs().max() <= 0.1 + 1e-6 and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("name", MODELS)
def test_pgd_with_zero_epsilon_changes_nothing(models, digits, name):
    image = digits[0][5]
    out, changed = A.pgd(models[name], image, [0.0])
    assert torch.equal(out[0, 0], image) and not changed.any()


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("method", A.METHODS)
@pytest.mark.parametrize(("index", "target"), [(1, None), (7, 2)])  # digits (0s) both models get right and both methods
def test_found_epsilon_flips_the_answer_and_a_smaller_one_does_not(models, digits, name, method, index, target):
    """(held-out #1 to any class, #7 to a 2: each found below ε = 0.5 by every model and method when this was written)"""
    model = models[name]
    image, label = digits[0][index], int(digits[1][index])
    targeted = target is not None
    example = A.smallest_perturbation(model, image, method, target=target)
    assert example.original_class == label == int(answers(model, image))
    assert example.found, f"{name} {method}: no ε up to {A.EPS_MAX} found"
    adversarial = torch.from_numpy(example.adversarial)
    assert int(answers(model, adversarial)) == example.new_class != label
    if targeted:
        assert example.new_class == target
    assert (adversarial - image).abs().max() <= example.epsilon + 1e-6
    assert 0 <= adversarial.min() and adversarial.max() <= 1
    assert np.allclose(example.perturbation, example.adversarial - example.original)
    assert 0 < example.resolution <= (0.0005 if method == "fgsm" else 0.001) + 1e-7
    smaller = example.epsilon - example.resolution
    if method == "fgsm":
        below = int(answers(model, A.fgsm(model, image, [smaller], target=target)[0]))
        assert below == label if not targeted else below != target
    else:
        _, changed = A.pgd(model, image, [smaller], target=target)
        assert not changed.any()


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("method", A.METHODS)
def test_accuracy_at_zero_epsilon_is_the_clean_accuracy(models, digits, name, method):
    model = models[name]
    images, labels = digits
    clean = float((answers(model, images) == labels).double().mean())
    accuracy = A.accuracy_vs_epsilon(model, images, labels, (0.0, 0.05, 0.1, 0.3), method=method, batch_size=64)
    assert accuracy.shape == (4,)
    assert accuracy[0] == pytest.approx(clean)
    assert np.all(np.diff(accuracy) <= 0), accuracy
    assert accuracy[-1] < 0.5 * clean  # ε = 0.3 beats both models on most digits


def test_the_curve_counts_digits_one_by_one(models, digits):
    """Batching changes nothing: the curve over 200 digits is the mean of the curves of two halves."""
    model = models["lenet5-modern"]
    images, labels = digits
    whole = A.accuracy_vs_epsilon(model, images, labels, (0.0, 0.05), method="fgsm")
    halves = [A.accuracy_vs_epsilon(model, images[s], labels[s], (0.0, 0.05), method="fgsm") for s in (slice(0, 100),
                                                                                                          slice(100, 200))]
    assert np.allclose(whole, np.mean(halves, axis=0))


@pytest.mark.parametrize("name", MODELS)
def test_every_function_leaves_the_mode_as_found(models, digits, name):
    model = models[name]
    images, labels = digits
    model.train()
    model.classifier.eval()  # a mixed state must come back as it was too
    before = {n: m.training for n, m in model.named_modules()}
    A.fgsm(model, images[0], [0.1])
    A.pgd(model, images[0], [0.05], steps=2)
    A.smallest_perturbation(model, images[0], "pgd", steps=2)
    A.accuracy_vs_epsilon(model, images[:20], labels[:20], (0.0, 0.1), method="pgd", steps=2)
    assert {n: m.training for n, m in model.named_modules()} == before
    assert all(p.grad is None for p in model.parameters())
    model.eval()


def test_bad_input_is_refused_with_a_clear_message(models, digits):
    model = models["lenet5"]
    image, label = digits[0][1], int(digits[1][1])
    with pytest.raises(ValueError, match="blank"):
        A.smallest_perturbation(model, np.zeros((28, 28), dtype=np.float32))
    with pytest.raises(ValueError, match=f"already answers {label}"):
        A.smallest_perturbation(model, image, target=label)
    with pytest.raises(ValueError, match="does not exist"):
        A.smallest_perturbation(model, image, target=10)
    with pytest.raises(ValueError, match="unknown method"):
        A.smallest_perturbation(model, image, method="deepfool")
    with pytest.raises(ValueError, match="ascending"):
        A.accuracy_vs_epsilon(model, digits[0][:4], digits[1][:4], (0.1, 0.0))
    with pytest.raises(ValueError, match="≥ 0"):
        A.fgsm(model, image, [-0.1])


def test_epsilon_at_interpolates_where_accuracy_halves():
    assert A.epsilon_at([0, 0.1, 0.2], [1.0, 0.6, 0.2]) == pytest.approx(0.125)
    assert A.epsilon_at([0, 0.1], [1.0, 0.9]) is None
