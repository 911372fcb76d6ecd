"""The dashboard's pages run headless (streamlit.testing AppTest) without exceptions and show what they promise.

AppTest cannot drive the drawing canvas (a custom component), so the current
image is a held-out digit set through session_state, as the canvas would set it.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# streamlit_drawable_canvas registers its component on import, which needs a Streamlit runtime: only look it up here.
_missing = [m for m in ("streamlit", "plotly", "streamlit_drawable_canvas") if importlib.util.find_spec(m) is None]
if _missing:
    pytest.skip(f"dashboard dependencies not installed: {', '.join(_missing)}", allow_module_level=True)
from streamlit.testing.v1 import AppTest  # noqa: E402

import convnets  # noqa: E402

DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard"
PAGES = {"draw": "views/draw.py", "filters": "views/filters.py", "feature_maps": "views/feature_maps.py",
         "architecture": "views/architecture.py", "misclassified": "views/misclassified.py",
         "similarity": "views/similarity.py", "unusual": "views/unusual.py", "invariance": "views/invariance.py"}
MODELS = ("lenet5", "lenet5-modern")
TIMEOUT = 120  # first runs load weights and the sample on a busy machine


@pytest.fixture(scope="module", autouse=True)
def dashboard_on_path():
    """streamlit run puts dashboard/ on sys.path (the entry script's folder); do the same for the page scripts."""
    sys.path.insert(0, str(DASHBOARD))
    yield
    sys.path.remove(str(DASHBOARD))


@pytest.fixture(autouse=True)
def no_finished_runs(tmp_path, monkeypatch):
    """An empty runs folder: the sidebar's picker holds just the shipped models, whatever runs this machine has."""
    monkeypatch.setenv("CONVNET_LAB_RUNS", str(tmp_path / "runs"))


@pytest.fixture(scope="module")
def digit(sample_data):
    """Held-out digit #7 as the current image, the way the pages store it."""
    index = 7
    return {"image": sample_data.test_x[index].numpy().astype(np.float32) / 255.0, "source": f"held-out digit #{index}",
            "label": int(sample_data.test_y[index])}


def run_page(page: str, model: str, digit: dict | None) -> AppTest:
    at = AppTest.from_file(str(DASHBOARD / PAGES[page]), default_timeout=TIMEOUT)
    at.session_state["model_name"] = model
    if digit is not None:
        at.session_state["current_digit"] = dict(digit)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def charts(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


def predicted(model_name: str, image: np.ndarray) -> int:
    model, _ = convnets.load_pretrained(model_name)
    with torch.no_grad():
        return int(model(torch.from_numpy(image).view(1, 1, 28, 28)).argmax())


@pytest.mark.parametrize("model", MODELS)
def test_draw_page_predicts_the_current_image(model, digit):
    at = run_page("draw", model, digit)
    assert at.title[0].value == "Draw & predict"
    first = next(m for m in at.metric if m.label == "First guess")
    assert first.value == str(predicted(model, digit["image"]))
    assert any(m.label == "Second guess" for m in at.metric)
    assert charts(at) == 1  # the probabilities
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) == 10
    text = " ".join(md.value for md in at.markdown) + " ".join(c.value for c in at.caption)
    assert f"True label: **{digit['label']}**" in text
    if model == "lenet5":
        assert "RBF distances" in text and "negative RBF distances" in text
        assert "RBF distance" in at.dataframe[0].value.columns


def test_draw_page_works_without_a_current_image():
    """A fresh session shows held-out digit #0, so the app works before anyone draws."""
    at = run_page("draw", "lenet5", None)
    assert at.session_state["current_digit"]["source"] == "held-out digit #0"
    assert any(m.label == "First guess" for m in at.metric)


def test_held_out_picker_and_clear(digit):
    at = run_page("draw", "lenet5-modern", None)
    at.number_input(key="held_out_index").set_value(7).run()
    assert not at.exception
    current = at.session_state["current_digit"]
    assert current["source"] == "held-out digit #7" and current["label"] == digit["label"]
    assert np.allclose(current["image"], digit["image"])
    next(b for b in at.button if b.label == "Clear").click().run()
    assert not at.exception
    assert "current_digit" not in at.session_state
    assert not at.metric and at.info  # nothing predicted, a hint to draw instead
    next(b for b in at.button if b.label == "Random held-out digit").click().run()
    assert not at.exception and at.session_state["current_digit"]["source"].startswith("held-out digit #")


@pytest.mark.parametrize(("model", "expected_charts"), [("lenet5", 13), ("lenet5-modern", 2)])
def test_filters_page(model, expected_charts, digit):
    at = run_page("filters", model, digit)
    assert charts(at) == expected_charts  # lenet5: C1, C3, Table I, ten bitmaps; modern: C1, C3
    subheaders = [s.value for s in at.subheader]
    assert subheaders[0].startswith("C1") and subheaders[1].startswith("C3")
    assert any("Table I" in s for s in subheaders) == (model == "lenet5")


@pytest.mark.parametrize("model", MODELS)
def test_feature_maps_page_shows_every_layer_in_order(model, digit):
    at = run_page("feature_maps", model, digit)
    layers = [s.value.split(":")[0] for s in at.subheader]
    assert layers == ["input", "C1", "S2", "C3", "S4", "C5", "F6", "output"]
    assert charts(at) == (9 if model == "lenet5" else 8)  # lenet5 adds the nearest digit bitmap beside F6
    assert f"**{predicted(model, digit['image'])}**" in at.markdown[-1].value
    assert digit["source"] in at.markdown[-1].value


@pytest.mark.parametrize("model", MODELS)
def test_architecture_page_compares_with_the_paper(model, digit):
    at = run_page("architecture", model, digit)
    table = at.dataframe[0].value
    assert list(table["layer"]) == ["input", "C1", "S2", "C3", "S4", "C5", "F6", "output"]
    if model == "lenet5":
        assert (table.set_index("layer").loc[["C1", "S2", "C3", "S4", "C5", "F6"], "matches paper"] == "yes").all()
    test_error = next(m for m in at.metric if m.label == "Test error")
    _, card = convnets.load_pretrained(model)
    assert test_error.value == f"{card['test_error']:.2f} %"
    assert any(card["test_set"] in c.value and "measured on" in c.value.lower() for c in at.caption)


def test_app_navigation_and_model_picker(digit):
    """The entry script: navigation, the shared sidebar model picker, switching pages.

    (The sidebar is checked on the first run only: after a rerun AppTest may lose the entry script's sidebar,
    a Streamlit testing quirk that a real browser does not show.)
    """
    at = AppTest.from_file(str(DASHBOARD / "app.py"), default_timeout=TIMEOUT)
    at.session_state["current_digit"] = dict(digit)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.title[0].value == "Draw & predict"  # the default page
    picker = at.sidebar.selectbox(key="model_name")
    assert picker.value == "lenet5" and len(picker.options) == 2
    assert any("measured on" in c.value for c in at.sidebar.caption)
    picker.select("lenet5-modern").run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("Model: **lenet5-modern**" in c.value for c in at.caption)
    at.switch_page("views/feature_maps.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.title[0].value == "Feature maps"


def held_out_mistakes(model_name: str, sample_data) -> np.ndarray:
    """Indices of the held-out digits the shipped model gets wrong, counted independently of the dashboard."""
    from training.loop import predict

    model, _ = convnets.load_pretrained(model_name)
    with torch.no_grad():
        predictions = predict(model, sample_data.test_x)
    return np.flatnonzero((predictions != sample_data.test_y).numpy())


def gallery_captions(at: AppTest) -> list[str]:
    """The gallery's image captions, '#index: true → predicted, confidence'."""
    return [image.proto.imgs[0].caption for image in at.get("image") if image.proto.imgs[0].caption.startswith("#")]


@pytest.mark.parametrize("model", MODELS)
def test_misclassified_page_counts_and_lists_every_error(model, digit, sample_data):
    at = run_page("misclassified", model, digit)
    assert at.title[0].value == "Misclassified"
    wrong = held_out_mistakes(model, sample_data)
    shown = next(m for m in at.metric if m.label == "Misclassified held-out digits")
    assert shown.value == str(len(wrong))
    rate = next(m for m in at.metric if m.label == "Held-out error")
    assert rate.value == f"{100 * len(wrong) / len(sample_data.test_y):.2f} %"
    _, card = convnets.load_pretrained(model)
    assert next(m for m in at.metric if m.label == "Model card test error").value == f"{card['test_error']:.2f} %"
    captions = " ".join(c.value for c in at.caption)
    assert "1,000 held-out digits" in captions and card["test_set"] in captions and "0.95 %" in captions
    assert charts(at) == 1  # the confusion matrix
    captions = gallery_captions(at)
    assert sorted(int(c.split(":")[0][1:]) for c in captions) == list(wrong)
    labels = sample_data.test_y.numpy()
    assert all(c.split(":")[1].split("→")[0].strip() == str(labels[int(c.split(":")[0][1:])]) for c in captions)


def test_misclassified_filter_by_true_class_and_use(sample_data):
    model = "lenet5"
    wrong = held_out_mistakes(model, sample_data)
    labels = sample_data.test_y.numpy()
    cls = int(np.bincount(labels[wrong], minlength=10).argmax())  # the true class with the most mistakes
    at = run_page("misclassified", model, None)
    at.selectbox(key="misclassified_true").select(cls).run()
    assert not at.exception, [e.message for e in at.exception]
    captions = gallery_captions(at)
    expected = [int(i) for i in wrong if labels[i] == cls]
    assert sorted(int(c.split(":")[0][1:]) for c in captions) == expected
    assert all(c.split(":")[1].split("→")[0].strip() == str(cls) for c in captions)
    at.selectbox(key="misclassified_predicted").select(cls).run()  # the diagonal: right answers, none shown
    assert not at.exception and not gallery_captions(at) and at.info
    next(b for b in at.button if b.label == "Show all").click().run()
    assert len(gallery_captions(at)) == len(wrong)
    at.button(key=f"use_{expected[0]}").click().run()
    assert not at.exception
    current = at.session_state["current_digit"]
    assert current["source"] == f"held-out digit #{expected[0]}" and current["label"] == cls
    assert np.allclose(current["image"], sample_data.test_x[expected[0]].numpy() / 255.0)


def test_misclassified_use_survives_switching_to_draw(sample_data):
    """A digit picked on Misclassified stays the current image on Draw & predict (which re-picks held-out digits)."""
    index = int(held_out_mistakes("lenet5", sample_data)[0])
    at = AppTest.from_file(str(DASHBOARD / "app.py"), default_timeout=TIMEOUT)
    at.run()
    at.switch_page("views/misclassified.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.title[0].value == "Misclassified"
    at.button(key=f"use_{index}").click().run()
    at.switch_page("views/draw.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.session_state["current_digit"]["source"] == f"held-out digit #{index}"
    assert next(m for m in at.metric if m.label == "First guess").value == str(predicted("lenet5", state_image(at)))


def state_image(at: AppTest) -> np.ndarray:
    return np.asarray(at.session_state["current_digit"]["image"], dtype=np.float32)


def image_captions(at: AppTest) -> list[str]:
    return [image.proto.imgs[0].caption for image in at.get("image")]


@pytest.mark.parametrize("model", MODELS)
def test_similarity_page_shows_the_nearest_training_digits_and_the_map(model, digit, sample_data):
    at = run_page("similarity", model, digit)
    assert at.title[0].value == "Similarity"
    assert charts(at) == 1  # the PCA map
    figure = at.get("plotly_chart")[0].proto.spec
    assert '"star"' in figure and "6 nearest" in figure
    captions = image_captions(at)
    assert captions[0] == digit["source"]
    shown = [int(c.rsplit("#", 1)[1]) for c in captions[1:]]
    model_, _ = convnets.load_pretrained(model)
    bank = convnets.embed(model_, sample_data.train_x.unsqueeze(1).float() / 255)
    query = convnets.embed(model_, torch.from_numpy(digit["image"]).view(1, 1, 28, 28))[0]
    _, expected = convnets.nearest(query, bank, k=6)
    assert shown == expected.tolist()
    labels = sample_data.train_y.numpy()
    assert all(c.split(". label ")[1].split(" ")[0] == str(labels[i]) for c, i in zip(captions[1:], shown, strict=True))
    text = " ".join(md.value for md in at.markdown)
    assert f"The model says **{predicted(model, digit['image'])}**" in text and "vote" in text
    assert any("4,000 training digits" in c.value and "F6" in c.value for c in at.caption)
    at.radio(key="similarity_query").set_value("A held-out digit").run()
    at.number_input(key="similarity_held_out").set_value(3).run()
    assert not at.exception, [e.message for e in at.exception]
    assert image_captions(at)[0] == "held-out digit #3" and charts(at) == 1


@pytest.mark.parametrize("model", MODELS)
def test_unusual_patterns_page_answers_every_pattern_and_yours(model, digit, sample_data):
    from convnets.weirdos import weirdos

    patterns = weirdos(sample_data.test_x.numpy(), sample_data.test_y.numpy())
    at = run_page("unusual", model, digit)
    assert at.title[0].value == "Unusual patterns"
    assert len(at.get("image")) == len(patterns)
    answers = [md.value for md in at.markdown if md.value.startswith("→ **")]
    assert len(answers) == len(patterns)
    model_, _ = convnets.load_pretrained(model)
    with torch.no_grad():
        expected = model_(torch.from_numpy(np.stack([p.image for p in patterns])).unsqueeze(1)).argmax(1).tolist()
    assert [int(a.split("**")[1]) for a in answers] == expected
    flag = "rejected" if model == "lenet5" else "low confidence"
    assert any(flag in md.value and "percentile" in md.value for md in at.markdown)
    assert ("distance" in answers[0]) == (model == "lenet5")
    next(b for b in at.button if b.label == "Add the current image").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert len(at.get("image")) == len(patterns) + 1
    assert any(md.value == "**yours #1**" for md in at.markdown)
    answers = [md.value for md in at.markdown if md.value.startswith("→ **")]
    assert int(answers[-1].split("**")[1]) == predicted(model, digit["image"])
    next(b for b in at.button if b.label == "Clear yours").click().run()
    assert len(at.get("image")) == len(patterns)


@pytest.mark.parametrize("model", MODELS)
def test_invariance_page_sweeps_and_robustness(model, digit):
    from convnets.invariance import ROBUSTNESS_KINDS, transform
    from training.data import evaluation_digits

    at = run_page("invariance", model, digit)
    assert at.title[0].value == "Invariance lab"
    assert charts(at) == 2 + len(ROBUSTNESS_KINDS)  # the sweep, the animation, one robustness chart per kind
    assert next(m for m in at.metric if m.label == "Prediction").value == str(predicted(model, digit["image"]))
    captions = " ".join(c.value for c in at.caption)
    assert evaluation_digits()[2] in captions and "one forward batch" in captions
    at.selectbox(key="invariance_kind").select("rotate").run()
    at.select_slider(key="invariance_level_rotate").set_value(90.0).run()
    assert not at.exception, [e.message for e in at.exception]
    rotated = transform(digit["image"], "rotate", 90.0)[0].numpy()
    assert next(m for m in at.metric if m.label == "Prediction").value == str(predicted(model, rotated))


# The AlexNet page: tests/test_alexnet_page.py
