"""convnets.attribution: known answers on a linear model, completeness, blank occlusion, Grad-CAM, modes, deletion."""

import numpy as np
import pytest
import torch
from torch import nn

import convnets
from convnets import attribution as A

torch.set_num_threads(1)
DIGITS = ("lenet5", "lenet5-modern")


@pytest.fixture(scope="module")
def shipped() -> dict[str, nn.Module]:
    return {name: convnets.load_pretrained(name)[0] for name in DIGITS}


@pytest.fixture(scope="module")
def digit(sample_data) -> torch.Tensor:
    """Held-out digit #7 (a 0) as a (28, 28) float image in [0, 1]."""
    return sample_data.test_x[7].float() / 255


@pytest.fixture(scope="module")
def linear() -> nn.Module:
    """A linear 'digit model': scores = W x + b, with positive weights (so every ink pixel adds to every score)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    with torch.no_grad():
        model[1].weight.uniform_(0.01, 1.0)
    return model.eval()


class Counting(nn.Module):
    """Wraps a model and counts its forward passes and the largest batch."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.calls, self.batches = model, 0, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.batches.append(len(x))
        return self.model(x)


def score(model: nn.Module, image: torch.Tensor, target: int) -> float:
    """The model's score for class ``target`` of one (H, W) digit or (C, H, W) picture."""
    with torch.no_grad():
        return float(model(image.reshape(1, -1, *image.shape[-2:]))[0, target])


# --------------------------------------------------------------------------- known answers on a linear model


def test_gradient_of_a_linear_model_is_its_weights(linear, digit):
    weights = linear[1].weight.detach()
    for target in (0, 3, 9):
        for attribution in (A.saliency(linear, digit, target), A.smoothgrad(linear, digit, target, samples=8, sigma=0.3)):
            assert attribution.target == target
            np.testing.assert_allclose(attribution.raw, weights[target].view(1, 28, 28).numpy(), rtol=1e-5, atol=1e-6)
        saliency = A.saliency(linear, digit, target)
        np.testing.assert_allclose(saliency.heatmap, weights[target].abs().view(28, 28).numpy(), rtol=1e-5)


def test_integrated_gradients_of_a_linear_model_is_weight_times_input(linear, digit):
    attribution = A.integrated_gradients(linear, digit, target=4, steps=3)
    expected = (linear[1].weight[4].detach().view(28, 28) * digit).numpy()
    np.testing.assert_allclose(attribution.raw[0], expected, rtol=1e-5, atol=1e-6)
    assert abs(attribution.completeness_gap) < 1e-3
    assert attribution.signed and "blank image" in attribution.note


def test_occlusion_of_one_pixel_of_a_linear_model_is_weight_times_input(linear, digit):
    attribution = A.occlusion(linear, digit, target=2, patch=1, stride=1, fill=0.0)
    expected = (linear[1].weight[2].detach().view(28, 28) * digit).numpy()
    np.testing.assert_allclose(attribution.raw, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(attribution.heatmap, expected, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- completeness on the shipped models


@pytest.mark.parametrize("name, steps, tolerance", [("lenet5-modern", 128, 0.01), ("lenet5", 256, 0.01)])
def test_integrated_gradients_completeness(shipped, digit, name, steps, tolerance):
    """The attributions add up to score(x) - score(baseline); the faithful model, whose score climbs ~200 in the first
    5 % of the path from the blank image, needs more steps for the same tolerance."""
    model = shipped[name]
    attribution = A.integrated_gradients(model, digit, steps=steps)
    target = attribution.target
    difference = score(model, digit, target) - score(model, torch.zeros(28, 28), target)
    assert attribution.baseline_score == pytest.approx(score(model, torch.zeros(28, 28), target), abs=1e-3)
    assert float(attribution.raw.sum()) == pytest.approx(difference, rel=tolerance)
    assert abs(attribution.completeness_gap) <= tolerance * abs(difference)


def test_integrated_gradients_32_steps_on_the_modern_model_within_five_percent(shipped, digit):
    attribution = A.integrated_gradients(shipped["lenet5-modern"], digit, steps=32)
    assert abs(attribution.completeness_gap) < 0.05 * abs(attribution.score - attribution.baseline_score)


# --------------------------------------------------------------------------- occlusion


@pytest.mark.parametrize("name", DIGITS)
def test_occluding_a_blank_region_changes_nothing(shipped, digit, name):
    model = shipped[name]
    blank = A.occlusion(model, torch.zeros(28, 28), patch=4, stride=1)
    assert np.abs(blank.raw).max() < 1e-5 and np.abs(blank.heatmap).max() < 1e-5
    attribution = A.occlusion(model, digit, patch=4, stride=2)
    first = np.arange(0, 28, 2) - 1  # patch rows / columns start here (centred, clipped)
    ink = digit.numpy() > 0
    for i, top in enumerate(first):
        for j, left in enumerate(first):
            if not ink[max(top, 0):top + 4, max(left, 0):left + 4].any():
                assert abs(attribution.raw[i, j]) < 1e-5, (i, j)
    assert attribution.raw.max() > 0.1  # hiding ink does matter somewhere


@pytest.mark.parametrize("patch, stride", [(0, 1), (3, 4), (2, 0)])
def test_occlusion_refuses_bad_patches(shipped, digit, patch, stride):
    with pytest.raises(ValueError, match="stride"):
        A.occlusion(shipped["lenet5"], digit, patch=patch, stride=stride)


def test_occlusion_is_one_batch(shipped, digit):
    counted = Counting(shipped["lenet5-modern"])
    attribution = A.occlusion(counted, digit, patch=4, stride=1)
    assert counted.batches == [28 * 28 + 1] and attribution.raw.shape == (28, 28)


# --------------------------------------------------------------------------- Grad-CAM


@pytest.mark.parametrize("name", DIGITS)
@pytest.mark.parametrize("layer, size", [("C1", 28), ("C3", 10), ("C5", 1)])
def test_grad_cam_shape_and_non_negativity(shipped, digit, name, layer, size):
    attribution = A.grad_cam(shipped[name], digit, layer)
    assert attribution.raw.shape == (size, size) and attribution.heatmap.shape == (28, 28)
    assert (attribution.raw >= 0).all() and (attribution.heatmap >= 0).all()
    assert attribution.score == pytest.approx(score(shipped[name], digit, attribution.target), abs=1e-4)


@pytest.mark.parametrize("name", DIGITS)
def test_grad_cam_is_the_definition_computed_by_hand(shipped, digit, name):
    """Run the named layers one by one, take d score / d C3 by hand: ReLU(sum_k mean(grad_k) * A_k) is the raw map."""
    model = shipped[name]
    h = digit.view(1, 1, 28, 28)
    for layer, module in convnets.named_layers(model):
        h = module(h)
        if layer == "C3":
            maps = h = h.detach().requires_grad_(True)
    scores = -h if name == "lenet5" else h  # the faithful model's scores are the negated RBF distances
    target = int(scores.argmax())
    (grads,) = torch.autograd.grad(scores[0, target], maps)
    expected = torch.relu((grads[0].mean(dim=(1, 2)).view(-1, 1, 1) * maps[0]).sum(dim=0)).detach()
    attribution = A.grad_cam(model, digit, "C3")
    assert attribution.target == target
    np.testing.assert_allclose(attribution.raw, expected.numpy(), rtol=1e-4, atol=1e-6)


def test_grad_cam_layers_and_default(shipped):
    for model in shipped.values():
        assert A.cam_layers(model) == ["C1", "C3", "C5"]
        assert A.default_cam_layer(model) == "C3"


@pytest.mark.parametrize("layer, message", [("conv5", "has no layer 'conv5'"), ("F6", "no convolutional maps"),
                                            ("S2", "no convolutional maps"), ("", "has no layer")])
def test_grad_cam_unknown_layer_is_a_clear_value_error(shipped, digit, layer, message):
    with pytest.raises(ValueError, match=message) as info:
        A.grad_cam(shipped["lenet5"], digit, layer)
    assert "C1, C3, C5" in str(info.value)


def test_grad_cam_is_placed_by_receptive_field_centres(shipped):
    """C3's unit i sees input pixels 2i .. 2i + 9 of the 28x28 image (after the 2-pixel padding): centre 2i + 4.5.
    One unit lit, (3, 5), lands between pixels 10-11 and 14-15, bilinear: 0.75 x 0.75 on each of the four."""
    geometry = A._centres(shipped["lenet5"], "C3", (28, 28))
    assert geometry == [(4.5, 2.0, 10), (4.5, 2.0, 10)]
    assert A._centres(shipped["lenet5-modern"], "C1", (28, 28)) == [(0.0, 1.0, 28), (0.0, 1.0, 28)]
    cam = torch.zeros(10, 10)
    cam[3, 5] = 1.0
    placed = A._place(cam, geometry, (28, 28)).numpy()
    np.testing.assert_allclose(placed[10:12, 14:16], 0.5625, atol=1e-6)
    assert placed.max() == pytest.approx(0.5625, abs=1e-6) and placed[:8].max() == 0 and placed[:, :12].max() == 0


# --------------------------------------------------------------------------- targets, modes, hooks, batches


def test_target_is_the_prediction_unless_given(shipped, digit):
    model = shipped["lenet5"]
    with torch.no_grad():
        predicted = int(model(digit.view(1, 1, 28, 28)).argmax())
    assert A.saliency(model, digit).target == predicted
    assert A.saliency(model, digit, np.int64(3)).target == 3
    for bad in (10, -1, 2.5, "7"):
        with pytest.raises(ValueError, match="class"):
            A.saliency(model, digit, bad)


@pytest.mark.parametrize("training", [True, False])
def test_every_method_restores_the_mode_and_leaves_no_hook_or_grad(digit, training):
    model, _ = convnets.load_pretrained("lenet5-modern")
    model.train(training)
    model.classifier.F6.train(not training)  # a mixed state must come back exactly
    before = [m.training for m in model.modules()]
    stats = model.features.C1[1].running_mean.clone()
    methods = {"saliency": {}, "smoothgrad": {"samples": 3}, "integrated-gradients": {"steps": 4},
               "grad-cam": {"layer": "C3"}, "occlusion": {"patch": 7, "stride": 7}}
    for method, settings in methods.items():
        attribution = A.attribute(model, digit, method, **settings)
        A.deletion_curve(model, digit, attribution, steps=4)
        assert [m.training for m in model.modules()] == before, method
    assert all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(model.features.C1[1].running_mean, stats)  # eval mode: batch norm statistics untouched
    with pytest.raises(ValueError, match="unknown attribution method"):
        A.attribute(model, digit, "lime")


def test_smoothgrad_and_integrated_gradients_are_one_batch_and_seeded(shipped, digit):
    counted = Counting(shipped["lenet5"])
    first = A.smoothgrad(counted, digit, samples=25, sigma=0.15, seed=1)
    A.integrated_gradients(counted, digit, steps=32)
    assert counted.batches == [26, 34]
    again = A.smoothgrad(shipped["lenet5"], digit, samples=25, sigma=0.15, seed=1)
    np.testing.assert_array_equal(first.raw, again.raw)


def test_bad_images_are_refused(shipped):
    with pytest.raises(ValueError, match="one image"):
        A.saliency(shipped["lenet5"], torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match="NaN"):
        A.saliency(shipped["lenet5"], torch.full((28, 28), float("nan")))
    with pytest.raises(ValueError, match="28"):
        A.saliency(shipped["lenet5"], torch.zeros(20, 20))


# --------------------------------------------------------------------------- deletion curves


def test_deletion_curve_ends_and_steps(shipped, digit):
    model = shipped["lenet5"]
    attribution = A.saliency(model, digit)
    counted = Counting(model)
    curve = A.deletion_curve(counted, digit, attribution, steps=10)
    assert counted.batches == [11]
    assert curve.target == attribution.target and curve.method == "saliency"
    assert curve.fractions[0] == 0 and curve.fractions[-1] == 1 and (np.diff(curve.fractions) > 0).all()
    assert curve.scores[0] == pytest.approx(score(model, digit, curve.target), abs=1e-4)
    assert curve.scores[-1] == pytest.approx(score(model, torch.zeros(28, 28), curve.target), abs=1e-4)
    assert 0 <= curve.auc <= 1 and ((0 <= curve.probabilities) & (curve.probabilities <= 1)).all()
    with pytest.raises(ValueError, match="28x28"):
        A.deletion_curve(model, digit, np.zeros((10, 10)))


def test_deletion_curve_on_a_linear_model_is_monotone_and_ranks_orders(linear, digit):
    """Positive weights, non-negative pixels: every removal lowers the score, the exact contributions first lowest."""
    attribution = A.integrated_gradients(linear, digit, target=5, steps=1)
    best = A.deletion_curve(linear, digit, attribution, steps=28)
    assert (np.diff(best.scores) <= 1e-5).all()
    worst = A.deletion_curve(linear, digit, -attribution.heatmap, target=5, steps=28)
    assert (np.diff(worst.scores) <= 1e-5).all()
    assert (best.scores <= worst.scores + 1e-4).all()  # the largest contributions gone first: never above
    score_area = lambda curve: float(((curve.scores[1:] + curve.scores[:-1]) / 2 * np.diff(curve.fractions)).sum())  # noqa: E731
    assert score_area(best) < score_area(worst)


def test_methods_separate_on_the_deletion_number(shipped, digit):
    """Integrated gradients and occlusion find the pixels the answer needs: their curves fall faster than a random
    ranking's for both models."""
    for model in shipped.values():
        random_map = np.random.default_rng(0).random((28, 28))
        chance = A.deletion_curve(model, digit, random_map, steps=14).auc
        for attribution in (A.integrated_gradients(model, digit, steps=64), A.occlusion(model, digit, patch=4, stride=2)):
            assert A.deletion_curve(model, digit, attribution, steps=14).auc < chance


# --------------------------------------------------------------------------- AlexNet on CIFAR-10


def test_alexnet_cifar_every_method_on_a_sample_image():
    from training.images import as_float, cifar_sample

    model, _ = convnets.load_pretrained("alexnet-cifar")
    picture = as_float(cifar_sample().test_x[:1])[0]
    assert A.cam_layers(model) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert A.default_cam_layer(model) == "conv5"
    assert A._centres(model, "conv5", (32, 32)) == [(7.0, 8.0, 3), (7.0, 8.0, 3)]
    settings = {"saliency": {}, "smoothgrad": {"samples": 2}, "integrated-gradients": {"steps": 4},
                "grad-cam": {"layer": "conv5"}, "occlusion": {"patch": 8, "stride": 8}}
    for method, kw in settings.items():
        attribution = A.attribute(model, picture, method, target=3, **kw)
        assert attribution.heatmap.shape == (32, 32) and attribution.target == 3, method
        assert np.isfinite(attribution.heatmap).all()
    assert A.saliency(model, picture).raw.shape == (3, 32, 32)
    curve = A.deletion_curve(model, picture, A.grad_cam(model, picture), steps=4)
    assert len(curve.scores) == 5
    with pytest.raises(ValueError, match="Grad-CAM layers: conv1, conv2, conv3, conv4, conv5"):
        A.grad_cam(model, picture, "C3")
