"""Supervision of the background worker for a front end (the dashboard's Training page): is one alive, who trains the
running runs, start one for waiting runs, stop it.

The worker itself is ``training.worker``; this module only decides when one is needed and reports what it found.
``$CONVNET_LAB_NO_WORKER=1`` forbids starting one (tests; a worker you run yourself).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from .store import STALE_AFTER, Run, pid_alive
from .worker import background_pid, ensure_worker

NO_WORKER = "CONVNET_LAB_NO_WORKER"


def autostart() -> bool:
    """Whether a front end may start a background worker (``$CONVNET_LAB_NO_WORKER`` unset or 0)."""
    return os.environ.get(NO_WORKER, "0") in ("", "0")


def default_threads() -> int:
    """CPU threads for a worker started by a front end: half the cores, 1 to 4."""
    return max(1, min(4, (os.cpu_count() or 1) // 2))


def owner_alive(run: Run, now: float | None = None) -> bool:
    """A running run whose worker still beats: its pid lives on this host, or (another host) its heartbeat is fresh."""
    if run.state != "running" or run.pid is None:
        return False
    if run.host == socket.gethostname():
        return pid_alive(run.pid)
    return (now or time.time()) - (run.heartbeat or 0) < STALE_AFTER


@dataclass
class WorkerReport:
    """What :func:`supervise` found and did."""

    pid: int | None = None  # the live background worker of the runs folder
    started: bool = False  # ... started just now, for waiting runs
    owners: list[int] = field(default_factory=list)  # pids of other live workers training a run (a terminal's)
    waiting: int = 0  # queued runs, and running runs whose worker is gone
    error: str | None = None  # why no worker could be started


def alive(runs_dir: str | Path) -> int | None:
    """The pid of the live background worker of ``runs_dir``, or None."""
    return background_pid(runs_dir)


def start(runs_dir: str | Path, threads: int | None = None) -> int:
    """Start a detached background worker unless one is alive; its pid (OSError / ValueError: why not)."""
    return ensure_worker(runs_dir, threads=threads)


def stop(runs_dir: str | Path, timeout: float = 10.0) -> int | None:
    """Ask the background worker of ``runs_dir`` to stop (SIGTERM: it requeues its run at its last checkpoint) and
    wait up to ``timeout`` seconds; returns the pid it stopped, or None if none was alive."""
    pid = background_pid(runs_dir)
    if pid is None:
        return None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return pid
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        try:  # our child when we started it: reap it, or it lingers as a zombie that still "lives"
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                break
        except ChildProcessError:
            pass
        time.sleep(0.05)
    if pid_alive(pid) and background_pid(runs_dir) == pid:
        raise TimeoutError(f"worker pid {pid} did not stop within {timeout:g} s; stop it with `kill -9 {pid}`")
    return pid


def supervise(runs_dir: str | Path, runs: list[Run], threads: int | None = None) -> WorkerReport:
    """Who trains ``runs`` (the store's runs, as just read); start a background worker when runs wait, none is
    alive and starting one is allowed."""
    now = time.time()
    owners = sorted({run.pid for run in runs if owner_alive(run, now)})
    waiting = sum(run.state == "queued" or (run.state == "running" and not owner_alive(run, now)) for run in runs)
    report = WorkerReport(pid=alive(runs_dir), owners=owners, waiting=waiting)
    if report.pid is None and not owners and waiting and autostart():
        try:
            report.pid, report.started = start(runs_dir, threads), True
        except (ValueError, OSError) as exc:
            report.error = str(exc)
    return report
