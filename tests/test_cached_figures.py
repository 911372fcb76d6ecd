"""Figures built once and shared (``resources.figure``) give, through the cheap copies the pages make of them, exactly
the figures the pages built before on every rerun, and the shared figure is never changed by a copy."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

_missing = [m for m in ("streamlit", "plotly") if importlib.util.find_spec(m) is None]
if _missing:
    pytest.skip(f"dashboard dependencies not installed: {', '.join(_missing)}", allow_module_level=True)
from streamlit.testing.v1 import AppTest  # noqa: E402

DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard"


@pytest.fixture(scope="module", autouse=True)
def dashboard_on_path():
    sys.path.insert(0, str(DASHBOARD))
    yield
    sys.path.remove(str(DASHBOARD))


def sweep(frames: int = 7) -> dict:
    """A small made-up sweep: ``frames`` 6x6 images and their ten probabilities."""
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(frames, 10)) * 3
    probabilities = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
    return {"images": rng.random((frames, 6, 6)).astype(np.float32), "probabilities": probabilities,
            "captions": [f"level {i} → {int(p.argmax())}" for i, p in enumerate(probabilities)],
            "level_text": [f"{i / 10:+.1f}" for i in range(frames)]}


@pytest.mark.parametrize("start", [0, 3, 6])
def test_animation_starting_at_a_frame_is_the_animation_built_there(start):
    import plots

    s = sweep()
    shared = plots.sweep_animation(**s)
    before = shared.to_dict()
    copy = plots.starting_at(shared, start)
    assert copy.to_dict() == plots.sweep_animation(**s, start=start).to_dict()
    assert copy.layout.sliders[0].active == start and copy.layout.title.text == s["captions"][start]
    assert shared.to_dict() == before  # the shared figure is untouched


@pytest.mark.parametrize("current", [-0.5, 0.0, 1.0])
def test_sweep_marked_at_a_level_is_the_sweep_built_with_it(current):
    import plots

    levels, predictions = np.linspace(-1, 1, 9), np.array([1, 1, 7, 7, 7, 7, 2, 2, 1])
    confidences = np.linspace(0.3, 0.95, 9)
    arguments = {"title": "t", "x_title": "shift", "level_text": [f"{v:+.2f}" for v in levels], "truth": 7,
                 "truth_probability": np.linspace(0.9, 0.1, 9)}
    shared = plots.invariance_sweep(levels, predictions, confidences, **arguments)
    before = shared.to_dict()
    marked = plots.marked_at(shared, current)
    assert marked.to_dict() == plots.invariance_sweep(levels, predictions, confidences, current=current,
                                                      **arguments).to_dict()
    assert len(marked.layout.shapes) == 1 and shared.to_dict() == before


def test_curves_x_dtick_overrides_the_one_tick_per_epoch():
    import plots

    traces = [{"name": "a", "x": list(range(1, 16)), "y": list(range(15))}]
    assert plots.curves(traces, "t", "epoch", "err").layout.xaxis.dtick == 1
    assert plots.curves(traces, "t", "epoch", "err", x_dtick=2).layout.xaxis.dtick == 2


def test_figure_is_built_once_per_input():
    import resources

    s = sweep()
    first = resources.sweep_animation(s["images"], s["probabilities"], s["captions"], s["level_text"])
    again = resources.sweep_animation(s["images"].copy(), s["probabilities"], s["captions"], s["level_text"])
    other = resources.sweep_animation(s["images"][::-1].copy(), s["probabilities"], s["captions"], s["level_text"])
    assert first is again and other is not first
    bars = resources.figure("bars", [1.0, 2.0], "t", "x", "y", highlight=1)
    assert resources.figure("bars", [1.0, 2.0], "t", "x", "y", highlight=1) is bars
    assert resources.figure("bars", [1.0, 2.0], "t", "x", "y", highlight=0) is not bars


def test_invariance_page_animation_opens_at_the_slider(sample_data, tmp_path, monkeypatch):
    """After the slider moves, the animation (a copy of the cached one) opens on that level's frame."""
    from convnets.invariance import TRANSFORMS

    monkeypatch.setenv("CONVNET_LAB_RUNS", str(tmp_path / "runs"))
    at = AppTest.from_file(str(DASHBOARD / "views" / "invariance.py"), default_timeout=120)
    at.session_state["model_name"] = "lenet5"
    at.session_state["current_digit"] = {"image": sample_data.test_x[3].numpy().astype(np.float32) / 255.0,
                                         "source": "held-out digit #3", "label": int(sample_data.test_y[3])}
    at.run()
    specs = []
    for value in (30.0, -45.0):
        at.selectbox(key="invariance_kind").select("rotate").run()
        at.select_slider(key="invariance_level_rotate").set_value(value).run()
        assert not at.exception, [e.message for e in at.exception]
        charts = {c.proto.id: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
        animation = next(spec for spec in charts.values() if "frames" in spec)
        active = animation["layout"]["sliders"][0]["active"]
        assert animation["layout"]["sliders"][0]["steps"][active]["label"] == TRANSFORMS["rotate"].describe(value)
        assert animation["data"][0]["z"] == animation["frames"][active]["data"][0]["z"]
        assert animation["layout"]["title"]["text"] == animation["frames"][active]["layout"]["title"]["text"]
        sweep_chart = next(spec for spec in charts.values() if "frames" not in spec and spec["layout"].get("shapes"))
        assert [shape["x0"] for shape in sweep_chart["layout"]["shapes"]] == [value]
        specs.append(animation)
    assert specs[0]["layout"]["sliders"][0]["active"] != specs[1]["layout"]["sliders"][0]["active"]


def test_figure_of_builds_once_per_key():
    import plots
    import resources

    built = []

    def build(title: str):
        built.append(title)
        return plots.bars([1.0, 2.0], title, "x", "y")

    first = resources.figure_of(("test-chart", "a.json", 1.0), lambda: build("a"))
    assert resources.figure_of(("test-chart", "a.json", 1.0), lambda: build("changed")) is first
    assert resources.figure_of(("test-chart", "a.json", 2.0), lambda: build("b")).layout.title.text == "b"
    assert built == ["a", "b"] and first.layout.title.text == "a"
