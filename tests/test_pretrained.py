"""The shipped weights: small, honest cards, and real accuracy on digits they never saw."""

import pytest
import torch

import convnets
from convnets.models import WEIGHTS_DIR
from training.data import as_float
from training.loop import error_rate


@pytest.mark.parametrize("name", ["lenet5", "lenet5-modern"])
def test_shipped_weights_are_small_and_carry_a_card(name):
    assert (WEIGHTS_DIR / f"{name}.pt").stat().st_size < 1_000_000
    model, card = convnets.load_pretrained(name)
    assert not model.training
    assert card["model"] == name
    assert card["recipe"].startswith("convnet-lab train")
    assert "--exclude-sample" in card["recipe"]  # the offline digits stay held out
    assert card["data"]["train_size"] == 55_000
    assert "10000" in card["test_set"].replace(",", "") or card["data"]["test_size"] == 10_000
    assert card["test_error"] == card["epochs"][-1]["test_error"]


@pytest.mark.parametrize("name, max_error", [("lenet5", 2.0), ("lenet5-modern", 1.5)])
def test_shipped_weights_classify_the_held_out_offline_digits(sample_data, name, max_error):
    model, _ = convnets.load_pretrained(name)
    assert error_rate(model, sample_data.test_x, sample_data.test_y) < max_error


def test_shipped_weights_match_the_card_on_the_official_test_set(mnist_npz):
    from training.data import load_digits

    data = load_digits(str(mnist_npz))
    for name in ("lenet5", "lenet5-modern"):
        model, card = convnets.load_pretrained(name)
        assert error_rate(model, data.test_x, data.test_y) == pytest.approx(card["test_error"], abs=0.011)


def test_unknown_shipped_name_lists_what_is_shipped():
    with pytest.raises(ValueError, match="shipped: alexnet-cifar, alexnet-cifar-columns, lenet5, lenet5-modern"):
        convnets.load_pretrained("alexnet")


def test_shipped_lenet5_output_layer_is_rbf_distances(sample_data):
    model, _ = convnets.load_pretrained("lenet5")
    x = as_float(sample_data.test_x[:8])
    distances = convnets.activations(model, x)["output"]
    assert torch.all(distances >= 0)
    assert torch.equal(distances.argmin(1), model(x).argmax(1))


def test_shipped_alexnet_cifar_card_and_weights():
    """The shipped alexnet-cifar: float16 on disk, float32 in memory, a card with its data, recipe and measured error."""
    model, card = convnets.load_pretrained("alexnet-cifar")
    assert next(model.parameters()).dtype == torch.float32 and not model.training
    assert card["weights_dtype"] == "float16" and card["model"] == "alexnet-cifar"
    assert card["data"]["train_size"] == 50_000 and card["data"]["test_size"] == 10_000
    assert card["data"]["description"].startswith("CIFAR-10, 50,000 training images")
    config = card["config"]
    assert config["augment"] is True and config["data"] == "cifar10" and config["precision"] == "bf16"
    assert card["recipe"].startswith("convnet-lab train --model alexnet-cifar") and "--data cifar10 " in card["recipe"]
    assert "/work" not in str(card) and "/tmp" not in str(card)  # no local path of the machine it was trained on
    assert card["test_error"] <= 20.0 and len(card["epochs"]) == config["epochs"]  # the CPU target
    assert abs(card["test_error"] - card["test_error_float32"]) < 0.3  # float16 weights cost next to nothing
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 10)


def test_shipped_two_column_alexnet_cifar():
    """The paper's two columns at CIFAR size: 2 x 48 conv1 kernels, float16, a card without local paths."""
    model, card = convnets.load_pretrained("alexnet-cifar-columns")
    assert model.columns == 2 and model.features.conv1[0].out_channels == 96 and model.conv1_std == 0.01
    assert card["weights_dtype"] == "float16" and card["config"]["data"] == "cifar10" and "/work" not in str(card)
    assert card["test_error"] < 35 and card["data"]["train_size"] == 50_000
    groups = convnets.kernel_colour(model)
    assert [g["kernels"] for g in groups] == [48, 48]
    assert all(g["mean_chroma"] < 0.5 for g in groups)  # learned: random kernels measure about 2/3
