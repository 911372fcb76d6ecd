"""The dashboard survives any bad run folder: a done run whose model.pt is garbage, another model's, oversized,
lying about its options or missing what the pages read is left out of the picker with its reason in sight, and
every page keeps working."""

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch

if importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("plotly") is None:
    pytest.skip("dashboard dependencies not installed", allow_module_level=True)
from streamlit.testing.v1 import AppTest  # noqa: E402

import convnets  # noqa: E402
from training.loop import TrainConfig, train  # noqa: E402
from training.store import RunStore  # noqa: E402

torch.set_num_threads(1)
DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard"
TIMEOUT = 120
TINY = {"model": "lenet5-modern", "data": "sample", "epochs": 1, "train_limit": 200, "batch_size": 32}
PAGES = ["views/draw.py", "views/filters.py", "views/feature_maps.py", "views/invariance.py", "views/misclassified.py",
         "views/similarity.py", "views/unusual.py", "views/train_runs.py", "views/architecture.py"]


@pytest.fixture(scope="module")
def good_checkpoint(sample_data, tmp_path_factory) -> Path:
    """A real model.pt of a tiny finished lenet5-modern run."""
    out = tmp_path_factory.mktemp("good")
    train(TrainConfig(**TINY), out=out, data=sample_data, progress=False, log=lambda _line: None, recipe="tiny")
    return out / "model.pt"


@pytest.fixture
def bad_runs(tmp_path, monkeypatch, good_checkpoint, done_run) -> dict:
    """A runs folder with one usable run and six unusable ones: run id -> expected reason (None: usable)."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("CONVNET_LAB_RUNS", str(runs))
    monkeypatch.setenv("CONVNET_LAB_EXPERIMENTS", str(tmp_path / "experiments"))
    monkeypatch.setenv("CONVNET_LAB_NO_WORKER", "1")
    monkeypatch.syspath_prepend(str(DASHBOARD))
    good = good_checkpoint.read_bytes()
    payload = convnets.read_checkpoint(good_checkpoint)
    expected = {}

    def _done_run(store: RunStore, model: str) -> tuple[int, Path]:
        return done_run(store, {**TrainConfig(**TINY).resolved().card(), "model": model})

    with RunStore(runs) as store:
        run_id, path = _done_run(store, "lenet5-modern")
        shutil.copy(good_checkpoint, path)
        expected[run_id] = None
        run_id, path = _done_run(store, "lenet5-modern")
        path.write_bytes(good[:30] + b"\xff" * 40 + good[70:4000])  # garbled header, truncated
        expected[run_id] = "not a readable checkpoint"
        run_id, path = _done_run(store, "lenet5")  # the store says lenet5, the file holds lenet5-modern
        shutil.copy(good_checkpoint, path)
        expected[run_id] = "holds weights for 'lenet5-modern', but the run trained 'lenet5'"
        run_id, path = _done_run(store, "lenet5-modern")
        with open(path, "wb") as f:  # 300 MB, sparse: never read
            f.truncate(300 * 2**20)
        expected[run_id] = "model.pt is 300 MB, over the 256 MB"
        run_id, path = _done_run(store, "lenet5-modern")
        torch.save({**payload, "options": {"batch_norm": False}}, path)  # options that do not fit the weights
        expected[run_id] = "does not fit LeNet5Modern"
        run_id, path = _done_run(store, "lenet5-modern")
        torch.save({**payload, "card": {"test_error": 1.0}}, path)  # what the pages read is missing
        expected[run_id] = "card does not say what the model was trained on"
        run_id, path = _done_run(store, "lenet5-modern")
        torch.save({**payload, "state_dict": {"x": 1.0}}, path)  # not tensors
        expected[run_id] = "holds something other than named tensors"
    return expected


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_bad_run_folders_are_listed_as_unusable_with_their_reason(bad_runs):
    from resources import finished_runs

    runs = finished_runs()
    usable = [k for k, why in bad_runs.items() if why is None]
    assert list(runs.labels) == [f"run:{k}" for k in usable]
    assert set(runs.skipped) == set(bad_runs) - set(usable)
    for run_id, reason in runs.skipped.items():
        assert bad_runs[run_id] in reason and "\n" not in reason and "/" not in reason  # one line, no long paths


def test_every_page_works_beside_bad_run_folders(bad_runs):
    usable = next(k for k, why in bad_runs.items() if why is None)
    broken = max(bad_runs)
    at = AppTest.from_file(str(DASHBOARD / "app.py"), default_timeout=TIMEOUT)
    at.session_state["model_name"] = f"run:{broken}"  # picked earlier, unusable now: back to lenet5
    ok(at.run())
    assert at.sidebar.selectbox(key="model_name").value == "lenet5"
    note = next(c.value for c in at.sidebar.caption if c.value.startswith("Skipped"))
    assert note.startswith(f"Skipped {len(bad_runs) - 1} finished run(s) that cannot be used")
    assert f"run {broken}: " in note and bad_runs[broken] in note  # the reason in sight, not on hover
    at.sidebar.selectbox(key="model_name").set_value(f"run:{usable}")
    for page in PAGES:
        at.switch_page(page).run()
        ok(at)
        assert not at.error, (page, [e.value for e in at.error])
        assert at.sidebar.selectbox(key="model_name").value == f"run:{usable}"


def test_the_training_page_shows_a_damaged_row_and_a_malformed_results_file_as_unusable(tmp_path, monkeypatch):
    """A run row whose config is not JSON and results files of the wrong shape: the Training page renders and names the
    row unusable with its reason, the Paper experiments page says which file cannot be shown; the store is left as it
    was."""
    import json

    runs, experiments = tmp_path / "runs", tmp_path / "experiments"
    monkeypatch.setenv("CONVNET_LAB_RUNS", str(runs))
    monkeypatch.setenv("CONVNET_LAB_EXPERIMENTS", str(experiments))
    monkeypatch.setenv("CONVNET_LAB_NO_WORKER", "1")
    monkeypatch.syspath_prepend(str(DASHBOARD))
    with RunStore(runs) as store:
        good = store.submit(TrainConfig(**TINY).resolved().card())
        damaged = store.submit(TrainConfig(**TINY).resolved().card())
        store.db.execute("UPDATE runs SET config = '{not json' WHERE id = ?", (damaged,))
        before = [(r.id, r.state, r.progress) for r in store.runs()]
    experiments.mkdir()
    (experiments / "relu-vs-tanh.json").write_text(json.dumps(  # the right keys, the wrong shapes
        {"experiment": "relu-vs-tanh", "conditions": ["cnn4-cifar"], "runs": [{"activation": "relu"}], "summary": {}}))
    (experiments / "dropout-augmentation.json").write_text(json.dumps(
        {"experiment": "dropout-augmentation", "runs": 5, "summary": "none"}))
    at = ok(AppTest.from_file(str(DASHBOARD / "views" / "train_runs.py"), default_timeout=TIMEOUT).run())
    rows = next(d for d in at.dataframe if "status" in d.value.columns).value.set_index("id")
    assert rows.loc[good, "status"] == "queued" and rows.loc[good, "note"] == ""
    assert rows.loc[damaged, "status"] == "unusable"
    assert rows.loc[damaged, "note"] == "unusable: its config in the run store is not a JSON object (a damaged row); " \
                                        "resubmit it"
    at = ok(AppTest.from_file(str(DASHBOARD / "views" / "experiments.py"), default_timeout=TIMEOUT).run())  # their page
    warnings = [w.value for w in at.warning]
    for name in ("relu-vs-tanh.json", "dropout-augmentation.json"):
        assert sum(f"`{name}` cannot be shown: it is not a results file" in w for w in warnings) == 1, warnings
    assert all("\n" not in w for w in warnings)
    with RunStore(runs) as store:
        assert [(r.id, r.state, r.progress) for r in store.runs()] == before
