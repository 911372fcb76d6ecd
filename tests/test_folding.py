"""convnets.folding: the folded network answers like the model it came from, and leaves it as it was."""

from __future__ import annotations

import pytest
import torch

import convnets
from convnets.folding import _ConvMaxPool, folded
from convnets.invariance import robustness


def _scores(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("name", ["lenet5", "lenet5-modern"])
def test_folded_shipped_model_gives_the_same_scores_and_answers(name, sample_data):
    model, _ = convnets.load_pretrained(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = sample_data.test_x.float().div(255).unsqueeze(1)
    net = folded(model)
    original, fast = _scores(model, x), _scores(net, x)
    assert torch.allclose(fast, original, rtol=1e-4, atol=1e-3)  # float rounding only
    assert torch.equal(fast.argmax(1), original.argmax(1))  # every one of the 1,000 held-out answers
    assert not model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 0  # batch norm is gone


def test_folding_a_model_in_train_mode_uses_its_running_statistics_and_keeps_its_mode():
    torch.manual_seed(0)
    model = convnets.get_model("lenet5-modern", dropout=0.5)
    model(torch.rand(64, 1, 28, 28))  # moves the running statistics away from their start
    model.train()
    x = torch.rand(8, 1, 28, 28)
    net = folded(model)
    assert model.training
    model.eval()
    assert torch.allclose(_scores(net, x), _scores(model, x), rtol=1e-4, atol=1e-4)


def test_faithful_fold_keeps_the_rbf_distances_of_an_untrained_network():
    torch.manual_seed(1)
    model = convnets.get_model("lenet5").eval()  # random weights: every fold is exercised away from trained values
    x = torch.rand(16, 1, 28, 28)
    assert torch.allclose(_scores(folded(model), x), _scores(model, x), rtol=1e-4, atol=1e-3)


def test_robustness_through_the_folded_network_counts_what_the_model_itself_gets_right(sample_data):
    model, _ = convnets.load_pretrained("lenet5")
    images, labels = sample_data.test_x[:200], sample_data.test_y[:200]
    accuracy = robustness(model, images, labels, "rotate", [0.0, 30.0])
    with torch.no_grad():
        plain = (model(images.float().div(255).unsqueeze(1)).argmax(1) == labels).float().mean().item()
    assert accuracy[0] == pytest.approx(plain)


@pytest.mark.parametrize("size", [28, 27])
def test_folded_max_pooling_gives_max_pool2d_values(size):
    torch.manual_seed(2)
    pool = torch.nn.Sequential(torch.nn.MaxPool2d(2))
    x = torch.randn(3, 4, size, size)
    assert torch.equal(folded(pool)(x), torch.nn.functional.max_pool2d(x, 2))


@pytest.mark.parametrize(("size", "padding"), [(28, 2), (28, 0), (27, 1)])
def test_convolution_relu_and_pooling_as_one_stride_2_convolution_give_the_same_maps(size, padding):
    torch.manual_seed(3)
    conv = torch.nn.Conv2d(1, 6, 5, padding=padding)
    x = torch.randn(4, 1, size, size)
    with torch.no_grad():
        expected = torch.nn.functional.max_pool2d(torch.relu(conv(x)), 2)
        assert torch.allclose(_ConvMaxPool(conv)(x), expected, atol=1e-5)


def test_the_modern_twin_folds_c1_and_its_pooling_and_c5_into_a_linear_layer():
    net = folded(convnets.get_model("lenet5-modern").eval())
    assert isinstance(net[0], _ConvMaxPool)
    assert not any(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (5, 5) and m.in_channels == 16 for m in net.modules())


def test_folded_tanh_twin_keeps_its_scores():
    torch.manual_seed(4)
    model = convnets.get_model("lenet5-modern", activation="tanh").eval()  # tanh: no ReLU to fuse into C1's pooling
    x = torch.rand(8, 1, 28, 28)
    assert torch.allclose(_scores(folded(model), x), _scores(model, x), rtol=1e-4, atol=1e-4)
