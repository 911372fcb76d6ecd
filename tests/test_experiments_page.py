"""The Paper experiments page: the measured ReLU-vs-tanh race and dropout / augmentation runs beside the paper's claims,
each opening on its headline result with the conditions beside it."""

import importlib.util
import json
from pathlib import Path

import pytest

if importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("plotly") is None:
    pytest.skip("dashboard dependencies not installed", allow_module_level=True)
from streamlit.testing.v1 import AppTest  # noqa: E402

from training.experiments import headline_key, read_results  # noqa: E402

DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard"
PAGE = str(DASHBOARD / "views" / "experiments.py")
TIMEOUT = 120


@pytest.fixture(autouse=True)
def experiments(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CONVNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CONVNET_LAB_EXPERIMENTS", str(tmp_path / "experiments"))
    monkeypatch.setenv("CONVNET_LAB_NO_WORKER", "1")
    monkeypatch.syspath_prepend(str(DASHBOARD))
    return tmp_path / "experiments"


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.message for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    return " ".join(e.value for kind in ("markdown", "caption", "info", "warning", "error", "success", "code")
                    for e in at.get(kind))


def _curve(errors: list[float]) -> list[dict]:
    return [{"epoch": i + 1, "loss": 1.0, "train_error": e, "test_error": e + 5, "seconds": 2.0 * (i + 1),
             "train_error_clean": e - 1} for i, e in enumerate(errors)]


def _race(relu_epochs: int | None, tanh_epochs: int | None, init: str = "gaussian", finished: str = "2026-01-01") -> dict:
    def run(activation, epochs):
        errors = [60.0] * ((epochs or 6) - 1) + [24.0 if epochs else 40.0]
        return {"activation": activation, "lr": 0.01, "curve": _curve(errors), "epochs_to_target": epochs,
                "seconds_to_target": 2.0 * epochs if epochs else None, "diverged": False}

    ratio = tanh_epochs / relu_epochs if relu_epochs and tanh_epochs else None
    return {"experiment": "relu-vs-tanh", "finished": finished,
            "conditions": {"model": "cnn4-cifar", "init": init, "input_scaling": "mean" if init == "gaussian" else "standardise",
                           "lrs": [0.01], "target_train_error": 25.0, "epochs_cap": 6,
                           "data": {"train_size": 300, "test_size": 100, "description": "CIFAR-10"}},
            "runs": [run("relu", relu_epochs), run("tanh", tanh_epochs)], "preset": "smoke",
            "command": "convnet-lab experiment relu-tanh --preset smoke",
            "summary": {"relu": {"lr": 0.01, "epochs_to_target": relu_epochs},
                        "tanh": {"lr": 0.01, "epochs_to_target": tanh_epochs}, "ratio_epochs": ratio, "ratio_seconds": ratio}}


def test_experiments_are_plotted_beside_the_paper(experiments):
    experiments.mkdir()
    (experiments / "relu-vs-tanh.json").write_text(json.dumps(_race(2, 6)))
    runs = [{"label": f"dropout={d} aug={a}", "curve": _curve([50, 30]), "dropout": d} for d in (0.5, 0.0) for a in ("on", "off")]
    (experiments / "dropout-augmentation.json").write_text(json.dumps({
        "experiment": "dropout-augmentation", "conditions": {}, "runs": runs,
        "summary": {r["label"]: {"final_test_error": 35.0, "best_test_error": 35.0, "final_train_error_clean": 29.0,
                                 "gap": 6.0, "ten_patch_test_error": None} for r in runs}}))
    (experiments / "broken.json").write_text("{not json")
    at = ok(AppTest.from_file(PAGE, default_timeout=TIMEOUT).run())
    assert len(at.get("plotly_chart")) == 3  # ReLU vs tanh, dropout test error, dropout training error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Measured: tanh ÷ ReLU epochs"] == "3.00×" and metrics["Paper (Fig. 1): tanh ÷ ReLU"] == "≈ 6×"
    assert metrics["ReLU to 25 %"] == "2 epochs" and metrics["tanh to 25 %"] == "6 epochs"
    assert "broken.json" in texts(at) and "convnet-lab experiment" not in [c.value for c in at.info]
    summary = next(d for d in at.dataframe if "setting" in d.value.columns and "gap (test − train)" in d.value.columns).value
    assert len(summary) == 4 and set(summary["gap (test − train)"]) == {6.0}
    conditions = next(d for d in at.dataframe if list(d.value.columns) == ["setting", "value"]).value.set_index("setting")
    assert conditions.loc["initialisation", "value"] == "gaussian" and "300 training / 100 test images" in \
        conditions.loc["data", "value"]


def test_the_page_opens_on_the_papers_conditions_and_a_finished_race_and_says_when_one_side_never_arrived(experiments):
    experiments.mkdir()
    (experiments / "a-default-init.json").write_text(json.dumps(_race(2, 3, init="default", finished="2026-03-01")))
    (experiments / "b-unfinished.json").write_text(json.dumps(_race(4, None, finished="2026-02-01")))
    (experiments / "c-paper.json").write_text(json.dumps(_race(4, 9, finished="2026-01-01")))
    results, skipped = read_results(experiments)
    assert [r["file"] for r in results] == ["c-paper.json", "b-unfinished.json", "a-default-init.json"] and not skipped
    assert headline_key(results[0]) < headline_key(results[1]) < headline_key(results[2])
    at = ok(AppTest.from_file(PAGE, default_timeout=TIMEOUT).run())
    picker = at.selectbox(key="relu_tanh_file")
    assert picker.value == "c-paper.json" and picker.options == ["c-paper.json", "b-unfinished.json", "a-default-init.json"]
    assert {m.label: m.value for m in at.metric}["Measured: tanh ÷ ReLU epochs"] == "2.25×"
    picker.select("b-unfinished.json").run()
    ok(at)
    assert {m.label: m.value for m in at.metric}["Measured: tanh ÷ ReLU epochs"] == "n/a"
    assert any("tanh never reached 25 % training error within 6 epochs" in w.value for w in at.warning)


def test_the_projects_measured_experiments_show_until_you_have_your_own():
    """An empty experiments folder: the page plots the results shipped in training/results/ and says so."""
    at = ok(AppTest.from_file(PAGE, default_timeout=TIMEOUT).run())
    assert any("shipped in `training/results`" in c.value for c in at.caption)
    metrics = {m.label: m.value for m in at.metric}
    assert "ReLU to 25 %" in metrics and "tanh to 25 %" in metrics
    assert "convnet-lab experiment relu-tanh" in texts(at)  # how the shown results were made
    assert len(at.get("plotly_chart")) == 3  # ReLU vs tanh, dropout test error, dropout training error


def test_results_files_of_the_wrong_shape_get_one_line_each_and_the_page_keeps_working(experiments):
    experiments.mkdir()
    (experiments / "relu-vs-tanh.json").write_text(json.dumps(  # the right keys, the wrong shapes
        {"experiment": "relu-vs-tanh", "conditions": ["cnn4-cifar"], "runs": [{"activation": "relu"}], "summary": {}}))
    (experiments / "dropout-augmentation.json").write_text(json.dumps(
        {"experiment": "dropout-augmentation", "runs": 5, "summary": "none"}))
    at = ok(AppTest.from_file(PAGE, default_timeout=TIMEOUT).run())
    warnings = [w.value for w in at.warning]
    for name in ("relu-vs-tanh.json", "dropout-augmentation.json"):
        assert sum(f"`{name}` cannot be shown: it is not a results file" in w for w in warnings) == 1, warnings
    assert all("\n" not in w for w in warnings)
