"""The "Adversarial digits" page (streamlit.testing AppTest): the smallest perturbation for the current image as
convnets.adversarial finds it, both models' ε, the accuracy-vs-ε curves, one-line messages for bad input."""

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
import training.loop  # noqa: E402, F401 - before AppTest puts dashboard/ on sys.path
from convnets import adversarial as A  # noqa: E402

torch.set_num_threads(1)
DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard"
PAGE = str(DASHBOARD / "views" / "adversarial.py")
TIMEOUT = 300  # the first run attacks 1,000 digits per model on a busy 2-core machine
MODELS = ("lenet5", "lenet5-modern")


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """An empty runs folder, the offline digits, dashboard/ on sys.path (as streamlit run puts it)."""
    monkeypatch.setenv("CONVNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CONVNET_LAB_MNIST", "sample")
    monkeypatch.setattr(sys, "path", [str(DASHBOARD), *sys.path])


@pytest.fixture(scope="module")
def digit(sample_data) -> dict:
    index = 1
    return {"image": sample_data.test_x[index].numpy().astype(np.float32) / 255.0, "source": f"held-out digit #{index}",
            "label": int(sample_data.test_y[index])}


def run(model: str, digit: dict, **state) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["model_name"] = model
    at.session_state["current_digit"] = dict(digit)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def chart_titles(at: AppTest) -> list[str]:
    return [json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in at.get("plotly_chart")]


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


@pytest.mark.parametrize("model", MODELS)
def test_page_shows_the_smallest_perturbation_and_both_curves(model, digit):
    at = run(model, digit)
    assert at.title[0].value == "Adversarial digits"
    expected = A.smallest_perturbation(convnets.load_pretrained(model)[0], digit["image"], "fgsm")
    assert metric(at, "Answer") == str(expected.original_class)
    assert metric(at, "ε needed") == f"{expected.epsilon:.3f}"
    assert metric(at, "New answer") == str(expected.new_class)
    assert len(at.get("image")) == 2  # original and adversarial; the perturbation is a chart
    titles = chart_titles(at)
    assert titles[0].startswith("Perturbation (ε = ") and titles[1].startswith("Accuracy vs ε")
    curves = json.loads(at.get("plotly_chart")[1].proto.spec)["data"]
    assert [c["name"] for c in curves] == list(MODELS)  # both digit models on one chart
    table = at.dataframe[0].value
    assert list(table["model"]) == list(MODELS) and table["ε needed"].notna().all()
    assert any("Invariance lab" in md.value for md in at.markdown)


def test_pgd_and_a_target_class(digit):
    at = run("lenet5-modern", digit, adversarial_method="pgd", adversarial_target=2)
    expected = A.smallest_perturbation(convnets.load_pretrained("lenet5-modern")[0], digit["image"], "pgd", target=2)
    assert metric(at, "New answer") == "2" and metric(at, "ε needed") == f"{expected.epsilon:.3f}"
    assert "PGD" in chart_titles(at)[1]


def test_a_target_equal_to_the_answer_is_one_line_and_the_rest_works(digit):
    at = run("lenet5", digit, adversarial_target=digit["label"])
    assert len(at.warning) == 1 and f"already answers {digit['label']}" in at.warning[0].value
    assert chart_titles(at)[-1].startswith("Accuracy vs ε")


def test_a_blank_image_is_one_line_and_the_rest_works():
    blank = {"image": np.zeros((28, 28), dtype=np.float32), "source": "your drawing", "label": None}
    at = run("lenet5-modern", blank)
    assert len(at.warning) == 1 and "blank" in at.warning[0].value
    assert chart_titles(at) == [chart_titles(at)[-1]] and chart_titles(at)[-1].startswith("Accuracy vs ε")
