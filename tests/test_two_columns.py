"""alexnet-cifar's two-column (two-GPU) layout, and the colour measure of first-layer kernels (the paper's Figure 3)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convnets
from convnets.alexnet import AlexNetCifar, PaperLRN
from convnets.kernels import GREY_CHROMA, first_layer_kernels, kernel_chroma, kernel_colour

CONV_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5")


def _conv(model: nn.Module, name: str) -> nn.Conv2d:
    return getattr(model.features, name)[0]


def _params(channels: tuple[int, ...], groups: tuple[int, ...], hidden: int = 1024) -> int:
    """Weights + biases of alexnet-cifar from its layer sizes: 5x5, 5x5, 3x3, 3x3, 3x3 convs, fc6, fc7, fc8."""
    fan_in = (3, *channels[:-1])
    total = sum(c_out * (c_in // g) * k * k + c_out
                for c_in, c_out, g, k in zip(fan_in, channels, groups, (5, 5, 3, 3, 3), strict=True))
    return total + hidden * (channels[-1] * 9) + hidden + hidden * hidden + hidden + 10 * hidden + 10


# --------------------------------------------------------------------------- wiring


def test_two_columns_at_width_2_have_the_papers_groups_and_sizes():
    model = convnets.get_model("alexnet-cifar", width=2, columns=2)
    assert model.columns == 2 and model.options == {"width": 2, "columns": 2}
    assert [_conv(model, n).groups for n in CONV_NAMES] == [1, 2, 1, 2, 2]
    assert _conv(model, "conv1").in_channels == 3 and _conv(model, "conv1").out_channels == 2 * 48
    # weights: a grouped conv's kernels span one column's maps only; conv3 and fc6 span everything
    assert [tuple(_conv(model, n).weight.shape) for n in CONV_NAMES] == [
        (96, 3, 5, 5), (256, 96 // 2, 5, 5), (384, 256, 3, 3), (384, 384 // 2, 3, 3), (256, 384 // 2, 3, 3)]
    assert model.classifier.fc6[1].in_features == 256 * 3 * 3
    assert [m.groups for m in model.modules() if isinstance(m, PaperLRN)] == [2, 2]  # LRN within a column
    assert sum(p.numel() for p in model.parameters()) == _params((96, 256, 384, 384, 256), (1, 2, 1, 2, 2))
    rows = {r.name: r for r in convnets.layer_table(model)}
    assert rows["conv2"].params == 256 * 48 * 25 + 256 and rows["conv2"].connections == 15 * 15 * 256 * (48 * 25 + 1)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert first_layer_kernels(model)[1] == 2


@pytest.mark.parametrize("name", ["conv2", "conv4", "conv5"])
def test_a_grouped_conv_is_a_full_conv_with_zero_cross_column_weights(name):
    torch.manual_seed(0)
    conv = _conv(AlexNetCifar(width=0.5, columns=2), name)
    half_in, half_out = conv.in_channels // 2, conv.out_channels // 2
    full = torch.zeros(conv.out_channels, conv.in_channels, *conv.kernel_size)
    full[:half_out, :half_in] = conv.weight[:half_out].detach()  # column 0 reads column 0 only
    full[half_out:, half_in:] = conv.weight[half_out:].detach()  # column 1 reads column 1 only
    x = torch.randn(2, conv.in_channels, 7, 7)
    with torch.no_grad():
        assert torch.allclose(conv(x), F.conv2d(x, full, conv.bias, padding=conv.padding), atol=1e-5)


def _outputs_with_conv1_changed(model: nn.Module, x: torch.Tensor, half: int) -> tuple[dict, dict]:
    """Every conv block's output, and again with one half (0 or 1) of conv1's convolution outputs replaced."""
    def run(hook=None) -> dict:
        handle = _conv(model, "conv1").register_forward_hook(hook) if hook else None
        try:
            return {k: v for k, v in convnets.activations(model, x).items() if k in (*CONV_NAMES, "fc6")}
        finally:
            if handle:
                handle.remove()

    def perturb(_module, _inputs, out):
        out = out.clone()
        c = out.shape[1] // 2
        out[:, half * c:(half + 1) * c] = torch.randn_like(out[:, half * c:(half + 1) * c]) * 3
        return out

    torch.manual_seed(5)
    return run(), run(perturb)


@pytest.mark.parametrize("half", [0, 1])
def test_one_columns_maps_never_reach_the_other_column_before_conv3(half):
    """Change one half of conv1's maps: the other column's conv1 (after its LRN) and conv2 maps stay bit-identical,
    while conv3, which sees both columns, changes in both halves -- and so do conv4, conv5 and fc6 after it."""
    torch.manual_seed(0)
    model = AlexNetCifar(width=0.5, hidden=64, columns=2).eval()
    before, after = _outputs_with_conv1_changed(model, torch.rand(4, 3, 32, 32), half)
    other = 1 - half
    for name in ("conv1", "conv2"):
        c = before[name].shape[1] // 2
        kept, changed = slice(other * c, (other + 1) * c), slice(half * c, (half + 1) * c)
        assert torch.equal(before[name][:, kept], after[name][:, kept]), name
        assert not torch.allclose(before[name][:, changed], after[name][:, changed]), name
    for name in ("conv3", "conv4", "conv5"):
        c = before[name].shape[1] // 2
        for column in (0, 1):
            maps = slice(column * c, (column + 1) * c)
            assert not torch.allclose(before[name][:, maps], after[name][:, maps]), (name, column)
    assert not torch.allclose(before["fc6"], after["fc6"])


def test_after_conv3_the_columns_are_separate_again_in_conv4_and_conv5():
    """Change the second half of conv3's maps: column 0 of conv4 and conv5 is untouched, column 1 is not."""
    torch.manual_seed(0)
    model = AlexNetCifar(width=0.5, hidden=64, columns=2).eval()
    x = torch.rand(4, 3, 32, 32)
    before = convnets.activations(model, x)

    def perturb(_module, _inputs, out):
        out = out.clone()
        out[:, out.shape[1] // 2:] += 1.0
        return out

    handle = model.features.conv3.register_forward_hook(perturb)
    try:
        after = convnets.activations(model, x)
    finally:
        handle.remove()
    for name in ("conv4", "conv5"):
        c = before[name].shape[1] // 2
        assert torch.equal(before[name][:, :c], after[name][:, :c]), name
        assert not torch.allclose(before[name][:, c:], after[name][:, c:]), name


def test_one_column_has_no_groups_and_every_map_reaches_every_map():
    torch.manual_seed(0)
    model = AlexNetCifar(width=0.5, hidden=64).eval()
    assert model.columns == 1 and [_conv(model, n).groups for n in CONV_NAMES] == [1] * 5
    before, after = _outputs_with_conv1_changed(model, torch.rand(4, 3, 32, 32), half=1)
    c = before["conv2"].shape[1] // 2
    assert not torch.allclose(before["conv2"][:, :c], after["conv2"][:, :c])


# --------------------------------------------------------------------------- the default is unchanged


def test_one_column_default_is_unchanged_and_the_shipped_weights_still_load():
    default = convnets.get_model("alexnet-cifar")
    assert default.columns == 1
    assert sum(p.numel() for p in default.parameters()) == _params((48, 128, 192, 192, 128), (1,) * 5) == 3_172_554
    shipped, card = convnets.load_pretrained("alexnet-cifar")
    assert shipped.columns == 1 and first_layer_kernels(shipped)[1] == 1
    payload = convnets.read_checkpoint(convnets.models.WEIGHTS_DIR / "alexnet-cifar.pt")
    assert {k: tuple(v.shape) for k, v in payload["state_dict"].items()} == {
        k: tuple(v.shape) for k, v in default.state_dict().items()}
    assert all(m.groups == 1 for m in default.modules() if isinstance(m, (nn.Conv2d, PaperLRN)))
    # a two-column net of the same width has the same layer names and output shapes, and fewer weights
    two = convnets.get_model("alexnet-cifar", columns=2)
    assert list(two.state_dict()) == list(default.state_dict())
    assert [r.output_shape for r in convnets.layer_table(two)] == [r.output_shape for r in convnets.layer_table(default)]
    assert sum(p.numel() for p in two.parameters()) == _params((48, 128, 192, 192, 128), (1, 2, 1, 2, 2))


def test_a_two_column_checkpoint_round_trips(tmp_path):
    model = convnets.get_model("alexnet-cifar", width=0.5, hidden=64, columns=2)
    path = convnets.save_checkpoint(tmp_path / "m.pt", "alexnet-cifar", model.options, model, {"note": "t"})
    loaded, _ = convnets.load_pretrained("alexnet-cifar", weights_path=path)
    x = torch.rand(2, 3, 32, 32)
    assert loaded.columns == 2 and torch.equal(loaded(x), model.eval()(x))


# --------------------------------------------------------------------------- bad options


@pytest.mark.parametrize("columns", [3, 0, True])
def test_columns_other_than_1_or_2_are_refused_with_the_fix(columns):
    with pytest.raises(ValueError, match="pass columns=1 or columns=2"):
        convnets.get_model("alexnet-cifar", columns=columns)


def test_two_columns_need_even_channel_counts():
    with pytest.raises(ValueError, match=r"width=0.1 gives \(5, 13, 19, 19, 13\).*all even"):
        AlexNetCifar(width=0.1, columns=2)
    AlexNetCifar(width=0.1)  # one column takes any width
    AlexNetCifar(width=0.25, columns=2)  # 12, 32, 48, 48, 32


# --------------------------------------------------------------------------- the colour measure


def _kernel(rgb_per_pixel: list[tuple[float, float, float]], side: int = 2) -> torch.Tensor:
    """One kernel (3, side, side) from its pixels' RGB vectors in row order, the rest zero."""
    w = torch.zeros(3, side * side)
    for p, rgb in enumerate(rgb_per_pixel):
        w[:, p] = torch.tensor(rgb)
    return w.view(3, side, side)


def test_chroma_of_hand_made_kernels():
    torch.manual_seed(0)
    pattern = torch.randn(5, 5)
    grey = pattern.expand(3, 5, 5)  # the same values in R, G and B
    red_minus_green = torch.stack([pattern, -pattern, torch.zeros(5, 5)])  # channels sum to 0 at every pixel
    pure_red = torch.stack([pattern, torch.zeros(5, 5), torch.zeros(5, 5)])  # (1, 0, 0): 2/3 of it is off-grey
    # a grey pixel (1, 1, 1) (energy 3, none opponent) beside an opponent pixel (1, -1, 0) (energy 2, all opponent)
    mix = _kernel([(1, 1, 1), (1, -1, 0)])
    chroma = kernel_chroma(torch.stack([grey, red_minus_green, pure_red, torch.zeros(3, 5, 5), 7 * red_minus_green]))
    assert chroma.tolist() == pytest.approx([0, 1, 2 / 3, 0, 1], abs=1e-12)  # an all-zero kernel counts as grey
    assert kernel_chroma(mix[None]).item() == pytest.approx(2 / (3 + 2))
    assert kernel_chroma(-mix[None]).item() == pytest.approx(0.4)  # sign and scale do not matter
    with pytest.raises(ValueError, match=r"\(n, 3, k, k\)"):
        kernel_chroma(torch.zeros(2, 1, 5, 5))


def test_kernel_colour_counts_grey_kernels():
    torch.manual_seed(0)
    grey = torch.randn(4, 1, 3, 3).expand(4, 3, 3, 3)
    slightly_coloured = grey + 0.05 * torch.randn(4, 3, 3, 3)  # well under a fifth of the energy off-grey
    [report] = kernel_colour(torch.cat([grey, slightly_coloured, torch.tensor([[[[1.0]], [[-1.0]], [[0.0]]]]).expand(2, 3, 3, 3)]))
    assert report["group"] == 0 and report["kernels"] == 10 and len(report["chroma"]) == 10
    assert report["chroma"][:4] == pytest.approx([0] * 4, abs=1e-12) and report["chroma"][8:] == pytest.approx([1, 1])
    assert all(0 < c < GREY_CHROMA for c in report["chroma"][4:8])
    assert report["grey_fraction"] == pytest.approx(0.8) and GREY_CHROMA == 0.2
    assert report["mean_chroma"] == pytest.approx(sum(report["chroma"]) / 10)


def test_random_kernels_have_about_two_thirds_chroma():
    """i.i.d. Gaussian kernel (3, 5, 5): chroma = Gamma(25) / (Gamma(25) + Gamma(12.5)) ~ Beta(25, 12.5), mean 2/3 exactly,
    variance (2/9) / (3 * 25 / 2 + 1) = 0.00577 (sd 0.076). The mean of 2,000 kernels has sd 0.076 / sqrt(2000) = 0.0017;
    the tolerance 0.01 is about 6 sd. Hardly any random kernel is nearly grey (chroma < 0.2 is 6 sd below the mean)."""
    torch.manual_seed(0)
    [report] = kernel_colour(torch.randn(2000, 3, 5, 5))
    assert report["mean_chroma"] == pytest.approx(2 / 3, abs=0.01)
    sd = math.sqrt((2 / 9) / (3 * 25 / 2 + 1))
    assert torch.tensor(report["chroma"]).std().item() == pytest.approx(sd, rel=0.1)
    assert report["grey_fraction"] < 0.005


def test_kernel_colour_per_group():
    torch.manual_seed(0)
    grey = torch.randn(6, 1, 5, 5).expand(6, 3, 5, 5)
    coloured = torch.randn(6, 3, 5, 5)
    coloured = coloured - coloured.mean(dim=1, keepdim=True)  # channels sum to zero: chroma 1
    first, second = kernel_colour(torch.cat([grey, coloured]), groups=2)
    assert (first["group"], first["kernels"], second["group"], second["kernels"]) == (0, 6, 1, 6)
    assert (first["mean_chroma"], first["grey_fraction"]) == pytest.approx((0, 1), abs=1e-12)
    assert (second["mean_chroma"], second["grey_fraction"]) == pytest.approx((1, 0), abs=1e-12)
    with pytest.raises(ValueError, match="dividing the 12 kernels"):
        kernel_colour(torch.cat([grey, coloured]), groups=5)


def test_kernel_colour_of_a_model_uses_its_first_conv_and_its_columns():
    torch.manual_seed(0)
    two = AlexNetCifar(width=2, columns=2)
    with torch.no_grad():  # column 0 grey, column 1 colour-opponent: the paper's Figure 3 in the extreme
        w = _conv(two, "conv1").weight
        w[:48] = w[:48].mean(dim=1, keepdim=True)
        w[48:] -= w[48:].mean(dim=1, keepdim=True)
    gpu1, gpu2 = kernel_colour(two)
    assert (gpu1["kernels"], gpu1["grey_fraction"], gpu2["kernels"], gpu2["grey_fraction"]) == (48, 1.0, 48, 0.0)
    assert gpu2["mean_chroma"] == pytest.approx(1.0)
    assert [g["kernels"] for g in kernel_colour(convnets.get_model("alexnet-cifar"))] == [48]
    assert [g["kernels"] for g in kernel_colour(convnets.get_model("alexnet-cifar"), groups=2)] == [24, 24]
    with pytest.raises(ValueError, match="no RGB first conv"):
        kernel_colour(convnets.get_model("lenet5"))


def test_conv1_std_starts_conv1_alone_from_small_weights():
    torch.manual_seed(0)
    small = convnets.get_model("alexnet-cifar", columns=2, width=2, conv1_std=0.01)
    torch.manual_seed(0)
    default = convnets.get_model("alexnet-cifar", columns=2, width=2)
    assert abs(small.features.conv1[0].weight.std().item() - 0.01) < 0.001
    assert default.features.conv1[0].weight.std().item() > 0.1  # He: sqrt(2 / 75) = 0.163
    assert torch.equal(small.features.conv3[0].weight, default.features.conv3[0].weight)  # the rest as before
    with pytest.raises(ValueError, match="conv1_std must be positive"):
        convnets.get_model("alexnet-cifar", conv1_std=0.0)


def test_a_shipped_variant_loads_under_its_own_name(tmp_path):
    """Shipped weights of alexnet-cifar built with other options load by their own name, and only those."""
    from convnets.models import SHIPPED_VARIANTS

    assert SHIPPED_VARIANTS["alexnet-cifar-columns"] == "alexnet-cifar"
    model = convnets.get_model("alexnet-cifar", columns=2, width=0.5, hidden=16)
    path = convnets.save_checkpoint(tmp_path / "w.pt", "alexnet-cifar", {"columns": 2, "width": 0.5, "hidden": 16}, model,
                                    {"test_error": 50.0})
    loaded, _ = convnets.load_pretrained("alexnet-cifar-columns", weights_path=path)
    assert loaded.columns == 2
    lenet = convnets.save_checkpoint(tmp_path / "l.pt", "lenet5", {}, convnets.get_model("lenet5"), {})
    with pytest.raises(convnets.CheckpointError, match="not 'alexnet-cifar'"):
        convnets.load_pretrained("alexnet-cifar-columns", weights_path=lenet)
