"""The "Why this answer" page (streamlit.testing AppTest): five attribution maps of the current image, the deletion
curves with their areas as computed by convnets.attribution, a class picker, one-line messages for bad settings."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

if importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("plotly") is None:
    pytest.skip("dashboard dependencies not installed", allow_module_level=True)
from streamlit.testing.v1 import AppTest  # noqa: E402

import convnets  # noqa: E402
from convnets import attribution as A  # noqa: E402

torch.set_num_threads(1)
DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard"
PAGE = str(DASHBOARD / "views" / "attribution.py")
TIMEOUT = 300  # a busy 2-core machine; the AlexNet run pushes 25 noisy copies and 256 occluded ones through it
METHODS = ("Gradient (saliency)", "SmoothGrad", "Integrated gradients", "Grad-CAM", "Occlusion")


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """An empty runs folder, no CIFAR-10 but the shipped sample, dashboard/ on sys.path (as streamlit run puts it)."""
    monkeypatch.setenv("CONVNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CONVNET_LAB_CIFAR", "")
    monkeypatch.setenv("CONVNET_LAB_NO_WORKER", "1")
    monkeypatch.setattr(sys, "path", [str(DASHBOARD), *sys.path])


@pytest.fixture(scope="module")
def digit(sample_data) -> dict:
    index = 7
    return {"image": sample_data.test_x[index].numpy().astype(np.float32) / 255.0, "source": f"held-out digit #{index}",
            "label": int(sample_data.test_y[index])}


def run(model: str, digit: dict, **state) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["model_name"] = model
    at.session_state["current_digit"] = dict(digit)
    for key, value in state.items():
        at.session_state[key] = value
    return ok(at.run())


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def chart_titles(at: AppTest) -> list[str]:
    return [json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in at.get("plotly_chart")]


def areas(at: AppTest) -> dict[str, float]:
    return {m.label: float(m.value) for m in at.metric}


def expected_areas(name: str, image: np.ndarray, target: int | None = None) -> dict[str, float]:
    """The deletion areas of the page's default settings, computed here with convnets.attribution."""
    model, _ = convnets.load_pretrained(name)
    settings = {"saliency": {}, "smoothgrad": {"samples": 25, "sigma": 0.15}, "integrated-gradients": {"steps": 32},
                "grad-cam": {"layer": "C3"}, "occlusion": {"patch": 4, "stride": 1}}
    x = torch.from_numpy(image).view(1, 28, 28)
    return {label: A.deletion_curve(model, x, A.attribute(model, x, method, target=target, **kw), steps=20).auc
            for label, (method, kw) in zip(METHODS, settings.items(), strict=True)}


@pytest.mark.parametrize("name", ["lenet5", "lenet5-modern"])
def test_five_maps_and_the_deletion_areas_of_the_current_digit(name, digit):
    at = run(name, digit)
    assert at.title[0].value == "Why this answer"
    model, _ = convnets.load_pretrained(name)
    with torch.no_grad():
        predicted = int(model(torch.from_numpy(digit["image"]).view(1, 1, 28, 28)).argmax())
    assert at.selectbox(key="why_target_digits").value is None  # the predicted class, following the image
    titles = chart_titles(at)
    assert titles[:5] == [f"{label} · {predicted}" for label in METHODS]
    assert titles[5].startswith(f"Deletion: probability of {predicted}")
    shown = areas(at)
    assert set(shown) == set(METHODS)
    for label, auc in expected_areas(name, digit["image"]).items():
        assert shown[label] == pytest.approx(auc, abs=6e-4), label  # the page shows three decimals
    text = " ".join(c.value for c in at.caption)
    assert "completeness gap" in text and "blank image" in text and "C3: 16 maps of 10x10" in text
    assert "784 occluded copies" in text and "chance level" in text
    assert at.selectbox(key="why_layer_digits").options == ["C1", "C3", "C5"]


def test_another_class_is_explained_when_picked(digit):
    at = run("lenet5-modern", digit)
    at.selectbox(key="why_target_digits").set_value(6).run()
    ok(at)
    assert chart_titles(at)[3] == "Grad-CAM · 6"
    expected = expected_areas("lenet5-modern", digit["image"], target=6)
    assert areas(at)["Integrated gradients"] == pytest.approx(expected["Integrated gradients"], abs=6e-4)


def test_bad_settings_give_one_line_and_the_rest_of_the_page_works(digit):
    at = run("lenet5", digit, why_layer_digits="conv5", why_patch_digits=2, why_stride_digits=5, why_target_digits=12)
    warnings = [w.value for w in at.warning]
    assert any("Class 12 does not exist" in w for w in warnings), warnings
    assert any("no convolutional layer 'conv5'" in w and "showing C3" in w for w in warnings), warnings
    assert any(w.startswith("Occlusion:") and "stride" in w for w in warnings), warnings
    titles = chart_titles(at)
    assert len(titles) == 5 and not any(t.startswith("Occlusion") for t in titles)  # four maps and the deletion chart
    assert set(areas(at)) == set(METHODS) - {"Occlusion"}


def test_alexnet_on_a_cifar_picture():
    at = run("lenet5", {"image": np.zeros((28, 28), np.float32), "source": "blank", "label": None},
             why_family="pictures", why_stride_pictures=4)
    from training.images import cifar_sample

    sample = cifar_sample()
    titles = chart_titles(at)
    assert len(titles) == 6, titles
    assert at.selectbox(key="why_layer_pictures").value == "conv5"
    text = " ".join(m.value for m in at.markdown)
    assert "alexnet-cifar" in text and f"true class **{sample.classes[int(sample.test_y[0])]}**" in text
