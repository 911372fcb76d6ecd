"""The background trainer on real digits: queue, failures, cancel, kill -9 and resume, background start, CLI."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

import convnets
from training.augment import Distortion
from training.cli import main
from training.loop import Stopped, TrainConfig, train
from training.store import RunStore
from training.worker import PID_FILE, background_pid, ensure_worker, serve

torch.set_num_threads(1)  # the same arithmetic in this process and in the worker subprocesses


def _quiet(*_args):
    pass


@pytest.fixture(scope="module")
def digits(sample_data, tmp_path_factory) -> str:
    """Real digits as an .npz (fast to load in every worker), shuffled: the sample is sorted by class."""
    pick = torch.randperm(len(sample_data.train_y), generator=torch.Generator().manual_seed(0))[:1200]
    path = tmp_path_factory.mktemp("digits") / "digits.npz"
    np.savez(path, x_train=sample_data.train_x[pick].numpy(), y_train=sample_data.train_y[pick].numpy(),
             x_test=sample_data.test_x[::2].numpy(), y_test=sample_data.test_y[::2].numpy())
    return str(path)


def _submit(store: RunStore, data: str, **settings) -> int:
    return store.submit(TrainConfig(data=data, **settings).resolved().card())


def _wait(condition, timeout: float, what: str, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_worker_takes_runs_in_order_and_survives_failing_ones(tmp_path, digits):
    runs = tmp_path / "runs"
    store = RunStore(runs)
    first = _submit(store, digits, model="lenet5-modern", epochs=2, train_limit=512, batch_size=32)
    npz = tmp_path / "digits.npz"
    np.savez(npz, x_train=np.zeros((8, 28, 28), np.uint8), y_train=np.zeros(8, np.int64),
             x_test=np.zeros((4, 28, 28), np.uint8), y_test=np.zeros(4, np.int64))
    assert main(["submit", "--data", str(npz), "--epochs", "1", "--runs", str(runs)]) == 0
    npz.unlink()  # gone by the time the worker gets to it
    corrupt = _submit(store, digits, model="lenet5", epochs=1, train_limit=64)
    store.run_dir(corrupt).mkdir(parents=True)
    (store.run_dir(corrupt) / "last.pt").write_bytes(b"\x00" * 64)
    last = _submit(store, digits, model="lenet5", epochs=1, train_limit=128, batch_size=32)

    assert serve(runs, once=True, report_every=0.01, log=_quiet) == 4
    states = store.runs()
    assert [r.state for r in states] == ["done", "failed", "failed", "done"]
    assert [r.id for r in sorted(states, key=lambda r: r.started)] == [first, 2, corrupt, last]
    assert "Traceback" in states[1].error and "does not exist" in states[1].error
    assert "truncated or corrupt" in states[2].error
    assert (store.run_dir(corrupt) / "last.pt").read_bytes() == b"\x00" * 64  # left as it was

    run = store.get(first)
    assert run.device == "cpu" and run.progress == 2.0 and run.ended >= run.started
    test_errors = store.metrics(first, "test_error")
    assert [m.epoch for m in test_errors] == [1.0, 2.0] and test_errors[-1].value < 50  # it learns (chance: 90 %)
    live = store.metrics(first, "loss")
    assert live and all(a.step < b.step for a, b in zip(live, live[1:], strict=False))  # streamed within epochs
    assert {"train_error", "images_per_s", "lr", "epoch_seconds"} <= set(store.latest(first))
    payload = convnets.read_checkpoint(store.run_dir(first) / "model.pt")
    assert payload["card"]["test_error"] == pytest.approx(test_errors[-1].value)
    assert [e["epoch"] for e in payload["card"]["epochs"]] == [1, 2]


def test_cancel_stops_a_running_run_within_seconds(tmp_path, digits):
    store = RunStore(tmp_path)
    long_run = _submit(store, digits, model="lenet5-modern", epochs=500, train_limit=256, batch_size=32)
    next_run = _submit(store, digits, model="lenet5", epochs=1, train_limit=64)
    worker = threading.Thread(target=serve, args=(tmp_path,), kwargs={"once": True, "report_every": 0.1, "log": _quiet})
    worker.start()
    try:
        _wait(lambda: store.metrics(long_run, "loss"), 180, "live metrics of the long run")
        cancelled_at = time.time()
        assert main(["cancel", str(long_run), "--runs", str(tmp_path)]) == 0
        _wait(lambda: store.get(next_run).started, 30, "the worker to move on")
        assert store.get(next_run).started - cancelled_at < 5.0
    finally:
        worker.join(timeout=120)
    assert not worker.is_alive()
    assert store.get(long_run).state == "cancelled" and store.get(long_run).progress < 500
    assert store.get(next_run).state == "done"


def test_worker_killed_mid_run_resumes_to_the_uninterrupted_result(tmp_path, digits):
    runs = tmp_path / "runs"
    store = RunStore(runs)
    # distortions draw from the data-order generator, dropout from torch's: both RNGs must resume exactly
    settings = {"model": "lenet5-modern", "options": {"dropout": 0.2}, "epochs": 5, "train_limit": 800,
                "batch_size": 32, "seed": 1, "distort": Distortion()}
    run_id = _submit(store, digits, **settings)
    worker = subprocess.Popen([sys.executable, "-m", "training.cli", "worker", "--runs", str(runs), "--once",
                               "--threads", "1", "--report-every", "0.2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        checkpoint = store.run_dir(run_id) / "last.pt"
        _wait(lambda: checkpoint.exists() or worker.poll() is not None, 120, "the first checkpoint")
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.kill()
        stderr = worker.communicate()[1].decode()
    assert worker.returncode == -signal.SIGKILL, stderr
    before = convnets.read_checkpoint(store.run_dir(run_id) / "last.pt")["epoch"]
    assert store.get(run_id).state == "running" and 1 <= before < 5  # killed mid-run, its run still marked running

    assert serve(runs, once=True, report_every=0.2, log=_quiet) == 1  # pid dead on this host: reclaimed, resumed
    run = store.get(run_id)
    assert run.state == "done" and run.attempts == 2
    assert [m.epoch for m in store.metrics(run_id, "test_error")] == [1.0, 2.0, 3.0, 4.0, 5.0]
    steps = [m.step for m in store.metrics(run_id, "loss")]
    assert all(a < b for a, b in zip(steps, steps[1:], strict=False))  # no repeated stretch of the curve
    payload = convnets.read_checkpoint(store.run_dir(run_id) / "model.pt")
    assert [e["epoch"] for e in payload["card"]["epochs"]] == [1, 2, 3, 4, 5]

    model, card = train(TrainConfig(data=digits, **settings), progress=False, log=_quiet)
    resumed = payload["state_dict"]
    gap = max((resumed[k].float() - v.float()).abs().max().item() for k, v in model.state_dict().items())
    print(f"resumed vs uninterrupted: max |weight difference| = {gap:.3g}")
    assert gap <= 1e-6
    assert payload["card"]["test_error"] == pytest.approx(card["test_error"], abs=1e-9)


def test_background_worker_cli_status_and_sigterm(tmp_path, capsys, digits):
    runs = tmp_path / "runs"
    assert main(["worker", "--background", "--runs", str(runs), "--threads", "1"]) == 0
    pid = int((runs / PID_FILE).read_text())
    started = {pid}
    try:
        started.add(ensure_worker(runs))
        assert started == {pid} and background_pid(runs) == pid  # one worker, not two
        assert main(["submit", "--model", "lenet5", "--data", digits, "--epochs", "1", "--limit", "64",
                     "--runs", str(runs)]) == 0
        store = RunStore(runs)
        _wait(lambda: store.get(1).state == "done", 120, "the background worker to train run 1", every=0.2)
        capsys.readouterr()
        assert main(["status", "--runs", str(runs)]) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0].split()[:3] == ["id", "state", "model"] and table[1].split()[:3] == ["1", "done", "lenet5"]
        assert main(["status", "1", "--runs", str(runs)]) == 0
        assert "test err" in capsys.readouterr().out

        assert main(["submit", "--model", "lenet5-modern", "--data", digits, "--epochs", "500", "--limit", "128",
                     "--runs", str(runs)]) == 0
        _wait(lambda: store.get(2).state == "running", 60, "run 2 to start")
        os.kill(pid, signal.SIGTERM)  # a polite stop puts the run back in the queue
        _wait(lambda: os.waitpid(pid, os.WNOHANG)[0] == pid, 30, "the worker to exit")
        run = store.get(2)
        assert run.state == "queued" and run.pid is None
        assert background_pid(runs) is None
        assert "back in the queue" in (runs / "worker.log").read_text()
    finally:
        for started_pid in started:  # this test's own workers (its children), whatever happened
            with contextlib.suppress(ChildProcessError):  # already reaped
                if os.waitpid(started_pid, os.WNOHANG)[0] == 0:
                    os.kill(started_pid, signal.SIGKILL)
                    os.waitpid(started_pid, 0)


@pytest.mark.parametrize("argv, message", [
    (["submit", "--model", "lenet7"], "unknown model 'lenet7'"),
    (["submit", "--data", "mnsit"], "unknown data source 'mnsit'"),
    (["submit", "--data", "/nonexistent/mnist.npz"], "does not exist"),
    (["submit", "--epochs", "-1"], "epochs must be at least 1"),
    (["submit", "--batch-size", "0"], "batch size must be at least 1"),
    (["submit", "--option", "width=2"], "no option width"),
    (["submit", "--limit", "0"], "limit must be at least 1"),
    (["cancel", "42"], "no run 42 in"),
    (["status", "42"], "no run 42 in"),
    (["worker", "--poll", "0"], "--poll must be positive"),
])
def test_cli_bad_input_is_one_line_and_non_zero(capsys, tmp_path, argv, message):
    assert main([*argv, "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists() or RunStore(tmp_path / "runs").runs() == []


def test_cli_unusable_runs_folders(capsys, tmp_path):
    (tmp_path / "runs.sqlite").write_bytes(b"garbage" * 50)
    for argv in (["status"], ["submit", "--data", "sample"], ["worker", "--once"], ["cancel", "1"]):
        assert main([*argv, "--runs", str(tmp_path)]) == 2
        assert "is not a readable run store" in capsys.readouterr().err
    assert (tmp_path / "runs.sqlite").read_bytes() == b"garbage" * 50
    assert main(["status", "--runs", str(tmp_path / "runs.sqlite")]) == 2
    assert "is a file" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["submit", "worker", "status", "cancel"])
def test_cli_help_for_the_trainer_subcommands(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0 and "usage: convnet-lab" in capsys.readouterr().out


def test_a_stopped_run_resumes_with_train_resume(tmp_path, capsys, digits):
    out = tmp_path / "run"
    config = TrainConfig(model="lenet5", data=digits, epochs=3, train_limit=96, batch_size=16, seed=2)
    with pytest.raises(Stopped):  # stop after the first epoch, as a cancel would
        train(config, out=out, progress=False, log=_quiet,
              monitor=lambda event: event["event"] == "epoch")
    assert convnets.read_checkpoint(out / "last.pt")["epoch"] == 1 and not (out / "model.pt").exists()
    argv = ["train", "--model", "lenet5", "--data", digits, "--epochs", "3", "--limit", "96", "--batch-size", "16",
            "--seed", "2", "--out", str(out), "--quiet"]
    assert main(argv) == 2  # the folder holds a run: never overwritten without --resume
    assert main([*argv[:-3], "--seed", "3", *argv[-3:], "--resume"]) == 2  # nor continued with other settings
    assert "other settings (seed differ)" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0
    resumed = convnets.read_checkpoint(out / "model.pt")
    model, _ = train(config, progress=False, log=_quiet)
    assert [e["epoch"] for e in resumed["card"]["epochs"]] == [1, 2, 3]
    assert all(torch.equal(resumed["state_dict"][k], v) for k, v in model.state_dict().items())
