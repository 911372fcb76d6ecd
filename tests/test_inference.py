"""The one inference helper and the one feature-capture helper: every probe leaves the model as it found it."""

import pytest
import torch
from torch import nn

import convnets
from convnets.inference import capture, inference
from convnets.probes import activations_and_scores, layer_table
from convnets.retrieval import embed


def test_inference_gives_every_module_its_own_mode_back_and_turns_off_autograd():
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5), nn.BatchNorm1d(3))
    model.train()
    model[1].eval()  # a mixed state, as fine-tuning code leaves models
    with inference(model):
        assert not any(m.training for m in model.modules())
        assert not model(torch.ones(2, 3)).requires_grad
    assert [m.training for m in model.modules()] == [True, True, False, True]
    with pytest.raises(RuntimeError), inference(model):
        raise RuntimeError("a failing probe")
    assert [m.training for m in model.modules()] == [True, True, False, True]
    with inference(model, grad=True):
        assert model(torch.ones(2, 3)).requires_grad


def test_capture_returns_the_named_outputs_and_removes_its_hooks_even_on_error():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(5, 3)
    with capture([("hidden", model[1]), ("out", model[2])]) as outputs:
        y = model(x)
    assert torch.equal(outputs["out"], y.detach()) and torch.equal(outputs["hidden"], torch.relu(model[0](x)).detach())
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError), capture([("hidden", model[1])]):
        raise ValueError("boom")
    assert all(not m._forward_hooks for m in model.modules())


def test_probing_a_batch_norm_model_in_train_mode_changes_nothing():
    """activations_and_scores used to run in the caller's mode: probing lenet5-modern in train mode moved its
    batch-norm statistics. Now the probes run in eval mode and hand the mode back."""
    model = convnets.get_model("lenet5-modern").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(8, 1, 28, 28)
    outputs, scores = activations_and_scores(model, x)
    layer_table(model)
    embed(model, x)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks for m in model.modules())
    with inference(model):
        assert torch.allclose(scores, model(x))  # the eval-mode answer
    assert list(outputs) == [name for name, _ in convnets.probes.named_layers(model)]
