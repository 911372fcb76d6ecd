"""convnets.units: receptive fields by arithmetic and by gradient, top patches against brute force, the weighted sum
of a unit against the model's own output, activation maximisation, and the checks of a unit asked for by URL."""

import copy

import numpy as np
import pytest
import torch

import convnets
from convnets import units as U
from convnets.lenet import C3_TABLE, Squash

torch.set_num_threads(1)
MODELS = ("lenet5", "lenet5-modern")


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    return convnets.load_pretrained(request.param)[0]


@pytest.fixture(scope="module")
def faithful():
    return convnets.load_pretrained("lenet5")[0]


@pytest.fixture(scope="module")
def digits(sample_data) -> torch.Tensor:
    return sample_data.test_x[:300]  # uint8 (300, 28, 28)


def test_unit_layers_of_the_digit_models(model):
    assert U.unit_layers(model) == {"C1": 6, "C3": 16, "C5": 120, "F6": 84}


@pytest.mark.parametrize(("layer", "size", "jump", "visible"), [
    ("C1", 5, 1, 5), ("S2", 6, 2, 6), ("C3", 14, 2, 14), ("S4", 16, 4, 16), ("C5", 32, 4, 28), ("F6", 32, 4, 28)])
def test_receptive_field_sizes_follow_the_arithmetic(model, layer, size, jump, visible):
    field = U.receptive_field(model, layer)
    assert (field.size, field.jump) == (size, jump)
    shape = convnets.activations(model, torch.zeros(1, 1, 28, 28))[layer].shape
    assert field.positions == (tuple(shape[2:]) if len(shape) == 4 else (1, 1))
    rows, cols = field.positions
    top, left, bottom, right = field.visible(rows // 2, cols // 2)  # a central unit: as much of it on the image as can be
    assert bottom - top == right - left == visible
    assert field.box(0, 0) == (-2, -2)  # every layer's first unit starts in LeNet-5's 2-pixel padding


@pytest.mark.parametrize("layer", ["C1", "S2", "C3", "S4", "C5"])
def test_receptive_field_is_where_the_gradient_is(faithful, layer):
    """The pixels a unit depends on (non-zero gradient of its pre-activation, float64) fill exactly its visible box."""
    model = copy.deepcopy(faithful).double()
    x = (torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.3)
    field = U.receptive_field(model, layer)
    rows, cols = field.positions
    for row, col in {(0, 0), (rows - 1, cols - 1), (rows // 2, cols // 3)}:
        x.requires_grad_(True)
        pre, _ = U.run_layers(model, x, [layer])[layer]  # C5 saturates the squashing function: its gradient is 0
        (grad,) = torch.autograd.grad(pre[0, 1, row, col], x)
        support = np.argwhere(grad[0, 0].numpy() != 0)
        top, left = support.min(axis=0)
        bottom, right = support.max(axis=0) + 1
        assert (top, left, bottom, right) == field.visible(row, col), (layer, row, col)


def test_run_layers_gives_the_models_own_layer_outputs(model, digits):
    x = digits[:50].unsqueeze(1).float() / 255
    expected = convnets.activations(model, x)
    layers = list(U.unit_layers(model))
    with torch.no_grad():
        outputs = U.run_layers(model.eval(), x, layers)
    for layer in layers:
        torch.testing.assert_close(outputs[layer][1], expected[layer], rtol=0, atol=1e-6)


def brute_force(model, digits) -> dict[str, np.ndarray]:
    """Every image's largest activation per unit, (N, units), from convnets.activations over the whole set."""
    acts = convnets.activations(model, digits.unsqueeze(1).float() / 255)
    return {layer: acts[layer].reshape(len(digits), acts[layer].shape[1], -1).amax(dim=2).numpy()
            for layer in U.unit_layers(model)}


def test_top_patches_are_the_highest_activations_by_brute_force(model, digits):
    patches = U.top_patches(model, digits, batch_size=64)  # 5 batches: the running top-9 is merged 4 times
    expected = brute_force(model, digits)
    acts = convnets.activations(model, digits.unsqueeze(1).float() / 255)
    for layer, top in patches.items():
        best = expected[layer]
        assert top.values.shape == top.images.shape == (best.shape[1], 9)
        np.testing.assert_allclose(top.values, -np.sort(-best, axis=0)[:9].T, atol=1e-6, err_msg=layer)
        for unit in range(best.shape[1]):
            assert len(set(top.images[unit])) == 9  # one crop per image
            assert top.values[unit, 0] == pytest.approx(best[:, unit].max(), abs=1e-6)
            map_ = acts[layer][top.images[unit], unit].reshape(9, -1)
            at = map_[np.arange(9), top.rows[unit] * (acts[layer].shape[-1] if map_.shape[1] > 1 else 1) + top.cols[unit]]
            np.testing.assert_allclose(at.numpy(), top.values[unit], atol=1e-6)  # the position named holds the value
            assert np.all(np.diff(top.pre_activations[unit]) <= 0)  # best first


@pytest.mark.parametrize("layer", ["C1", "C3"])
def test_a_top_crop_alone_gives_the_unit_its_value(model, digits, layer):
    """Blank everything outside the unit's receptive field: the unit at that position keeps its value."""
    top = U.top_patches(model, digits, [layer])[layer]
    for unit in (0, top.values.shape[0] - 1):
        index, row, col = top.images[unit, 0], top.rows[unit, 0], top.cols[unit, 0]
        image = digits[index].float() / 255
        alone = torch.zeros_like(image)
        top_, left, bottom, right = top.field.visible(row, col)
        alone[top_:bottom, left:right] = image[top_:bottom, left:right]
        value = convnets.activations(model, alone.view(1, 1, 28, 28))[layer][0, unit, row, col]
        assert float(value) == pytest.approx(float(top.values[unit, 0]), abs=1e-5)
        crop = top.crops(digits.numpy(), unit)[0]  # the crop holds those very pixels, where the box puts them
        corner = top.field.box(row, col)
        assert crop.shape == (top.field.size,) * 2
        inside = crop[top_ - corner[0]:bottom - corner[0], left - corner[1]:right - corner[1]]
        assert np.array_equal(inside, digits[index, top_:bottom, left:right].numpy())
        assert crop.sum() == inside.sum()  # and nothing else: the rest is padding


def test_top_patches_round_trip_through_a_file(tmp_path, faithful, digits):
    patches = U.top_patches(faithful, digits[:40], k=3)
    path = tmp_path / "top.npz"
    U.save_top_patches(path, patches)
    again = U.load_top_patches(path, faithful)
    assert list(again) == list(patches) and not list(tmp_path.glob(".*partial"))
    for layer, top in patches.items():
        for part in ("values", "images", "rows", "cols", "pre_activations"):
            assert np.array_equal(getattr(again[layer], part), getattr(top, part))
        assert again[layer].field == top.field


@pytest.mark.parametrize("unit", [0, 5, 11, 15])
def test_c3_weighted_sum_of_the_faithful_model_adds_up(faithful, digits, unit):
    image = digits[7].numpy()
    ws = U.weighted_sum(faithful, image, "C3", unit)
    assert ws.inputs == tuple(sorted(C3_TABLE[unit])) and ws.input_layer == "S2"
    assert ws.windows.shape == ws.kernels.shape == (len(C3_TABLE[unit]), 5, 5)
    assert ws.contributions.sum() + ws.bias == pytest.approx(ws.pre_activation, abs=1e-4)
    acts = convnets.activations(faithful, torch.from_numpy(image).view(1, 1, 28, 28).float() / 255)
    c3 = acts["C3"][0, unit]
    assert ws.value == pytest.approx(float(c3.max()), abs=1e-6)  # the most active position, as on Feature maps
    assert ws.value == pytest.approx(float(c3[ws.row, ws.col]), abs=1e-6)
    assert float(Squash()(torch.tensor(ws.pre_activation))) == pytest.approx(ws.value, abs=1e-5)
    conv = faithful.features.C3[0]  # independently: every S2 map times Table I's full kernel tensor (zeros elsewhere)
    s2 = acts["S2"][0, :, ws.row:ws.row + 5, ws.col:ws.col + 5]
    by_hand = float((conv.full_weight()[unit].detach() * s2).sum() + conv.bias[unit].detach())
    assert ws.pre_activation == pytest.approx(by_hand, abs=1e-4)
    assert ws.after == (("Squash", pytest.approx(ws.value)),)


@pytest.mark.parametrize(("layer", "unit", "inputs"), [("C1", 2, 1), ("C3", 9, 6), ("C5", 7, 16), ("F6", 3, 120)])
def test_weighted_sum_of_every_layer_adds_up(model, digits, layer, unit, inputs):
    image = digits[3].numpy()
    ws = U.weighted_sum(model, image, layer, unit, position=None if layer in ("C5", "F6") else (1, 2))
    assert len(ws.inputs) == (len(C3_TABLE[unit]) if layer == "C3" and model.head == "rbf" else inputs)
    assert ws.contributions.sum() + ws.bias == pytest.approx(ws.pre_activation, abs=1e-4)
    acts = convnets.activations(model, torch.from_numpy(image).view(1, 1, 28, 28).float() / 255)
    expected = acts[layer][0, unit, ws.row, ws.col] if acts[layer].dim() == 4 else acts[layer][0, unit]
    assert ws.after[-1][1] == pytest.approx(ws.value, abs=1e-5) and ws.value == pytest.approx(float(expected), abs=1e-5)
    if layer not in ("C5", "F6"):
        assert (ws.row, ws.col) == (1, 2)
    if model.head != "rbf":
        assert [name for name, _ in ws.after] == ["BatchNorm2d" if layer != "F6" else "BatchNorm1d", "ReLU"]


@pytest.mark.parametrize(("name", "layer", "unit"), [("lenet5", "C1", 0), ("lenet5", "C3", 5), ("lenet5", "F6", 2),
                                                     ("lenet5-modern", "C3", 5), ("lenet5-modern", "F6", 2)])
def test_activation_maximisation_climbs_well_above_noise(name, layer, unit, digits):
    model, _ = convnets.load_pretrained(name)
    best = brute_force(model, digits)[layer][:, unit].max()  # the most any of 300 real digits gives it
    model.train()
    vis = U.visualise(model, layer, unit)
    assert model.training and all(p.grad is None for p in model.parameters())  # mode handed back, no .grad touched
    assert vis.image.shape == (28, 28) and vis.image.min() >= 0 and vis.image.max() <= 1
    assert vis.activation > vis.start_activation + 0.25  # the unit's own output, not only the pre-activation
    assert vis.activation > 0.75 * best  # as much as the best real digits give it, or nearly
    assert vis.pre_activation > vis.start_pre_activation + 0.25
    again = U.visualise(model, layer, unit)
    assert np.array_equal(again.image, vis.image)  # seeded: reproducible
    assert "jitter" in vis.note and "blur" in vis.note and "[0, 1]" in vis.note


def test_a_saturated_unit_still_climbs_in_its_pre_activation(faithful):
    vis = U.visualise(faithful, "C5", 3)  # 1.7159 already on the noise: the squashing function is flat there
    assert vis.start_activation == pytest.approx(1.7159, abs=1e-3)
    assert vis.pre_activation > vis.start_pre_activation + 5


@pytest.mark.parametrize(("layer", "unit", "message"), [
    ("C9", "3", "has no layer 'C9' with units of its own; pick one of C1 (0-5), C3 (0-15), C5 (0-119), F6 (0-83)"),
    ("S2", "0", "has no layer 'S2'"),
    (None, None, "has no layer None"),
    ("C3", "abc", "the unit must be a whole number 0-15 for C3, got 'abc'"),
    ("C3", "2.5", "the unit must be a whole number"),
    ("C3", "99", "unit 99 does not exist: C3 has 16 units (0-15); e.g. ?layer=C3&unit=15"),
    ("C1", "-1", "unit -1 does not exist: C1 has 6 units (0-5)"),
])
def test_a_bad_unit_gets_one_line_naming_what_exists(faithful, layer, unit, message):
    with pytest.raises(ValueError, match=None) as caught:
        U.resolve_unit(U.unit_layers(faithful), layer, unit, "lenet5")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_good_unit_from_a_url(faithful):
    layers = U.unit_layers(faithful)
    assert U.resolve_unit(layers, "C3", " 5 ") == ("C3", 5)
    assert U.resolve_unit(layers, "F6", 83) == ("F6", 83)
    with pytest.raises(ValueError, match="objective"):
        U.visualise(faithful, "C1", 0, objective="sideways")


@pytest.fixture(scope="module")
def alexnet():
    return convnets.load_pretrained("alexnet-cifar-columns")[0]  # two columns: conv2, conv4, conv5 are grouped


def test_the_probes_on_a_colour_model(alexnet):
    """AlexNet (CIFAR size, two columns): top patches against brute force, a grouped unit's weighted sum against the
    convolution's own output, receptive fields through pooling, activation maximisation in colour."""
    from training.images import cifar_sample

    pictures = cifar_sample().test_x[:60]  # uint8 (60, 3, 32, 32)
    patches = U.top_patches(alexnet, pictures, ["conv2", "fc7"], k=5, batch_size=25)
    acts = convnets.activations(alexnet, pictures.float() / 255)
    for layer, top in patches.items():
        best = acts[layer].reshape(60, acts[layer].shape[1], -1).amax(dim=2).numpy()
        np.testing.assert_allclose(top.values, -np.sort(-best, axis=0)[:5].T, atol=1e-5, err_msg=layer)
    assert U.receptive_field(alexnet, "conv1").size == 7  # a 5x5 kernel, then 3/2 max-pooling: 5 + 2
    assert patches["conv2"].crops(pictures.numpy(), 0).shape == (5, 3, 19, 19)
    image = pictures[4].numpy()
    conv = alexnet.features.conv5[0]
    assert conv.groups == 2
    ws = U.weighted_sum(alexnet, image, "conv5", 200)  # the second column: it sees conv4's second half only
    assert ws.inputs == tuple(range(conv.in_channels // 2, conv.in_channels))
    inputs = acts["conv4"][4:5]
    with torch.no_grad():
        by_hand = torch.nn.functional.conv2d(inputs, conv.weight, conv.bias, conv.stride, conv.padding, groups=2)
    assert ws.pre_activation == pytest.approx(float(by_hand[0, 200, ws.row, ws.col]), abs=1e-4)
    assert ws.contributions.sum() + ws.bias == pytest.approx(ws.pre_activation, abs=1e-4)
    assert ws.value == pytest.approx(max(ws.pre_activation, 0.0), abs=1e-5)  # ReLU, before the layer's pooling
    vis = U.visualise(alexnet, "conv5", 3, steps=60)
    assert vis.image.shape == (32, 32, 3) and vis.activation > vis.start_activation + 0.25


@pytest.fixture(scope="module")
def alexnet_one_column():
    return convnets.load_pretrained("alexnet-cifar")[0]


@pytest.fixture(scope="module")
def cifar_pictures() -> torch.Tensor:
    from training.images import cifar_sample

    return cifar_sample().test_x[:40]  # uint8 (40, 3, 32, 32)


@pytest.mark.parametrize("layer", ["conv1", "conv3", "conv5"])
def test_an_alexnet_top_patch_gives_the_units_highest_activation(alexnet_one_column, cifar_pictures, layer):
    """Over a small set, the top image of every unit is the one whose map (after ReLU and pooling, as the AlexNet page
    shows it) peaks highest, at the position found; the pooled pre-activation is what the ReLU turns into the output."""
    model = alexnet_one_column
    top = U.top_patches(model, cifar_pictures, [layer], k=3, batch_size=16)[layer]
    acts = convnets.activations(model, cifar_pictures.float() / 255)[layer].numpy()  # (40, units, h, w)
    peaks = acts.reshape(*acts.shape[:2], -1).max(axis=2)  # (40, units)
    units = np.arange(acts.shape[1])
    np.testing.assert_allclose(top.values[:, 0], peaks.max(axis=0), atol=1e-5)
    np.testing.assert_allclose(peaks[top.images[:, 0], units], peaks.max(axis=0), atol=1e-5)
    np.testing.assert_allclose(acts[top.images[:, 0], units, top.rows[:, 0], top.cols[:, 0]], top.values[:, 0], atol=1e-5)
    with torch.no_grad():
        pre, out = U.run_layers(model, cifar_pictures[:4].float() / 255, [layer])[layer]
    assert pre.shape == out.shape and (pre < 0).any()  # pooled before the ReLU: negative values are still there
    torch.testing.assert_close(torch.relu(pre), out)
    torch.testing.assert_close(out, torch.from_numpy(acts[:4]))


def test_a_unit_off_everywhere_is_worked_out_where_it_is_closest_to_firing(alexnet_one_column, cifar_pictures):
    """The ReLU after AlexNet's convolutions works in place: the pre-activation shown must be the convolution's own
    (negative) output, not the ReLU's 0."""
    model = alexnet_one_column
    image = cifar_pictures[3].numpy()
    acts = convnets.activations(model, torch.from_numpy(image)[None].float() / 255)["conv5"][0]
    unit = int(acts.reshape(len(acts), -1).amax(dim=1).argmin())
    assert float(acts[unit].max()) == 0.0  # some conv5 unit is off on this picture
    ws = U.weighted_sum(model, image, "conv5", unit)
    assert ws.pre_activation < 0 and ws.value == 0.0
    assert ws.contributions.sum() + ws.bias == pytest.approx(ws.pre_activation, abs=1e-4)
    assert ws.pre_activation == pytest.approx(float(ws_map_max(model, image, unit)), abs=1e-4)
    assert U.receptive_field(model, "conv5", pooled=False).positions == ws.output_map.shape
    assert U.receptive_field(model, "conv5").positions == tuple(acts.shape[1:])


def ws_map_max(model, image, unit):
    """conv5's convolution output for ``unit``, its largest value (no ReLU), by hand."""
    with torch.no_grad():
        inputs = convnets.activations(model, torch.from_numpy(image)[None].float() / 255)["conv4"]
        return model.features.conv5[0](inputs)[0, unit].max()


def test_a_pooled_unit_off_on_the_noise_still_climbs(alexnet_one_column):
    vis = U.visualise(alexnet_one_column, "conv1", 0, steps=60)
    assert vis.start_activation == 0.0 and vis.activation > 0.5 and vis.image.shape == (32, 32, 3)
