"""LeNet-5 against the 1998 paper: counts, wiring, bitmaps, shapes, scaling, init, loss; the twin's fast pooling."""

import pytest
import torch

import convnets
from convnets.lenet import LeNet5, MaxPool2x2, Subsampling, c3_connection_mask, digit_prototypes, map_loss
from convnets.paper import PAPER_LENET5_ERRORS, PAPER_LENET5_LAYERS

# Section II-B of the paper: its counts (convnets.paper, checked against the numbers as printed) and output shapes.
PAPER = {
    "C1": (156, 122_304, (6, 28, 28)),
    "S2": (12, 5_880, (6, 14, 14)),
    "C3": (1_516, 151_600, (16, 10, 10)),
    "S4": (32, 2_000, (16, 5, 5)),
    "C5": (48_120, 48_120, (120, 1, 1)),
    "F6": (10_164, 10_164, (84,)),
}


def test_the_papers_numbers_module_holds_the_printed_counts():
    assert PAPER_LENET5_LAYERS == {name: (params, connections) for name, (params, connections, _) in PAPER.items()}
    assert PAPER_LENET5_ERRORS == {"LeNet-5": 0.95, "LeNet-5, trained on distorted digits": 0.8}

# Table I as printed: rows are S2 maps 0-5, columns C3 maps 0-15.
TABLE_I = """
X...XXX..XXXX.XX
XX...XXX..XXXX.X
XXX...XXX..X.XXX
.XXX..XXXX..X.XX
..XXX..XXXX.XX.X
...XXX..XXXX.XXX
"""


def test_params_connections_and_shapes_equal_the_paper():
    rows = {r.name: r for r in convnets.layer_table(convnets.get_model("lenet5"))}
    for name, (params, connections, shape) in PAPER.items():
        assert (rows[name].params, rows[name].connections, rows[name].output_shape) == (params, connections, shape), name
    assert rows["output"].params == 0  # the RBF centres are fixed
    assert sum(r.params for r in rows.values()) == 60_000


def test_c3_wiring_is_table_one():
    expected = torch.tensor([[c == "X" for c in line] for line in TABLE_I.split()])  # (6, 16)
    assert torch.equal(c3_connection_mask().T, expected)


def test_c3_has_no_weights_outside_table_one():
    c3 = LeNet5().features.C3[0]
    full = c3.full_weight()
    assert torch.all(full[~c3_connection_mask()] == 0)
    assert torch.all(full[c3_connection_mask()].abs().sum(dim=(1, 2)) > 0)
    assert c3.weight.numel() + c3.bias.numel() == 1_516


def test_rbf_bitmaps_are_ten_distinct_7x12_codes_of_plus_minus_one():
    codes = digit_prototypes()
    assert codes.shape == (10, 84)
    assert set(codes.unique().tolist()) == {-1.0, 1.0}
    assert len({tuple(c.tolist()) for c in codes}) == 10
    # the bottom rows of '1' hold its foot: a full bar at row 9, empty rows below
    one = codes[1].view(12, 7)
    assert one[9].tolist() == [-1, 1, 1, 1, 1, 1, 1] and torch.all(one[10:] == -1)


def test_input_stage_pads_and_scales_as_the_paper():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 10, 10] = 1.0
    scaled = LeNet5().features.input(x)
    assert scaled.shape == (1, 1, 32, 32)
    assert scaled[0, 0, 12, 12].item() == pytest.approx(1.175)
    assert scaled[0, 0, 0, 0].item() == pytest.approx(-0.1)  # padding is background
    assert scaled.min().item() == pytest.approx(-0.1)


def test_initialisation_is_uniform_within_2_4_over_fan_in():
    torch.manual_seed(0)
    model = LeNet5()
    c1 = model.features.C1[0]
    assert c1.weight.abs().max() <= 2.4 / 25 and c1.weight.abs().max() > 0.8 * 2.4 / 25
    f6 = model.classifier.F6[1]
    assert f6.weight.abs().max() <= 2.4 / 120
    c3 = model.features.C3[0]
    fan_in = c3.fan_in_per_output()[c3.out_index].view(-1, 1, 1)
    assert torch.all(c3.weight.abs() <= 2.4 / fan_in)
    s2 = model.features.S2[0]
    assert isinstance(s2, Subsampling) and torch.all(s2.weight.abs() <= 2.4 / 4)


def test_map_loss_is_the_papers_formula():
    torch.manual_seed(0)
    distances = torch.rand(5, 10) * 20
    target = torch.tensor([0, 3, 9, 1, 1])
    j = 0.1
    expected = torch.stack([
        distances[p, target[p]] + torch.log(torch.exp(torch.tensor(-j)) + torch.exp(-distances[p]).sum())
        for p in range(5)
    ]).mean()
    assert map_loss(-distances, target, j=j).item() == pytest.approx(expected.item(), rel=1e-5)
    closer = distances.clone()
    closer[torch.arange(5), target] *= 0.5
    assert map_loss(-closer, target) < map_loss(-distances, target)


@pytest.mark.parametrize("name", ["lenet5", "lenet5-modern"])
def test_layer_table_and_activations_agree_with_the_model(name):
    torch.manual_seed(0)
    model = convnets.get_model(name).eval()
    x = torch.rand(4, 1, 28, 28)
    acts = convnets.activations(model, x)
    rows = convnets.layer_table(model)
    assert list(acts) == [r.name for r in rows] == ["input", "C1", "S2", "C3", "S4", "C5", "F6", "output"]
    for row in rows:
        assert tuple(acts[row.name].shape) == (4, *row.output_shape)
        assert acts[row.name][0].numel() == row.neurons
    scores = model(x)
    sign = -1 if name == "lenet5" else 1  # lenet5's output layer gives distances; its scores are their negation
    assert torch.allclose(sign * acts["output"], scores)
    assert sum(r.params for r in rows) == sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("shape", [(2, 28, 28), (2, 1, 32, 32), (2, 3, 28, 28)])
def test_wrong_input_shape_names_the_fix(shape):
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        convnets.get_model("lenet5")(torch.rand(*shape))


def test_get_model_rejects_unknown_names_and_options():
    with pytest.raises(ValueError, match="unknown model 'lenet6'.*lenet5"):
        convnets.get_model("lenet6")
    with pytest.raises(ValueError, match="no option width"):
        convnets.get_model("lenet5-modern", width=3)
    model = convnets.get_model("lenet5-modern", dropout=0.5, batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_lenet5_modern_tanh_option_is_recorded_and_reloads(tmp_path):
    """``activation="tanh"`` swaps every ReLU; the checkpoint keeps the option and rebuilds the same model."""
    model = convnets.get_model("lenet5-modern", activation="tanh", dropout=0.5)
    kinds = {type(m) for m in model.modules()}
    assert torch.nn.Tanh in kinds and torch.nn.ReLU not in kinds
    assert torch.nn.ReLU in {type(m) for m in convnets.get_model("lenet5-modern").modules()}  # default unchanged
    with pytest.raises(ValueError, match="unknown activation 'gelu'; choose relu or tanh"):
        convnets.get_model("lenet5-modern", activation="gelu")
    path = convnets.save_checkpoint(tmp_path / "m.pt", "lenet5-modern", model.options, model, {})
    payload = convnets.read_checkpoint(path)
    assert payload["options"] == {"activation": "tanh", "dropout": 0.5}
    again = convnets.model_from_checkpoint(payload).eval()
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(again(x), model.eval()(x))
    assert isinstance(again.features.C1[-1], torch.nn.Tanh)


@pytest.mark.parametrize(("shape", "channels_last"), [((3, 4, 28, 28), False), ((3, 4, 28, 28), True),
                                                      ((2, 3, 9, 7), False)])
def test_fast_max_pooling_gives_max_pool2d_values_and_gradients(shape, channels_last):
    torch.manual_seed(5)
    x = torch.randn(shape, dtype=torch.double)  # distinct values: no ties, where the two may choose differently
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ours, reference = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, expected = MaxPool2x2()(ours), torch.nn.functional.max_pool2d(reference, 2)
    assert torch.equal(out, expected)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    assert torch.equal(ours.grad, reference.grad)
    with torch.no_grad():
        assert torch.equal(MaxPool2x2()(x), expected)
