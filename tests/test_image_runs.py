"""Colour-image models through the one training loop and the background worker, on real CIFAR-10 images."""

import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

import convnets
from training.cli import main
from training.images import cifar_sample
from training.loop import TrainConfig, check_config, lr_at, train
from training.store import RunStore
from training.worker import serve

torch.set_num_threads(1)  # the same arithmetic in this process and in the worker subprocesses

SMALL = {"width": 0.25, "hidden": 64, "lrn": False}  # alexnet-cifar's layout at a size a test can train


def _quiet(*_args):
    pass


@pytest.fixture(scope="module")
def cifar_folder(tmp_path_factory) -> str:
    """A few hundred real CIFAR-10 images (from the shipped sample) as an image folder: ROOT/{train,test}/<class>/*.png."""
    data = cifar_sample()
    root = tmp_path_factory.mktemp("cifar-mini")
    for split, x, y, per_class in (("train", data.train_x, data.train_y, 30), ("test", data.test_x, data.test_y, 10)):
        for c, name in enumerate(data.classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i, index in enumerate((y == c).nonzero().squeeze(1)[:per_class].tolist()):
                Image.fromarray(x[index].permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.png")
    return str(root)


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_image_run_in_the_worker_killed_and_resumed_to_the_uninterrupted_weights(tmp_path, cifar_folder):
    runs = tmp_path / "runs"
    store = RunStore(runs)
    # crops, reflections and PCA colour draw from the data-order generator, dropout from torch's: both must resume exactly
    settings = {"model": "alexnet-cifar", "options": SMALL, "epochs": 4, "batch_size": 25, "seed": 3, "lr": 0.01}
    run_id = store.submit(TrainConfig(data=cifar_folder, **settings).resolved().card())
    worker = subprocess.Popen([sys.executable, "-m", "training.cli", "worker", "--runs", str(runs), "--once",
                               "--threads", "1", "--report-every", "0.2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        checkpoint = store.run_dir(run_id) / "last.pt"
        _wait(lambda: checkpoint.exists() or worker.poll() is not None, 180, "the first checkpoint")
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.kill()
        stderr = worker.communicate()[1].decode()
    assert worker.returncode == -signal.SIGKILL, stderr
    assert 1 <= convnets.read_checkpoint(checkpoint)["epoch"] < 4 and store.get(run_id).state == "running"

    assert serve(runs, once=True, report_every=0.2, log=_quiet) == 1  # reclaimed and resumed from last.pt
    run = store.get(run_id)
    assert run.state == "done", run.error
    assert [m.epoch for m in store.metrics(run_id, "test_error")] == [1.0, 2.0, 3.0, 4.0]
    payload = convnets.read_checkpoint(store.run_dir(run_id) / "model.pt")
    card = payload["card"]
    assert card["data"]["description"].startswith("CIFAR-10, 300 training images") and str(tmp_path) not in str(card)
    assert card["colour_pca"]["eigenvalues"][0] > card["colour_pca"]["eigenvalues"][2] > 0
    assert 0 <= card["test_error_flip"] <= 100

    model, uninterrupted = train(TrainConfig(data=cifar_folder, **settings), progress=False, log=_quiet)
    gap = max((payload["state_dict"][k].float() - v.float()).abs().max().item() for k, v in model.state_dict().items())
    assert gap <= 1e-6, f"resumed vs uninterrupted: max |weight difference| = {gap:.3g}"
    assert card["test_error"] == pytest.approx(uninterrupted["test_error"], abs=1e-9)


def test_an_image_model_learns_through_the_loop(tmp_path, cifar_folder):
    """Real images through the loop in bf16 on a CPU: 300 images are learned (training error far below chance, 90 %)."""
    config = TrainConfig(model="alexnet-cifar", options={**SMALL, "dropout": 0.0}, data=cifar_folder, epochs=12,
                         batch_size=20, lr=0.02, precision="bf16", augment=False, label_smoothing=0.0, seed=0)
    model, card = train(config, out=tmp_path / "run", progress=False, log=_quiet)
    errors = [e["train_error"] for e in card["epochs"]]
    assert errors[0] > 80 and errors[-1] < 40, errors  # measured: 89 % after the first epoch, 15 % after the twelfth
    assert (tmp_path / "run" / "model.pt").is_file() and card["config"]["precision"] == "bf16"


@pytest.mark.parametrize("argv, message", [
    (["--model", "alexnet-cifar", "--data", "sample"], "'alexnet-cifar' takes colour images, and 'sample' is digit data"),
    (["--model", "alexnet-cifar", "--data", "mnist.npz"], "is digit data"),
    (["--model", "lenet5", "--data", "cifar10"], "'lenet5' takes digits, and 'cifar10' is colour image data"),
    (["--model", "alexnet-cifar", "--data", "/nonexistent/cifar"], "does not exist"),
    (["--model", "alexnet-cifar", "--distort"], "use --augment"),
    (["--model", "lenet5", "--augment"], "use --distort"),
    (["--model", "lenet5", "--label-smoothing", "0.1"], "label smoothing needs a softmax head"),
    (["--model", "alexnet-cifar", "--warmup", "50"], "warm-up must be at least 0 and shorter than the run"),
    (["--model", "alexnet-cifar", "--lr", "inf"], "learning rate must be"),
    (["--model", "alexnet-cifar", "--precision", "fp16", "--device", "cpu"], "needs a cuda device"),
])
def test_mismatched_data_and_settings_are_refused_at_submit(capsys, tmp_path, argv, message):
    assert main(["submit", *argv, "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists() or RunStore(tmp_path / "runs").runs() == []


def test_a_folder_that_is_not_an_image_folder_is_refused_before_queueing(capsys, tmp_path):
    (tmp_path / "notcifar").mkdir()
    (tmp_path / "notcifar" / "readme.txt").write_text("no class folders here")
    assert main(["submit", "--model", "alexnet-cifar", "--data", str(tmp_path / "notcifar"), "--runs",
                 str(tmp_path / "runs")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or RunStore(tmp_path / "runs").runs() == []


def test_the_image_recipe_and_its_schedule():
    config = check_config(TrainConfig(model="alexnet-cifar", data="cifar10"))
    assert (config.optimizer, config.nesterov, config.schedule, config.augment) == ("sgd", True, "linear", True)
    assert config.label_smoothing == 0.1 and config.warmup == 2.0
    assert lr_at(config, 0) == pytest.approx(config.lr / 10)  # warm-up from lr/10 ...
    assert lr_at(config, config.warmup) == pytest.approx(config.lr)  # ... to the peak
    assert lr_at(config, (config.warmup + config.epochs) / 2) == pytest.approx(config.lr / 2)  # a straight line ...
    assert lr_at(config, config.epochs) == pytest.approx(0.0, abs=1e-12)  # ... to zero
    short = TrainConfig(model="alexnet-cifar", data="cifar10", epochs=5).resolved()
    assert short.warmup == 0.5  # a short run keeps its warm-up to a tenth of it
    digits = TrainConfig(model="lenet5-modern", epochs=10).resolved()  # cosine to lr/100, no warm-up, as before
    assert (digits.warmup, digits.schedule, digits.label_smoothing, digits.weight_decay) == (0.0, "cosine", 0.0, 0.0)
    assert lr_at(digits, 10) == pytest.approx(digits.lr / 100) and lr_at(digits, 0) == pytest.approx(digits.lr)
    faithful = TrainConfig(model="lenet5").resolved()  # one epoch of warm-up, then cosine, in NHWC
    assert (faithful.warmup, faithful.schedule, faithful.batch_size, faithful.channels_last) == (1.0, "cosine", 128, True)
    assert lr_at(faithful, 0) == pytest.approx(faithful.lr / 10) and lr_at(faithful, 1) == pytest.approx(faithful.lr)
    assert TrainConfig(model="lenet5", epochs=5).resolved().warmup == 0.5  # at most a tenth of a short run


def test_export_ships_float16_weights_with_the_test_error_measured_again(tmp_path, cifar_folder, capsys):
    config = TrainConfig(model="alexnet-cifar", options=SMALL, data=cifar_folder, epochs=1, batch_size=50, seed=0)
    train(config, out=tmp_path / "run", progress=False, log=_quiet)
    out = tmp_path / "shipped.pt"
    argv = ["export", str(tmp_path / "run" / "model.pt"), str(out), "--data-name", "cifar10", "--threads", "1"]
    assert main(argv) == 0
    assert "test error" in capsys.readouterr().out
    assert main(argv) == 2 and "--replace" in capsys.readouterr().err  # never overwritten by accident
    payload = convnets.read_checkpoint(out)
    card = payload["card"]
    assert all(v.dtype == torch.float16 for v in payload["state_dict"].values() if v.is_floating_point())
    assert out.stat().st_size < 0.6 * (tmp_path / "run" / "model.pt").stat().st_size
    assert card["weights_dtype"] == "float16" and abs(card["test_error"] - card["test_error_float32"]) <= 2.0
    assert card["config"]["data"] == "cifar10" and cifar_folder not in str(card)  # no local path on a shipped card
    model, loaded = convnets.load_pretrained("alexnet-cifar", weights_path=out)
    assert loaded["test_error"] == card["test_error"] and next(model.parameters()).dtype == torch.float32
