"""The Unit page (streamlit.testing AppTest): the unit named in the address with its weighted sum, receptive field,
top-9 test patches (kept on disk) and feature visualisation as convnets.units computes them; one message for a unit,
layer or model that does not exist; the pickers write the address; the Feature maps page opens it."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

if importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("plotly") is None:
    pytest.skip("dashboard dependencies not installed", allow_module_level=True)
import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

import convnets  # noqa: E402
from convnets import units as U  # noqa: E402

torch.set_num_threads(1)
DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard"
PAGE = str(DASHBOARD / "views" / "unit.py")
TIMEOUT = 300  # a busy 2-core machine: the first run finds the top-9 patches of every unit over 1,000 digits
SECTIONS = 4  # subheaders: computes, looks, top-9, visualisation


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """An empty runs folder (the disk cache goes there), the offline digits, dashboard/ on sys.path."""
    monkeypatch.setenv("CONVNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CONVNET_LAB_MNIST", "sample")
    monkeypatch.setenv("CONVNET_LAB_CIFAR", "")
    monkeypatch.setenv("CONVNET_LAB_NO_WORKER", "1")
    monkeypatch.setattr(sys, "path", [str(DASHBOARD), *sys.path])


@pytest.fixture(scope="module")
def digit(sample_data) -> dict:
    index = 7
    return {"image": sample_data.test_x[index].numpy().astype(np.float32) / 255.0, "source": f"held-out digit #{index}",
            "label": int(sample_data.test_y[index])}


def run(name: str, digit: dict, **params) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["model_name"] = name
    at.session_state["current_digit"] = dict(digit)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def image_captions(at: AppTest) -> list[str]:
    return [image.caption for element in at.get("image") for image in element.proto.imgs]


def text(at: AppTest) -> str:
    return " ".join(c.value for c in at.caption)


@pytest.mark.parametrize(("name", "layer", "unit"), [("lenet5", "C3", 5), ("lenet5-modern", "C1", 2),
                                                     ("lenet5", "F6", 3)])
def test_the_unit_in_the_address_as_convnets_units_computes_it(name, layer, unit, digit, sample_data):
    at = ok(run(name, digit, layer=layer, unit=str(unit)))
    assert at.title[0].value == "Unit page"
    assert len(at.subheader) == SECTIONS and at.subheader[0].value == f"What {layer} unit {unit} computes on the current image"
    assert dict(at.query_params) == {"model": name, "layer": layer, "unit": str(unit)}
    model, _ = convnets.load_pretrained(name)
    ws = U.weighted_sum(model, digit["image"], layer, unit)
    table = at.dataframe[0].value.set_index("term")["value"]
    assert table["pre-activation" if name == "lenet5" else "weighted sum"] == pytest.approx(ws.pre_activation, abs=1e-4)
    assert table.index[-1] == "value" and ws.after[-1][0] in table.index
    assert table["value"] == pytest.approx(ws.value, abs=1e-5)
    assert table["bias"] == pytest.approx(ws.bias, abs=1e-6)
    top = U.top_patches(model, sample_data.test_x, [layer])[layer]  # the page's evaluation digits: the offline ones
    shown = [c for c in image_captions(at) if c.startswith("#")]
    expected = [f"#{i} ({sample_data.test_y[i]}) · {v:.3f}" for i, v in zip(top.images[unit], top.values[unit], strict=True)]
    assert shown == expected
    assert "the 1,000 held-out digits" in text(at)
    vis = U.visualise(model, layer, unit)
    metrics = {m.label: float(m.value) for m in at.metric}
    assert metrics["Activation reached"] == pytest.approx(vis.activation, abs=1e-3)
    assert metrics["On the starting noise"] == pytest.approx(vis.start_activation, abs=1e-3)
    assert metrics["Best test digit"] == pytest.approx(float(top.values[unit, 0]), abs=1e-3)
    assert "jitter" in text(at) and "blur" in text(at) and "seed 0" in text(at)
    if layer == "C3":
        assert "Table I: S2 maps 0, 1, 5 feed C3 map 5" in text(at) and "Receptive field of C3: 14x14" in text(at)
    if layer == "F6":
        assert "fully connected: one weight per C5 unit (120)" in text(at) and "(32x32 with LeNet-5's padding)" in text(at)


@pytest.mark.parametrize(("params", "message"), [
    ({"layer": "C9", "unit": "3"}, "lenet5 has no layer 'C9' with units of its own; pick one of C1 (0-5), C3 (0-15)"),
    ({"layer": "C3", "unit": "99"}, "unit 99 does not exist: C3 has 16 units (0-15)"),
    ({"layer": "C1", "unit": "abc"}, "the unit must be a whole number 0-5 for C1, got 'abc'"),
    ({"layer": "S2", "unit": "1"}, "lenet5 has no layer 'S2' with units of its own"),
])
def test_a_bad_address_gives_one_message_and_the_page_works(params, message, digit):
    at = run("lenet5", digit, **params)
    assert not at.exception, [e.message for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and message in errors[0] and "Showing C1 unit 0 instead; pick another below" in errors[0]
    assert len(at.subheader) == SECTIONS and len(at.metric) == 3  # the rest of the page, for a unit that exists
    assert dict(at.query_params) == {"model": "lenet5", "layer": "C1", "unit": "0"}  # the address now names it
    at.run()  # the next interaction: the address is the page's own, so no message
    assert not at.error and not at.exception


def test_an_address_for_a_model_that_is_not_here(digit):
    at = ok(run("lenet5", digit, model="lenet7", layer="C3", unit="2"))
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and "The address names the model 'lenet7'" in warnings[0] and "it is not here" in warnings[0]
    assert at.subheader[0].value == "What C3 unit 2 computes on the current image"


def test_picking_a_unit_writes_the_address_and_the_disk_cache_is_read_back(digit, tmp_path):
    st.cache_data.clear()  # an earlier test's top-9 patches (in another runs folder) may be in memory
    at = ok(run("lenet5-modern", digit))
    assert dict(at.query_params) == {"model": "lenet5-modern", "layer": "C1", "unit": "0"}
    at.selectbox(key="unit_layer").set_value("C5").run()
    at.number_input(key="unit_index").set_value(119).run()
    ok(at)
    assert dict(at.query_params) == {"model": "lenet5-modern", "layer": "C5", "unit": "119"}
    assert at.subheader[0].value == "What C5 unit 119 computes on the current image"
    cached = list((tmp_path / "runs" / "unit-cache").glob("top-patches-lenet5-modern-*.npz"))
    assert len(cached) == 1 and "read from the disk cache" not in text(at)
    st.cache_data.clear()  # a new server: the top-9 patches come from the file
    again = ok(run("lenet5-modern", digit, layer="C5", unit="119"))
    assert "read from the disk cache" in text(again)
    assert [c for c in image_captions(again) if c.startswith("#")] == [c for c in image_captions(at) if c.startswith("#")]


def open_unit_page(page: str, prefix: str, layer: str, unit: int, digit: dict | None = None) -> AppTest:
    """A fresh app session on ``page``, its unit picker (keys ``{prefix}_unit_layer``, ``{prefix}_unit``) set to
    ``layer`` and ``unit``, then its button to the Unit page pressed."""
    at = AppTest.from_file(str(DASHBOARD / "app.py"), default_timeout=TIMEOUT)
    if digit is not None:
        at.session_state["current_digit"] = dict(digit)
    at.run()
    at.switch_page(page).run()
    ok(at)
    at.selectbox(key=f"{prefix}_unit_layer").set_value(layer).run()
    at.number_input(key=f"{prefix}_unit").set_value(unit).run()
    at.button(key=f"{prefix}_open_unit").click().run()
    return ok(at)


def test_feature_maps_opens_the_unit_page_and_a_shared_address_picks_its_model(digit):
    at = open_unit_page("views/feature_maps.py", "maps", "C3", 15, digit)
    assert at.title[0].value == "Unit page"
    assert at.subheader[0].value == "What C3 unit 15 computes on the current image"
    assert dict(at.query_params) == {"model": "lenet5", "layer": "C3", "unit": "15"}

    shared = AppTest.from_file(str(DASHBOARD / "app.py"), default_timeout=TIMEOUT)  # a new session from the address
    for key, value in {"model": "lenet5-modern", "layer": "F6", "unit": "9"}.items():
        shared.query_params[key] = value
    shared.switch_page("views/unit.py").run()
    ok(shared)
    assert shared.session_state["model_name"] == "lenet5-modern" and not shared.warning
    assert shared.subheader[0].value == "What F6 unit 9 computes on the current image"


@pytest.fixture(scope="module")
def cifar():
    from training.images import cifar_sample

    return cifar_sample()


def run_colour(picture: dict | None = None, **params) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    if picture is not None:
        at.session_state["alexnet_picture"] = dict(picture)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


@pytest.mark.parametrize(("layer", "unit", "index"), [("conv3", 17, None), ("conv1", 5, 12), ("conv5", 40, 3)])
def test_an_alexnet_unit_in_the_address(layer, unit, index, cifar):
    """?model=alexnet-cifar&layer=..&unit=..: the colour model's unit on the AlexNet page's picture (test image 0 of
    the sample when none was picked), its top-9 over the sample's test pictures, a colour visualisation."""
    picture = None if index is None else {"image": cifar.test_x[index].numpy().astype(np.float32) / 255,
                                          "source": f"test image #{index}", "label": None}
    at = ok(run_colour(picture, model="alexnet-cifar", layer=layer, unit=str(unit)))
    assert at.radio(key="unit_family").value == "colour" and at.selectbox(key="unit_image_model").value == "alexnet-cifar"
    assert len(at.subheader) == SECTIONS and at.subheader[0].value == f"What {layer} unit {unit} computes on the current image"
    assert dict(at.query_params) == {"model": "alexnet-cifar", "layer": layer, "unit": str(unit)}
    model, _ = convnets.load_pretrained("alexnet-cifar")
    ws = U.weighted_sum(model, cifar.test_x[index or 0].numpy().astype(np.float32) / 255, layer, unit)
    table = at.dataframe[0].value.set_index("term")["value"]
    assert table["pre-activation"] == pytest.approx(ws.pre_activation, abs=1e-4)
    assert table["value"] == pytest.approx(max(ws.pre_activation, 0.0), abs=1e-4)
    assert len(table) == (7 if layer == "conv1" else 13)  # conv1: R, G, B; deeper: the 8 largest terms and the rest
    top = U.top_patches(model, cifar.test_x, [layer])[layer]
    shown = [c for c in image_captions(at) if c.startswith("#")]
    assert shown == [f"#{i} ({cifar.classes[cifar.test_y[i]]}) · {v:.3f}"
                     for i, v in zip(top.images[unit], top.values[unit], strict=True)]
    assert "the sample's 1,000 test images" in text(at) and "1,000 pictures in batched passes" in text(at)
    pools = layer in ("conv1", "conv5")
    assert ("before the layer's 3x3 max-pooling" in text(at)) == pools
    vis = U.visualise(model, layer, unit)
    metrics = {m.label: float(m.value) for m in at.metric}
    assert metrics["Activation reached"] == pytest.approx(vis.activation, abs=1e-3)
    assert metrics["Best test picture"] == pytest.approx(float(top.values[unit, 0]), abs=1e-3)
    assert vis.image.shape == (32, 32, 3) and "seed 0" in text(at) and "each colour channel blurred" in text(at)
    if layer == "conv1":
        assert "three colour channels" in text(at) and "the kernel in colour" in image_captions(at)[0]


@pytest.mark.parametrize(("params", "message"), [
    ({"layer": "conv9", "unit": "3"}, "alexnet-cifar has no layer 'conv9' with units of its own; pick one of conv1 (0-47)"),
    ({"layer": "conv5", "unit": "128"}, "unit 128 does not exist: conv5 has 128 units (0-127)"),
    ({"layer": "C3", "unit": "1"}, "alexnet-cifar has no layer 'C3'"),
])
def test_a_bad_alexnet_address_gives_one_message_and_the_page_works(params, message):
    at = run_colour(model="alexnet-cifar", **params)
    assert not at.exception, [e.message for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and message in errors[0] and "Showing conv1 unit 0 instead" in errors[0]
    assert len(at.subheader) == SECTIONS and len(at.metric) == 3
    assert dict(at.query_params) == {"model": "alexnet-cifar", "layer": "conv1", "unit": "0"}


def test_switching_between_a_digit_and_a_colour_model(digit):
    at = ok(run("lenet5", digit, layer="C3", unit="5"))
    assert at.radio(key="unit_family").value == "digits"
    at.radio(key="unit_family").set_value("colour").run()
    ok(at)
    assert dict(at.query_params) == {"model": "alexnet-cifar", "layer": "conv1", "unit": "5"}  # C3 is not here: conv1
    assert at.subheader[2].value == "Top-9 patches: the test pictures that excite it most"
    at.selectbox(key="unit_layer").set_value("conv2").run()
    at.radio(key="unit_family").set_value("digits").run()
    ok(at)
    assert dict(at.query_params) == {"model": "lenet5", "layer": "C1", "unit": "5"}


def test_the_alexnet_page_opens_the_unit_page_on_its_picture():
    at = open_unit_page("views/alexnet.py", "alexnet", "conv4", 150)
    assert at.title[0].value == "Unit page"
    assert at.subheader[0].value == "What conv4 unit 150 computes on the current image"
    assert dict(at.query_params) == {"model": "alexnet-cifar", "layer": "conv4", "unit": "150"}
    assert "test image #0 of the CIFAR-10 sample" in text(at)
