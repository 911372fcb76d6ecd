"""The Training page (run table, form, cancel) and finished runs in the sidebar's model picker (the paper's
experiments: tests/test_experiments_page.py).

Every test points the run store and the experiments folder at a temporary folder and sets
``CONVNET_LAB_NO_WORKER``, so no background worker is ever started; runs are trained in-process.
"""

import importlib.util
from pathlib import Path

import pytest
import torch

if importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("plotly") is None:
    pytest.skip("dashboard dependencies not installed", allow_module_level=True)
from streamlit.testing.v1 import AppTest  # noqa: E402

from training.loop import TrainConfig  # noqa: E402
from training.store import RunStore  # noqa: E402
from training.worker import background_pid, serve, submit  # noqa: E402

torch.set_num_threads(1)
DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard"
PAGE = str(DASHBOARD / "views" / "train_runs.py")
TIMEOUT = 120
TINY = {"model": "lenet5-modern", "data": "sample", "epochs": 1, "train_limit": 200, "batch_size": 32}


@pytest.fixture(autouse=True)
def runs(tmp_path, monkeypatch) -> Path:
    """A fresh runs folder and experiments folder; the app may not start workers."""
    monkeypatch.setenv("CONVNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CONVNET_LAB_EXPERIMENTS", str(tmp_path / "experiments"))
    monkeypatch.setenv("CONVNET_LAB_NO_WORKER", "1")
    monkeypatch.syspath_prepend(str(DASHBOARD))
    yield tmp_path / "runs"
    assert background_pid(tmp_path / "runs") is None  # no test leaves a worker behind


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.message for e in at.exception]
    return at


def table(at: AppTest):
    return next(d for d in at.dataframe if "status" in d.value.columns).value


def texts(at: AppTest) -> str:
    return " ".join(e.value for kind in ("markdown", "caption", "info", "warning", "error", "success", "code")
                    for e in at.get(kind))


def test_table_lists_a_submitted_run_and_cancel_ends_it(runs):
    run_id = submit(TrainConfig(**{**TINY, "options": {"activation": "tanh"}}), runs)
    at = ok(AppTest.from_file(PAGE, default_timeout=TIMEOUT).run())
    rows = table(at)
    assert list(rows["id"]) == [run_id] and list(rows["status"]) == ["queued"]
    assert rows["model"][0] == "lenet5-modern (tanh)" and rows["epoch"][0] == "0.0 / 1"
    assert "no worker is running" in texts(at)  # and none was started (the fixture checks)
    at.button(key=f"cancel_{run_id}").click().run()
    ok(at)
    assert list(table(at)["status"]) == ["cancelled"]
    assert not any(b.key == f"cancel_{run_id}" for b in at.button)
    with RunStore(runs) as store:
        assert store.get(run_id).state == "cancelled"


def test_form_queues_a_run_and_names_the_fix_for_bad_settings(runs):
    at = ok(AppTest.from_file(PAGE, default_timeout=TIMEOUT).run())
    assert "No runs yet" in texts(at)
    at.selectbox(key="train_model").select("lenet5").run()  # outside the form: the options follow the model at once
    ok(at)
    assert not any(s.key == "train_dropout" for s in at.slider) and not any(r.key == "train_activation" for r in at.radio)
    assert any(c.key == "train_distort" for c in at.checkbox) and not any(c.key == "train_lrn" for c in at.checkbox)
    at.selectbox(key="train_model").select("lenet5-modern").run()
    at.slider(key="train_dropout").set_value(0.5)
    at.radio(key="train_data").set_value("path")
    at.text_input(key="train_path").input(str(runs / "missing.npz"))
    next(b for b in at.button if b.label == "Queue run").click().run()
    ok(at)
    assert "does not exist" in at.error[0].value
    at.radio(key="train_data").set_value("sample")
    at.radio(key="train_activation").set_value("tanh")
    at.number_input(key="train_epochs").set_value(2)
    at.number_input(key="train_limit").set_value(300)
    next(b for b in at.button if b.label == "Queue run").click().run()
    ok(at)
    assert not at.error
    assert any(i.value.startswith("Run 1 queued: lenet5-modern (tanh, dropout 0.5) on sample.") and "starts no worker" in i.value
               for i in at.info)
    assert list(table(at)["status"]) == ["queued"]
    with RunStore(runs) as store:
        run = store.get(1)
    assert run.config["options"] == {"dropout": 0.5, "activation": "tanh"}
    assert run.config["epochs"] == 2 and run.config["train_limit"] == 300 and run.config["data"] == "sample"
    assert run.recipe.startswith("convnet-lab submit --model lenet5-modern") and "--limit 300" in run.recipe
    assert at.session_state["training_compare"] == [1]


def test_form_queues_an_alexnet_run_on_the_offline_cifar_sample_and_refuses_digit_data(runs):
    at = ok(AppTest.from_file(PAGE, default_timeout=TIMEOUT).run())
    at.selectbox(key="train_model").select("alexnet-cifar").run()  # outside the form: a rerun, the data follows
    assert at.radio(key="train_data").value == "cifar10-sample" and any(c.key == "train_lrn" for c in at.checkbox)
    at.radio(key="train_data").set_value("sample")  # digits for a colour-image model: refused, nothing queued
    next(b for b in at.button if b.label == "Queue run").click().run()
    ok(at)
    assert "Not queued" in at.error[0].value and "is digit data" in at.error[0].value
    with RunStore(runs) as store:
        assert store.runs() == []
    at.radio(key="train_data").set_value("cifar10-sample")
    at.checkbox(key="train_bf16").set_value(True)
    at.number_input(key="train_epochs").set_value(3)
    next(b for b in at.button if b.label == "Queue run").click().run()
    ok(at)
    assert not at.error
    with RunStore(runs) as store:
        run = store.get(1)
    assert run.config["model"] == "alexnet-cifar" and run.config["data"] == "cifar10-sample"
    assert run.config["options"] == {"lrn": False} and run.config["precision"] == "bf16"
    assert run.config["augment"] is True and run.config["exclude_sample"] is False and run.config["distort"] is None
    assert "--data cifar10-sample" in run.recipe and "--precision bf16" in run.recipe


def test_a_finished_run_joins_the_model_picker_and_feature_maps_show_it(runs, done_run):
    run_id = submit(TrainConfig(**TINY), runs)
    assert serve(runs, once=True, log=lambda _line: None) == 1
    with RunStore(runs) as store:
        assert store.get(run_id).state == "done"
        broken, path = done_run(store, TrainConfig(**TINY).resolved().card())  # done, but its checkpoint is garbage
        path.write_bytes(b"\x00" * 64)
        error = store.latest(run_id)["test_error"]

    at = AppTest.from_file(str(DASHBOARD / "app.py"), default_timeout=TIMEOUT)
    at.session_state["model_name"] = f"run:{run_id}"
    ok(at.run())
    picker = at.sidebar.selectbox(key="model_name")
    assert picker.options[:2] == ["lenet5 · faithful 1998", "lenet5-modern · ReLU, BN"]
    assert picker.options[2:] == [f"run {run_id} · lenet5-modern · {error:.2f} %"]  # the broken run is skipped
    assert picker.value == f"run:{run_id}"
    assert any("Skipped 1 finished run(s)" in c.value and f"run {broken}" in c.value for c in at.sidebar.caption)
    assert any(f"Test error **{error:.2f} %**" in c.value for c in at.sidebar.caption)
    at.switch_page("views/feature_maps.py").run()
    ok(at)
    assert at.title[0].value == "Feature maps"
    assert [s.value.split(":")[0] for s in at.subheader] == ["input", "C1", "S2", "C3", "S4", "C5", "F6", "output"]
    assert f"Model **run:{run_id}**" in at.markdown[0].value

    (runs / f"run-{run_id:05d}" / "model.pt").unlink()  # the picked run's checkpoint is gone: back to lenet5
    at = AppTest.from_file(str(DASHBOARD / "app.py"), default_timeout=TIMEOUT)
    at.session_state["model_name"] = f"run:{run_id}"
    ok(at.run())
    assert at.sidebar.selectbox(key="model_name").value == "lenet5"
