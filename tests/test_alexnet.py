"""AlexNet against the 2012 paper, torchvision's pretrained AlexNet through the same API, and the CIFAR-sized nets."""

import math
import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import convnets
from convnets.alexnet import AlexNet, PaperLRN
from convnets.paper import PAPER_ALEXNET
from convnets.paper_counts import paper_comparison
from convnets.pictures import prepare_images
from convnets.torchvision_alexnet import TorchvisionAlexNet, WeightsError

# Every layer of the paper's network: output shape (after its pooling), params = weights + biases.
# conv2, conv4 and conv5 see only their own GPU's half of the maps (two_gpu=True).
ALEXNET_LAYERS = {
    "input": ((3, 224, 224), 0),
    "conv1": ((96, 27, 27), 96 * 11 * 11 * 3 + 96),
    "conv2": ((256, 13, 13), 256 * 5 * 5 * 48 + 256),
    "conv3": ((384, 13, 13), 384 * 3 * 3 * 256 + 384),
    "conv4": ((384, 13, 13), 384 * 3 * 3 * 192 + 384),
    "conv5": ((256, 6, 6), 256 * 3 * 3 * 192 + 256),
    "fc6": ((4096,), 4096 * 9216 + 4096),
    "fc7": ((4096,), 4096 * 4096 + 4096),
    "fc8": ((1000,), 1000 * 4096 + 1000),
}
# Connections = multiply-adds + bias terms per image: conv outputs before pooling x (fan-in + 1).
ALEXNET_CONNECTIONS = {
    "conv1": 55 * 55 * 96 * (11 * 11 * 3 + 1),
    "conv2": 27 * 27 * 256 * (5 * 5 * 48 + 1),
    "conv3": 13 * 13 * 384 * (3 * 3 * 256 + 1),
    "conv4": 13 * 13 * 384 * (3 * 3 * 192 + 1),
    "conv5": 13 * 13 * 256 * (3 * 3 * 192 + 1),
    "fc6": 4096 * 9217,
    "fc7": 4096 * 4097,
    "fc8": 1000 * 4097,
}


@pytest.fixture(scope="module")
def alexnet():
    torch.manual_seed(0)
    return convnets.get_model("alexnet").eval()


def test_every_layer_of_alexnet_has_the_papers_shape_params_and_connections(alexnet):
    rows = {r.name: r for r in convnets.layer_table(alexnet)}
    assert list(rows) == list(ALEXNET_LAYERS)
    for name, (shape, params) in ALEXNET_LAYERS.items():
        assert (rows[name].output_shape, rows[name].params) == (shape, params), name
        assert rows[name].connections == ALEXNET_CONNECTIONS.get(name, 0), name
    assert sum(r.params for r in rows.values()) == sum(p.numel() for p in alexnet.parameters()) == 60_965_224


def test_alexnet_counts_beside_the_papers(alexnet):
    c = paper_comparison(alexnet)
    assert (c["params"]["computed"], c["neurons"]["computed"], c["connections"]["computed"]) == (60_965_224, 659_272, 725_066_088)
    assert c["params"]["paper"] == 60_000_000 and c["neurons"]["paper"] == 650_000 and c["connections"]["paper"] == 630_000_000
    assert c["params"]["ratio"] == pytest.approx(1.0161, abs=1e-4)  # within a few percent of the paper
    assert c["neurons"]["ratio"] == pytest.approx(1.0143, abs=1e-4)
    assert c["connections"]["ratio"] == pytest.approx(1.1509, abs=1e-4)  # the paper's rule is unstated: see explanation
    assert c["connections_without_padding"] == 670_939_080
    # the paper's per-layer neurons (before pooling): all equal but conv1, printed as 253,440 for 55*55*96
    for name, (computed, paper) in c["neurons_per_layer"].items():
        assert computed == (290_400 if name == "conv1" else paper), name
    assert "725,066,088" in c["explanation"] and "253,440" in c["explanation"]


def test_one_column_alexnet_has_more_weights_and_connections():
    c = paper_comparison(AlexNet(two_gpu=False))
    assert c["params"]["computed"] == 62_378_344
    assert c["connections"]["computed"] == 1_135_915_368


def test_conv1_sees_an_effective_227_input_and_gives_55x55():
    conv1 = AlexNet().features.conv1[0]
    assert (conv1.kernel_size, conv1.stride, conv1.padding, conv1.out_channels) == ((11, 11), (4, 4), (2, 2), 96)
    assert conv1(torch.zeros(1, 3, 224, 224)).shape[-2:] == (55, 55)
    # the 55 windows start at -2 and end at 4 * 54 - 2 + 10 = 224: two zero columns left, one right -> 227
    assert (224 + 2 * 2 - 11) // 4 + 1 == 55 and 2 + 224 + 1 == 227 and (227 - 11) % 4 == 0


def test_two_gpu_columns_do_not_talk_in_conv2_conv4_conv5(alexnet):
    blocks = alexnet.features
    assert [getattr(blocks, n)[0].groups for n in ("conv1", "conv2", "conv3", "conv4", "conv5")] == [1, 2, 1, 2, 2]
    torch.manual_seed(1)
    x = torch.rand(1, 96, 27, 27)
    y = x.clone()
    y[:, 48:] = torch.rand(1, 48, 27, 27)  # change only the second GPU's conv1 maps
    with torch.no_grad():
        a, b = blocks.conv2(x), blocks.conv2(y)
    assert torch.equal(a[:, :128], b[:, :128])  # the first GPU's conv2 maps (and its LRN) never see them
    assert not torch.allclose(a[:, 128:], b[:, 128:])
    assert all(getattr(blocks, n)[2].groups == 2 for n in ("conv1", "conv2"))  # LRN within a column


def test_alexnet_initialisation_is_the_papers():
    torch.manual_seed(0)
    model = AlexNet()
    layers = dict([*model.features.named_children(), *model.classifier.named_children()])
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        op = next(m for m in layers[name].modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
        assert op.weight.std().item() == pytest.approx(0.01, rel=0.05), name
        expected_bias = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert torch.all(op.bias == expected_bias), name
    dropouts = [m.p for m in model.classifier.modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [0.5, 0.5]  # fc6 and fc7 only


def test_lrn_is_the_papers_formula_on_a_hand_computed_example():
    # one position, seven maps with activities 10, 20, ..., 70; paper: k = 2, n = 5, alpha = 1e-4, beta = 0.75
    a = torch.tensor([10.0, 20, 30, 40, 50, 60, 70]).view(1, 7, 1, 1)
    b = PaperLRN()(a).flatten()
    # map 0 sums maps 0..2: 100 + 400 + 900 = 1400 -> 10 / (2 + 1e-4 * 1400) ** 0.75 = 10 / 2.14 ** 0.75
    assert b[0].item() == pytest.approx(10 / 2.14**0.75, rel=1e-6)
    assert b[0].item() == pytest.approx(5.651837, rel=1e-6)  # 2.14 ** 0.75 = 1.769336
    # map 3 sums maps 1..5: 400 + 900 + 1600 + 2500 + 3600 = 9000 -> 40 / 2.9 ** 0.75
    assert b[3].item() == pytest.approx(40 / 2.9**0.75, rel=1e-6)
    # every map against the formula with the sum clipped at the edges
    values = a.flatten().tolist()
    for i in range(7):
        total = sum(values[j] ** 2 for j in range(max(0, i - 2), min(6, i + 2) + 1))
        assert b[i].item() == pytest.approx(values[i] / (2 + 1e-4 * total) ** 0.75, rel=1e-6), i
    # PyTorch's module divides alpha by n: it matches only when given n * alpha
    assert torch.allclose(nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)(a).flatten(), b)
    assert not torch.allclose(nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(a).flatten(), b)


@pytest.mark.parametrize("shape, fix", [
    ((2, 1, 224, 224), "greyscale"),
    ((2, 4, 224, 224), "RGBA"),
    ((2, 3, 227, 227), "size 224x224"),
    ((3, 224, 224), "unsqueeze"),
])
def test_bad_input_is_refused_with_the_fix(alexnet, shape, fix):
    with pytest.raises(ValueError, match=fix):
        alexnet(torch.rand(*shape))
    with pytest.raises(ValueError, match="x.float"):
        alexnet(torch.zeros(1, 3, 224, 224, dtype=torch.uint8))


def test_prepare_images_converts_grey_rgba_and_sizes():
    grey = torch.rand(2, 1, 300, 400)
    out = prepare_images(grey, 224)
    assert out.shape == (2, 3, 224, 224) and torch.equal(out[:, 0], out[:, 1])
    rgba = torch.zeros(1, 4, 32, 32)  # fully transparent black -> white
    assert torch.all(prepare_images(rgba, 32) == 1.0)
    assert prepare_images(torch.full((3, 32, 32), 255, dtype=torch.uint8), 32).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="5-channel"):
        prepare_images(torch.rand(1, 5, 32, 32), 32)


def _torchvision_state(seed: int = 0) -> tuple[nn.Module, dict]:
    torch.manual_seed(seed)
    tv = torchvision.models.alexnet(weights=None).eval()
    return tv, tv.state_dict()


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    """A freshly saved torchvision AlexNet state dict, named like torchvision's download."""
    tv, state = _torchvision_state()
    path = tmp_path_factory.mktemp("weights") / "alexnet-owt-7be5be79.pth"
    torch.save(state, path)
    return tv, path


def test_pretrained_alexnet_loads_from_a_local_state_dict(torchvision_file):
    tv, path = torchvision_file
    model, card = convnets.load_pretrained("alexnet-torchvision", weights_path=path)
    assert not model.training
    assert [name for name, _ in convnets.named_layers(model)] == list(ALEXNET_LAYERS)
    x = torch.rand(2, 3, 224, 224)
    normalised = torchvision.transforms.functional.normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    with torch.no_grad():
        assert torch.allclose(model(x), tv(normalised), atol=1e-5)
    meta = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.meta
    assert (card["acc@1"], card["acc@5"]) == (56.522, 79.066) == tuple(meta["_metrics"]["ImageNet-1K"].values())
    assert card["test_error"] == pytest.approx(43.478) and "64-192-384-256-256" in card["widths"]
    assert model.classes == card["classes"] == meta["categories"] and len(model.classes) == 1000
    rows = {r.name: r for r in convnets.layer_table(model)}
    assert rows["conv1"].output_shape == (64, 27, 27) and sum(r.params for r in rows.values()) == 61_100_840
    predictions = convnets.top_classes(model, x, k=3)
    assert len(predictions) == 2 and all(name in model.classes for name, _ in predictions[0])


def test_pretrained_alexnet_loads_from_the_weights_folder(torchvision_file, monkeypatch):
    tv, path = torchvision_file
    monkeypatch.setenv("CONVNET_LAB_WEIGHTS", str(path.parent))
    model, card = convnets.load_pretrained("alexnet-torchvision")
    assert card["source"] == str(path)
    assert torch.equal(model.features.conv1[0].weight, tv.features[0].weight)


def test_pretrained_alexnet_offline_names_both_ways(monkeypatch, tmp_path):
    monkeypatch.delenv("CONVNET_LAB_WEIGHTS", raising=False)

    def offline(*_args, **_kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError, match="weights_path.*CONVNET_LAB_WEIGHTS"):
        convnets.load_pretrained("alexnet-torchvision")
    with pytest.raises(WeightsError, match="no weights file"):
        convnets.load_pretrained("alexnet-torchvision", weights_path=tmp_path / "missing.pth")
    junk = tmp_path / "alexnet-junk.pth"
    junk.write_text("not weights")
    with pytest.raises(WeightsError, match="not a readable weights file"):
        convnets.load_pretrained("alexnet-torchvision", weights_path=junk)


def test_weights_of_another_width_are_refused_clearly():
    _, state = _torchvision_state()
    state["features.0.weight"] = torch.zeros(96, 3, 11, 11)  # the paper's 96 conv1 kernels
    with pytest.raises(WeightsError, match="another width: features.0.weight is \\(96, 3, 11, 11\\)"):
        TorchvisionAlexNet().load_torchvision_state_dict(state)
    with pytest.raises(WeightsError, match="not a torchvision AlexNet state dict"):
        TorchvisionAlexNet().load_torchvision_state_dict(AlexNet().state_dict())


def test_checkpoint_of_another_width_is_refused(tmp_path):
    model = convnets.get_model("alexnet-cifar", width=0.5, hidden=64)
    path = convnets.save_checkpoint(tmp_path / "m.pt", "alexnet-cifar", {"width": 0.5, "hidden": 64}, model, {"note": "t"})
    loaded, card = convnets.load_pretrained("alexnet-cifar", weights_path=path)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded(x), model.eval()(x)) and card == {"note": "t"}
    payload = convnets.read_checkpoint(path)
    payload["options"] = {"width": 1.0, "hidden": 64}
    with pytest.raises(convnets.CheckpointError, match="does not fit AlexNetCifar"):
        convnets.model_from_checkpoint(payload)


def test_alexnet_cifar_shapes_and_options():
    model = convnets.get_model("alexnet-cifar").eval()
    rows = {r.name: r for r in convnets.layer_table(model)}
    shapes = {"input": (3, 32, 32), "conv1": (48, 15, 15), "conv2": (128, 7, 7), "conv3": (192, 7, 7),
              "conv4": (192, 7, 7), "conv5": (128, 3, 3), "fc6": (1024,), "fc7": (1024,), "fc8": (10,)}
    assert {n: r.output_shape for n, r in rows.items()} == shapes
    assert rows["conv1"].connections == 32 * 32 * 48 * (5 * 5 * 3 + 1)  # before pooling; pooling and LRN add none
    assert sum(r.params for r in rows.values()) == sum(p.numel() for p in model.parameters())
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert sum(isinstance(m, PaperLRN) for m in model.modules()) == 2
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    plain = convnets.get_model("alexnet-cifar", dropout=0.0, lrn=False, activation="tanh", width=2, hidden=2048)
    assert not any(isinstance(m, (nn.Dropout, PaperLRN, nn.ReLU)) for m in plain.modules())
    assert plain.features.conv1[0].out_channels == 96 and plain.classifier.fc7[0].out_features == 2048
    conv2 = model.features.conv2[0]
    assert conv2.weight.std().item() == pytest.approx((2 / (48 * 25)) ** 0.5, rel=0.05)  # He init
    assert model.classifier.fc8.weight.std().item() == pytest.approx(0.01, rel=0.05) and torch.all(conv2.bias == 0)
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        convnets.get_model("alexnet-cifar", activation="gelu")
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        model(torch.rand(2, 1, 32, 32))


def test_four_layer_cnn_differs_only_in_the_nonlinearity():
    torch.manual_seed(0)
    relu = convnets.get_model("cnn4-cifar", activation="relu")
    torch.manual_seed(0)
    tanh = convnets.get_model("cnn4-cifar", activation="tanh")
    for (name, a), (_, b) in zip(relu.state_dict().items(), tanh.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    rows = convnets.layer_table(relu)
    assert [(r.name, r.output_shape) for r in rows] == [("input", (3, 32, 32)), ("conv1", (32, 16, 16)),
                                                        ("conv2", (32, 8, 8)), ("conv3", (64, 4, 4)), ("fc4", (10,))]
    gaussian = convnets.get_model("cnn4-cifar", init="gaussian", input_scaling="mean")
    assert gaussian.features.conv2[0].weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert gaussian.features.input(torch.ones(1, 3, 32, 32))[0, :, 0, 0].tolist() == pytest.approx(
        [255 * (1 - m) for m in (0.4914, 0.4822, 0.4465)], rel=1e-5)


def test_registry_lists_the_new_models_and_unknown_shipped_names_say_what_exists():
    assert {"alexnet", "alexnet-torchvision", "alexnet-cifar", "cnn4-cifar"} <= set(convnets.model_names())
    with pytest.raises(ValueError, match="no shipped weights for 'alexnet'.*downloadable: alexnet-torchvision"):
        convnets.load_pretrained("alexnet")
    assert PAPER_ALEXNET["ilsvrc2012_val_one_cnn"]["top1_error"] == 40.7
    assert math.isclose(sum(PAPER_ALEXNET["neurons_per_layer"].values()), 622_312)


# --------------------------------------------------------------------------- pictures in, kernels out (the AlexNet page)


def _picture(mode: str, size=(40, 30)):
    from PIL import Image

    return Image.new("RGB", size, (200, 100, 50)).convert(mode)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "CMYK", "YCbCr"])
def test_picture_to_rgb_keeps_the_colour_of_colour_pictures(mode):
    from convnets.pictures import picture_to_rgb

    x = picture_to_rgb(_picture(mode))
    assert x.shape == (3, 30, 40) and x.dtype == torch.float32
    # (200, 100, 50) / 255, within JPEG-free conversion rounding (YCbCr round trips lose a little)
    assert torch.allclose(x[:, 0, 0], torch.tensor([200, 100, 50]) / 255, atol=0.02)


@pytest.mark.parametrize("mode", ["L", "LA", "I;16", "1"])
def test_picture_to_rgb_repeats_grey(mode):
    from convnets.pictures import picture_to_rgb

    x = picture_to_rgb(_picture(mode))
    assert x.shape == (3, 30, 40)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def test_picture_to_rgb_composites_transparency_on_white_and_takes_a_gifs_first_frame(tmp_path):
    from PIL import Image

    from convnets.pictures import picture_to_rgb

    assert torch.all(picture_to_rgb(Image.new("RGBA", (20, 20), (0, 0, 0, 0))) == 1.0)
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "two.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with Image.open(path) as gif:
        x = picture_to_rgb(gif)
    assert x[0].mean() > 0.9 and x[2].mean() < 0.1  # red: the first frame


@pytest.mark.parametrize("size", [(1, 1), (5000, 20)])
def test_picture_to_rgb_refuses_tiny_and_enormous_pictures(size):
    from PIL import Image

    from convnets.pictures import picture_to_rgb

    with pytest.raises(ValueError, match="pixels"):
        picture_to_rgb(Image.new("RGB", size))


@pytest.mark.parametrize(("name", "options", "count", "side", "groups"),
                         [("alexnet", {}, 96, 11, 2), ("alexnet", {"two_gpu": False}, 96, 11, 1),
                          ("alexnet-cifar", {}, 48, 5, 1), ("alexnet-cifar", {"width": 2}, 96, 5, 1),
                          ("alexnet-torchvision", {}, 64, 11, 1)])
def test_first_layer_kernels_as_colour_images(name, options, count, side, groups):
    from convnets.kernels import first_layer_kernels

    model = convnets.get_model(name, **options)
    images, found_groups = first_layer_kernels(model)
    assert images.shape == (count, side, side, 3) and found_groups == groups
    flat = images.reshape(count, -1)
    assert np.allclose(flat.min(axis=1), 0) and np.allclose(flat.max(axis=1), 1)  # each kernel scaled on its own
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).weight[0].detach()  # (3, k, k)
    expected = (first - first.min()) / (first.max() - first.min())
    assert np.allclose(images[0], expected.permute(1, 2, 0).numpy(), atol=1e-6)


def test_first_layer_kernels_refuse_a_digit_model():
    from convnets.kernels import first_layer_kernels

    with pytest.raises(ValueError, match="no RGB first conv"):
        first_layer_kernels(convnets.get_model("lenet5-modern"))


@pytest.mark.parametrize("name", ["alexnet-cifar", "lenet5"])
def test_one_forward_pass_gives_the_activations_the_scores_and_the_embedding(name):
    """convnets.activations_and_scores: what the dashboard's probes read instead of running the model twice."""
    model = convnets.get_model(name).eval()
    x = torch.rand(3, *model.input_shape)
    outputs, scores = convnets.activations_and_scores(model, x)
    with torch.no_grad():
        assert torch.allclose(scores, model(x))
    assert torch.allclose(outputs[convnets.embedding_layer(model)].flatten(1), convnets.embed(model, x))
    assert list(outputs) == [layer for layer, _ in convnets.named_layers(model)]
    if name == "alexnet-cifar":
        from convnets.torchvision_alexnet import top_of_scores

        model.classes = [f"class {i}" for i in range(10)]
        assert top_of_scores(scores, model.classes, k=3) == convnets.top_classes(model, x, k=3)
