"""The background trainer: takes queued runs from the run store in order and trains each with
:func:`training.loop.train` -- the very code ``convnet-lab train`` runs -- on cuda when there is one
(mixed precision), else mps, else the CPU.

While a run trains, the worker streams live metrics (loss, train error, images/s, learning rate,
GPU memory) to the store every ``report_every`` seconds and the test error after each epoch; a
heartbeat thread keeps the run marked alive. Cancelling a run stops it within a few seconds; a run
that raises is marked failed with its traceback and the worker moves on. A worker killed outright
leaves its run ``running`` with a dead owner: the next worker claims it and resumes from the run's
last checkpoint. SIGTERM or Ctrl-C puts the current run back in the queue (it resumes the same way).

A full disk is not the run's fault: when a checkpoint or the run store cannot be written, the run goes back
to the queue at the epoch its ``last.pt`` holds (the store forgets the epoch that was not saved) and the
worker tries again after a pause that doubles up to a minute; nothing finished is touched.

Under ``torchrun --nproc_per_node=N -m training.cli worker`` rank 0 claims each run and every rank
trains it together with DistributedDataParallel.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from convnets.checkpoint import CheckpointError, DiskFullError, disk_full, read_checkpoint

from . import distributed
from .data import DigitData
from .images import ImageData
from .loop import NAMED_SOURCES, Stopped, TrainConfig, check_config, load_data, pick_device, takes_images, train
from .store import STALE_AFTER, Owner, Run, RunStore, StoreError, StoreFull, default_runs_dir, pid_alive

PID_FILE = "worker.pid"
LOG_FILE = "worker.log"
MAX_BACKOFF = 60.0  # seconds: the longest pause between tries while the disk stays full
ONCE_FULL_TRIES = 6  # a --once worker gives up after this many pauses in a row for a full disk


class OutOfSpace(DiskFullError):
    """A run stopped by a full disk (a checkpoint or the store could not be written); the run is not at fault.

    ``run_id``; ``epoch``: the epochs its last.pt holds (the store goes back there); ``finished``: model.pt is written
    and only the store's "done" is missing. Made by :func:`out_of_space`.
    """

    run_id: int
    epoch: int
    finished: bool


def out_of_space(run_id: int, epoch: int, finished: bool, reason: str) -> OutOfSpace:
    exc = OutOfSpace(errno.ENOSPC, reason)
    exc.run_id, exc.epoch, exc.finished = run_id, epoch, finished
    return exc


def saved_epoch(out: Path) -> int:
    """The epochs a run's ``last.pt`` holds; 0 when there is none (or it cannot be read)."""
    try:
        return int(read_checkpoint(out / "last.pt").get("epoch", 0))
    except CheckpointError:
        return 0


def _log(line: str) -> None:
    print(f"[worker {os.getpid()} {time.strftime('%H:%M:%S')}] {line}", flush=True)


class _Heartbeat(threading.Thread):
    """Marks the run alive every few seconds on its own connection (data loading and evaluation included)."""

    def __init__(self, runs_dir: Path, run_id: int, owner: Owner, every: float):
        super().__init__(daemon=True, name=f"heartbeat-{run_id}")
        self.runs_dir, self.run_id, self.owner, self.every = runs_dir, run_id, owner, every
        self.done = threading.Event()
        self.lost = threading.Event()  # the run is no longer ours: cancelled, or reclaimed by another worker

    def run(self) -> None:
        store = RunStore(self.runs_dir)
        try:
            while not self.done.wait(self.every):
                try:
                    alive = store.heartbeat(self.run_id, self.owner)
                except StoreFull:  # skip this beat; the run's own writes meet the full disk and say what to do
                    continue
                if not alive:
                    self.lost.set()
                    return
        except StoreError:
            self.lost.set()
        finally:
            store.close()


def execute(run: Run, out: Path, store: RunStore | None, owner: Owner, *, data_cache: dict | None = None,
            report_every: float = 2.0, stale_after: float = STALE_AFTER, log: Callable[[str], None] = _log) -> str:
    """Train one claimed run into ``out`` to its end; returns its state (done, failed, cancelled; lost: taken over).

    ``store`` is None on the ranks other than 0 under torchrun: they train but never touch the store.
    """
    heartbeat = None
    if store is not None:
        for stale in out.glob(".*.pt.*.tmp"):  # a checkpoint a killed worker was half-way through writing
            stale.unlink(missing_ok=True)
        heartbeat = _Heartbeat(store.runs_dir, run.id, owner, every=max(0.5, min(5.0, stale_after / 6)))
        heartbeat.start()

    saved = False  # an "epoch" event came before this one: its checkpoint has been written since

    def monitor(event: dict) -> bool:
        nonlocal saved
        if event["event"] == "start":
            store.rewind(run.id, owner, event["epoch"])  # a resumed run repeats what came after its checkpoint
        ok = store.report(run.id, owner, event["epoch"], event["step"], event["metrics"], device=event.get("device"),
                          epoch_done=saved)  # an epoch finished and saved: the run made progress, its stalls restart
        saved = event["event"] == "epoch"
        return not ok or heartbeat.lost.is_set()

    try:
        config = TrainConfig.from_dict(run.config)
        data = _load(config, data_cache)
        resumed = (out / "last.pt").exists()
        log(f"run {run.id}: {'resuming' if resumed else 'training'} {config.model} on {config.data} "
            f"(attempt {run.attempts})")
        train(config, out=out, data=data, progress=False, log=lambda line: log(f"run {run.id}: {line}"),
              recipe=run.recipe, resume=True, monitor=monitor if store else None, report_every=report_every)
    except Stopped:
        state = store.get(run.id).state if store else "stopped"
        log(f"run {run.id}: stopped ({state if state != 'running' else 'taken over by another worker'})")
        return state if state != "running" else "lost"
    except Exception as exc:
        if peer_died(exc):  # not this run's fault: leave it running with a dead owner, to be resumed from its checkpoint
            log(f"run {run.id}: another rank or the process group died ({str(exc).strip().splitlines()[0][:160]}); "
                "this worker stops, the next one resumes the run")
            raise
        if store is not None and (isinstance(exc, StoreFull) or disk_full(exc)):  # not the run's fault: serve puts it back
            raise out_of_space(run.id, saved_epoch(out), False, str(exc).strip().splitlines()[0]) from None
        if store is None:  # another rank under torchrun: rank 0 records the failure, this rank says why it failed here
            _log(f"run {run.id}: failed on rank {distributed.from_env().rank}: {type(exc).__name__}: {exc}")
            return "failed"
        store.finish(run.id, owner, "failed", error=traceback.format_exc())
        log(f"run {run.id}: failed: {type(exc).__name__}: {exc}")
        return "failed"
    finally:
        if heartbeat is not None:
            heartbeat.done.set()
            heartbeat.join()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    try:
        finished = store is None or store.finish(run.id, owner, "done")
    except StoreFull as exc:  # model.pt is written; serve marks the run done once the store can be written
        raise out_of_space(run.id, run.epochs, True, str(exc)) from None
    if finished:
        log(f"run {run.id}: done")
        return "done"
    state = store.get(run.id).state
    log(f"run {run.id}: finished but was {state} meanwhile")
    return state


PEER_ERRORS = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "NCCL communicator was aborted",
               "ProcessGroupGloo", "gloo/transport")


def peer_died(exc: BaseException) -> bool:
    """Whether ``exc`` says another torchrun rank (or the process group) died, rather than that the run is broken."""
    if distributed.from_env().world <= 1:
        return False
    if isinstance(exc, getattr(torch.distributed, "DistError", ())):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in PEER_ERRORS)


def _load(config: TrainConfig, cache: dict | None) -> DigitData | ImageData:
    """The run's digits or images, kept from the previous run when it used the same source."""
    key = (config.data, config.exclude_sample, takes_images(config.model))
    if cache is not None and key in cache:
        return cache[key]
    data = load_data(config)
    if cache is not None:
        cache.clear()
        cache[key] = data
    return data


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _settle(store: RunStore, owner: Owner, stopped: OutOfSpace, log: Callable[[str], None]) -> None:
    """Record a run the disk stopped: done when only that was missing, else back in the queue at its last checkpoint."""
    if stopped.finished:
        if store.finish(stopped.run_id, owner, "done"):
            log(f"run {stopped.run_id}: done")
    elif store.release(stopped.run_id, owner, epoch=stopped.epoch,
                       note=f"waiting: the disk was full; it resumes from its last checkpoint (epoch {stopped.epoch})"):
        log(f"run {stopped.run_id}: back in the queue; it resumes from its last checkpoint (epoch {stopped.epoch})")


def _pause(exc: DiskFullError | StoreFull, full: int, poll: float, once: bool, log: Callable[[str], None]) -> int:
    """Wait before trying again on a full disk (``poll`` seconds, doubling up to MAX_BACKOFF); returns the new count of
    full-disk pauses in a row. A ``once`` worker raises ``exc`` instead after ONCE_FULL_TRIES of them."""
    full += 1
    if once and full > ONCE_FULL_TRIES:
        raise exc
    delay = min(MAX_BACKOFF, poll * 2 ** (full - 1))
    log(f"{exc}; trying again in {delay:g} s")
    time.sleep(delay)
    return full


def serve(runs_dir: str | Path | None = None, once: bool = False, poll: float = 1.0, stale_after: float = STALE_AFTER,
          report_every: float = 2.0, log: Callable[[str], None] = _log) -> int:
    """Train queued runs in order, forever or (``once``) until the queue is empty; returns the number of runs taken
    (a run the disk stopped counts again when taken again).

    A full disk fails no run and stops no worker: the run goes back to the queue at its last checkpoint (or, trained
    to the end, is marked done) and the worker pauses, then tries again; a ``once`` worker gives up after
    ONCE_FULL_TRIES pauses in a row by raising the error (its run waits in the queue).
    """
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    ctx, _ = distributed.init(pick_device("auto"))
    store = RunStore(runs_dir) if ctx.master else None
    owner = Owner.me()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if main_thread else None
    if ctx.master:
        log(f"serving {runs_dir} on {pick_device('auto')}" + (f" x{ctx.world} (DDP)" if ctx.world > 1 else ""))
    cache: dict = {}
    taken = 0
    stopped: OutOfSpace | None = None  # a run the disk stopped that the store does not know about yet
    full = 0  # full-disk pauses in a row
    try:
        while True:
            try:
                if stopped is not None:
                    _settle(store, owner, stopped, log)
                    stopped = None
                run = store.claim(owner, stale_after) if store else None
            except StoreFull as exc:
                full = _pause(exc, full, poll, once, log)
                continue
            job = (run, store.run_dir(run.id)) if run else None
            if ctx.world > 1:
                job = distributed.broadcast(job)  # rank 0 hands its claim to every rank
            if job is None:
                if once:
                    return taken
                if store is not None and not store.path.exists():  # the runs folder was deleted under us
                    log(f"{store.path} is gone; stopping")
                    return taken
                time.sleep(poll)
                continue
            taken += 1
            try:
                execute(*job, store, owner, data_cache=cache, report_every=report_every, stale_after=stale_after,
                        log=log if ctx.master else (lambda _line: None))
                full = 0
            except OutOfSpace as exc:
                stopped = exc
                if ctx.world > 1:  # the other ranks stopped mid-run too: this worker ends, the run waits in the queue
                    raise
                full = _pause(exc, full, poll, once, log)
            except KeyboardInterrupt:  # SIGTERM or Ctrl-C: hand the run back; the next worker resumes it
                if store is not None:
                    try:
                        store.release(run.id, owner)
                        log(f"run {run.id}: interrupted; back in the queue, it resumes from its last checkpoint")
                    except StoreFull:
                        log(f"run {run.id}: interrupted on a full disk; the next worker resumes it")
                raise
    finally:
        if stopped is not None and store is not None:  # leaving on a full disk: put the run back if the store lets us
            with contextlib.suppress(StoreError):
                _settle(store, owner, stopped, log)
        if store is not None:
            store.close()
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def submit(config: TrainConfig, runs_dir: str | Path | None = None, recipe: str | None = None) -> int:
    """Check ``config`` (model, options, data source, recipe values) and queue it; returns the run id.

    A ValueError names a bad setting before anything is written. A data path is stored absolute.
    """
    config = check_config(config)
    if config.data not in NAMED_SOURCES:
        config = replace(config, data=str(Path(config.data).resolve()))
    with RunStore(runs_dir) as store:
        return store.submit(config.card(), recipe=recipe)


# ---------------------------------------------------------------------------------------- background worker

def background_pid(runs_dir: str | Path | None = None) -> int | None:
    """The pid of the live background worker of ``runs_dir`` (from its pid file), or None."""
    path = Path(runs_dir or default_runs_dir()) / PID_FILE
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    if Path("/proc/self").exists():  # Linux: make sure it is a worker, not a zombie or a reused pid
        for _ in range(40):  # empty for a moment while a just-started process is exec'd (and for good in a zombie)
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                return None
            if args != [b""]:
                break
            time.sleep(0.025)
        if b"training.cli" not in args or b"worker" not in args:
            return None
    return pid


def ensure_worker(runs_dir: str | Path | None = None, threads: int | None = None) -> int:
    """Start a detached background worker on ``runs_dir`` unless one is alive; returns its pid.

    The dashboard calls this before submitting; the worker writes ``worker.log`` in the runs folder.
    """
    runs_dir = Path(runs_dir or default_runs_dir()).resolve()
    RunStore(runs_dir).close()  # a clear error now if the folder or store is unusable
    with open(runs_dir / "worker.lock", "a") as lock:
        if os.name == "posix":
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)  # two callers at once start one worker
        pid = background_pid(runs_dir)
        if pid is not None:
            return pid
        command = [sys.executable, "-m", "training.cli", "worker", "--runs", str(runs_dir)]
        if threads:
            command += ["--threads", str(threads)]
        source = str(Path(__file__).resolve().parents[1])  # importable from any working folder
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
        with open(runs_dir / LOG_FILE, "ab") as log_file:  # detached: its own session, no terminal, survives the caller
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                       start_new_session=True, close_fds=True, env=env)
        tmp = runs_dir / f".{PID_FILE}.{os.getpid()}"
        tmp.write_text(f"{process.pid}\n")
        os.replace(tmp, runs_dir / PID_FILE)
        return process.pid
