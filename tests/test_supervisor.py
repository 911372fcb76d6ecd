"""training.supervisor: who trains the runs, a worker started for waiting runs (never when forbidden), and stopped."""

import os
import socket
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from training import supervisor
from training.loop import TrainConfig
from training.store import STALE_AFTER, Owner, RunStore
from training.worker import submit

TINY = {"model": "lenet5-modern", "data": "sample", "epochs": 1, "train_limit": 200, "batch_size": 32}


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_autostart_follows_the_environment(monkeypatch):
    monkeypatch.delenv(supervisor.NO_WORKER, raising=False)
    assert supervisor.autostart()
    for value, allowed in (("0", True), ("", True), ("1", False), ("yes", False)):
        monkeypatch.setenv(supervisor.NO_WORKER, value)
        assert supervisor.autostart() is allowed
    assert 1 <= supervisor.default_threads() <= 4


def test_owner_alive_by_pid_here_and_by_heartbeat_elsewhere(tmp_path):
    submit(TrainConfig(**TINY), tmp_path)
    with RunStore(tmp_path) as store:
        run = store.claim(Owner.me())
    assert run.state == "running" and supervisor.owner_alive(run)  # this process, this host
    assert not supervisor.owner_alive(replace(run, pid=dead_pid()))
    now = time.time()
    far = replace(run, host=socket.gethostname() + "-elsewhere", heartbeat=now - 1)
    assert supervisor.owner_alive(far, now)
    assert not supervisor.owner_alive(replace(far, heartbeat=now - STALE_AFTER - 1), now)
    assert not supervisor.owner_alive(replace(run, state="queued"))


def test_supervise_reports_waiting_runs_and_starts_nothing_when_forbidden(tmp_path, monkeypatch):
    monkeypatch.setenv(supervisor.NO_WORKER, "1")
    assert supervisor.supervise(tmp_path, []) == supervisor.WorkerReport()
    submit(TrainConfig(**TINY), tmp_path)
    submit(TrainConfig(**TINY), tmp_path)
    with RunStore(tmp_path) as store:
        runs = store.runs()
        claimed = store.claim(Owner.me())
    report = supervisor.supervise(tmp_path, runs)
    assert report == supervisor.WorkerReport(waiting=2)
    assert supervisor.alive(tmp_path) is None and not (tmp_path / "worker.pid").exists()
    with RunStore(tmp_path) as store:  # one run trained by a live worker (this process): its owner, one waits
        report = supervisor.supervise(tmp_path, store.runs())
    assert report.owners == [os.getpid()] and report.waiting == 1 and report.pid is None and not report.started
    assert claimed.id == 1


@pytest.mark.skipif(os.name != "posix", reason="the background worker is a POSIX detached process")
def test_supervise_starts_one_worker_for_waiting_runs_and_stop_ends_it(tmp_path, monkeypatch):
    monkeypatch.delenv(supervisor.NO_WORKER, raising=False)
    submit(TrainConfig(**{**TINY, "epochs": 50}), tmp_path)  # long enough to be running when stopped
    with RunStore(tmp_path) as store:
        runs = store.runs()
    try:
        report = supervisor.supervise(tmp_path, runs, threads=1)
        assert report.started and report.pid is not None and report.waiting == 1
        assert supervisor.alive(tmp_path) == report.pid
        again = supervisor.supervise(tmp_path, runs, threads=1)  # alive: not started twice
        assert again.pid == report.pid and not again.started
    finally:
        stopped = supervisor.stop(tmp_path, timeout=60)
    assert stopped == report.pid
    assert supervisor.alive(tmp_path) is None and supervisor.stop(tmp_path) is None
    with RunStore(tmp_path) as store:  # the run is handed back (or was never taken), not lost
        assert store.get(1).state == "queued"
