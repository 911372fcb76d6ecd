"""The Misclassified page of a poor model: hundreds of mistakes, shown 40 to a page with a page picker and the total.

The poor model is an untrained lenet5-modern, saved as the model.pt of a finished run (the card of a real tiny run).
"""

import importlib.util
from pathlib import Path

import numpy as np
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
PER_PAGE = 40


@pytest.fixture
def poor_run(sample_data, tmp_path, monkeypatch, done_run) -> tuple[str, Path]:
    """A finished run whose model.pt holds an untrained lenet5-modern: its picker name and its model.pt."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("CONVNET_LAB_RUNS", str(runs))
    monkeypatch.setenv("CONVNET_LAB_NO_WORKER", "1")
    monkeypatch.syspath_prepend(str(DASHBOARD))
    train(TrainConfig(**TINY), out=tmp_path / "tiny", data=sample_data, progress=False, log=lambda _line: None,
          recipe="tiny")
    payload = convnets.read_checkpoint(tmp_path / "tiny" / "model.pt")
    torch.manual_seed(0)
    untrained = convnets.get_model("lenet5-modern", **payload.get("options", {}))
    with RunStore(runs) as store:
        run_id, path = done_run(store, TrainConfig(**TINY).resolved().card())
        torch.save({**payload, "state_dict": untrained.state_dict()}, path)
    return f"run:{run_id}", path


def gallery(at: AppTest) -> list[int]:
    """The held-out indices of the gallery's tiles, in order (captions '#index: true → predicted, confidence')."""
    captions = [image.proto.imgs[0].caption for image in at.get("image")]
    return [int(c.split(":")[0][1:]) for c in captions if c.startswith("#")]


def mistakes(path: Path, sample_data) -> np.ndarray:
    """Indices of the held-out digits the checkpoint's model gets wrong, counted independently of the dashboard."""
    from training.loop import predict

    model = convnets.model_from_checkpoint(convnets.read_checkpoint(path), str(path)).eval()
    with torch.no_grad():
        predictions = predict(model, sample_data.test_x)
    return np.flatnonzero((predictions != sample_data.test_y).numpy())


def test_a_poor_models_mistakes_come_40_to_a_page_with_the_total_and_a_page_picker(poor_run, sample_data):
    name, path = poor_run
    at = AppTest.from_file(str(DASHBOARD / "app.py"), default_timeout=TIMEOUT)
    at.session_state["model_name"] = name
    at.run()
    at.switch_page("views/misclassified.py").run()
    assert not at.exception, [e.message for e in at.exception]
    wrong = mistakes(path, sample_data)
    assert len(wrong) > 3 * PER_PAGE  # a poor model: several pages
    pages = -(-len(wrong) // PER_PAGE)
    assert any(s.value.startswith(f"Gallery: {len(wrong)} misclassified") for s in at.subheader)
    picker = at.number_input(key="misclassified_page")
    assert picker.label == f"Page (of {pages})" and picker.value == 1 and picker.max == pages
    assert gallery(at) == list(wrong[:PER_PAGE])
    assert len([b for b in at.button if b.key and b.key.startswith("use_")]) == PER_PAGE
    assert any(f"Digits 1–{PER_PAGE} of {len(wrong)}" in c.value for c in at.caption)

    picker.set_value(3).run()
    assert not at.exception
    assert gallery(at) == list(wrong[2 * PER_PAGE:3 * PER_PAGE])
    picker = at.number_input(key="misclassified_page").set_value(pages).run()
    assert gallery(at) == list(wrong[(pages - 1) * PER_PAGE:])  # the last page holds the rest

    labels = sample_data.test_y.numpy()
    cls = int(np.bincount(labels[wrong], minlength=10).argmax())
    at.selectbox(key="misclassified_true").select(cls).run()  # a new filter starts at its first page
    assert not at.exception
    of_class = [int(i) for i in wrong if labels[i] == cls]
    assert gallery(at) == of_class[:PER_PAGE]
    if len(of_class) > PER_PAGE:
        assert at.number_input(key="misclassified_page").value == 1
    else:
        assert not any(n.key == "misclassified_page" for n in at.number_input)
