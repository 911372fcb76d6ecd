"""Fault injection, the machine's part: a full disk under the run store or a checkpoint, a read-only runs folder,
a worker process killed again and again, a rank killed under torchrun. Each fault ends in one line or a clear state
in the store, and nothing finished is lost.

A disk fills either for real (a small tmpfs, where this process may mount one: root on Linux) or through a patched
writer (everywhere); both run where they can. Everything trains a few hundred digits of the offline sample on one
thread.
"""

import contextlib
import errno
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import convnets
from convnets import checkpoint
from training.cli import main
from training.loop import TrainConfig, train
from training.store import RunStore
from training.worker import saved_epoch, serve, submit

torch.set_num_threads(1)  # the same arithmetic here and in the worker processes

KILLS = 12  # worker processes killed in one run
KILL_SEED = int(os.environ.get("CONVNET_LAB_KILL_SEED", "10"))  # the kill moments; another seed, other moments


def _quiet(*_args):
    pass


@pytest.fixture(scope="module")
def digits(sample_data, tmp_path_factory) -> str:
    """256 real training digits and 200 test digits as an .npz (what a worker loads from a run's config)."""
    pick = torch.randperm(len(sample_data.train_y), generator=torch.Generator().manual_seed(0))[:256]
    path = tmp_path_factory.mktemp("digits") / "digits.npz"
    np.savez(path, x_train=sample_data.train_x[pick].numpy(), y_train=sample_data.train_y[pick].numpy(),
             x_test=sample_data.test_x[:200].numpy(), y_test=sample_data.test_y[:200].numpy())
    return str(path)


def _settings(digits: str, **changes) -> dict:
    return {"model": "lenet5-modern", "options": {"dropout": 0.2}, "data": digits, "epochs": 3, "batch_size": 32,
            "seed": 4, **changes}


def _same_weights(model_pt: Path, settings: dict) -> bool:
    """Whether a run's model.pt holds exactly the weights of the same run trained in one go."""
    written = convnets.read_checkpoint(model_pt)["state_dict"]
    model, _ = train(TrainConfig(**settings), progress=False, log=_quiet)
    reference = model.state_dict()
    return written.keys() == reference.keys() and all(torch.equal(written[k], v) for k, v in reference.items())


def _one_line(err: str, *parts: str) -> bool:
    return err.startswith("convnet-lab: error: ") and err.count("\n") == 1 and all(p in err for p in parts)


# ------------------------------------------------------------------------------------------ disks that fill up

def _mount(*args: str) -> bool:
    return os.name == "posix" and subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "16m"):
    """A small tmpfs at ``path`` (created); skips the test where this process may not mount one."""
    path.mkdir(parents=True, exist_ok=True)
    if not _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)):
        pytest.skip("cannot mount a tmpfs here (needs root on Linux); the patched writer covers this fault")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


class Disk:
    """A disk that fills and frees on demand: for real (a file that takes every free byte of a tmpfs) or patched
    (the run store's writes fail as SQLite's do, or checkpoint files stop taking bytes half-way)."""

    def __init__(self, kind: str, folder: Path, monkeypatch):
        self.kind, self.folder, self.full, self.fills = kind, folder, False, 0
        if kind != "tmpfs":
            monkeypatch.setattr(RunStore, "_write", self._patched_write(RunStore._write))
            monkeypatch.setattr(checkpoint, "_open_for_writing", self._patched_open)

    def fill(self) -> None:
        self.full, self.fills = True, self.fills + 1
        if self.kind == "tmpfs":
            with open(self.folder / "filler", "wb", buffering=0) as f:
                for chunk in (2**20, 4096, 1):  # to the last byte
                    try:
                        while True:
                            f.write(b"\0" * chunk)
                    except OSError as exc:
                        assert exc.errno == errno.ENOSPC

    def free(self) -> None:
        self.full = False
        (self.folder / "filler").unlink(missing_ok=True)

    def _patched_write(self, real):
        disk = self

        @contextlib.contextmanager
        def write(store: RunStore):
            if disk.full and disk.kind == "store":
                with store._errors():
                    raise sqlite3.OperationalError("database or disk is full")
            with real(store) as db:
                yield db

        return write

    def _patched_open(self, fd: int, mode: str):
        file = os.fdopen(fd, mode)
        return _FillingFile(file, room=1000) if self.full and self.kind == "checkpoint" else file


class _FillingFile:
    """A file on a disk with ``room`` bytes left: the write that needs more raises ENOSPC, as a full disk does."""

    def __init__(self, file, room: int):
        self.file, self.room = file, room

    def write(self, data) -> int:
        if len(data) > self.room:
            self.file.write(bytes(data)[:self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()

    def fileno(self) -> int:
        return self.file.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(OSError):
            self.file.close()


def _finished_run(runs: Path, digits: str) -> tuple[int, bytes]:
    """A run trained to the end before the disk fills; returns its id and its model.pt's bytes."""
    run_id = submit(TrainConfig(**_settings(digits, epochs=1, train_limit=64)), runs)
    assert serve(runs, once=True, report_every=0.0, log=_quiet) == 1
    with RunStore(runs) as store:
        return run_id, (store.run_dir(run_id) / "model.pt").read_bytes()


@pytest.mark.parametrize("where", ["store", "checkpoint"])
@pytest.mark.parametrize("how", ["patched", "tmpfs"])
def test_a_disk_filling_up_mid_run_fails_nothing_and_stops_no_worker(tmp_path, monkeypatch, digits, where, how):
    """The disk fills as epoch 2 ends: under the run store (its report of the epoch fails) or under the run's folder
    (its checkpoint write fails). The worker puts the run back at epoch 1, pauses, tries again once there is space,
    and the run finishes with the weights of an uninterrupted one; the finished run beside it is untouched."""
    runs = tmp_path / "runs"
    with contextlib.ExitStack() as mounts:
        if how == "tmpfs" and where == "store":
            mounts.enter_context(tmpfs(runs))
        finished, finished_bytes = _finished_run(runs, digits)
        settings = _settings(digits)
        run_id = submit(TrainConfig(**settings), runs)
        with RunStore(runs) as store:
            out = store.run_dir(run_id)
        if how == "tmpfs" and where == "checkpoint":
            mounts.enter_context(tmpfs(out))  # the run's folder alone: the store stays writable
        disk = Disk(how if how == "tmpfs" else where, runs if where == "store" else out, monkeypatch)
        lines, seen = [], {}

        def log(line: str) -> None:
            lines.append(line)
            if line.startswith(f"run {run_id}: epoch   2 ") and not disk.fills:  # epoch 2 is done, not yet saved
                seen["last.pt"] = (out / "last.pt").read_bytes()
                disk.fill()
            elif "trying again" in line:
                disk.free()
            elif "back in the queue" in line:
                with RunStore(runs) as store:
                    run = store.get(run_id)
                    seen["queued"] = (run.state, run.progress, [m.epoch for m in store.metrics(run_id, "test_error")],
                                      saved_epoch(out), (out / "last.pt").read_bytes(), run.error)

        assert serve(runs, once=True, poll=0.01, report_every=0.0, log=log) == 2  # taken, put back, taken again
        full = [line for line in lines if "disk full" in line]
        assert len(full) == 1 and "\n" not in full[0], lines
        assert full[0].startswith("disk full: cannot write the run store" if where == "store" else
                                  f"disk full: could not write {out / 'last.pt'} (No space left on device); "
                                  "last.pt there is unchanged")
        state, progress, epochs, on_disk, last_pt, note = seen["queued"]
        assert (state, progress, epochs, on_disk) == ("queued", 1.0, [1.0], 1)  # no epoch counted without its checkpoint
        assert last_pt == seen["last.pt"] and "the disk was full" in note
        assert not list(out.glob(".*.tmp"))
        with RunStore(runs) as store:
            run = store.get(run_id)
            assert run.state == "done" and run.error is None
            assert [m.epoch for m in store.metrics(run_id, "test_error")] == [1.0, 2.0, 3.0]
            assert store.get(finished).state == "done"
            assert (store.run_dir(finished) / "model.pt").read_bytes() == finished_bytes
        assert _same_weights(out / "model.pt", settings)


def test_train_on_a_full_disk_says_so_in_one_line_and_resumes_to_the_same_weights(tmp_path, monkeypatch, capsys,
                                                                                     digits):
    """`convnet-lab train`: the write of epoch 2's checkpoint meets a full disk half-way (torch alone would say
    "unexpected pos"); exit 2, one line, epoch 1's last.pt as it was; `--resume` with space finishes the run."""
    settings = _settings(digits)
    out = tmp_path / "out"
    saves, before = [], {}

    def open_(fd: int, mode: str):
        saves.append(fd)
        if len(saves) == 2:
            before["last.pt"] = (out / "last.pt").read_bytes()
            return _FillingFile(os.fdopen(fd, mode), room=1000)
        return os.fdopen(fd, mode)

    monkeypatch.setattr(checkpoint, "_open_for_writing", open_)
    argv = ["train", "--model", "lenet5-modern", "--option", "dropout=0.2", "--data", digits, "--epochs", "3",
            "--batch-size", "32", "--seed", "4", "--threads", "1", "--quiet", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert _one_line(err, f"disk full: could not write {out / 'last.pt'} (No space left on device); "
                          "last.pt there is unchanged; free space on that disk, then resume")
    assert (out / "last.pt").read_bytes() == before["last.pt"] and saved_epoch(out) == 1
    assert sorted(p.name for p in out.iterdir()) == ["last.pt"]  # no half-written file left behind
    monkeypatch.setattr(checkpoint, "_open_for_writing", os.fdopen)  # space again
    assert main([*argv, "--resume"]) == 0
    assert _same_weights(out / "model.pt", settings)


def test_a_once_worker_on_a_disk_that_stays_full_gives_up_in_one_line_and_the_run_waits(tmp_path, monkeypatch, capsys,
                                                                                          digits):
    import training.worker as worker

    monkeypatch.setattr(worker, "ONCE_FULL_TRIES", 1)
    runs = tmp_path / "runs"
    finished, finished_bytes = _finished_run(runs, digits)
    run_id = submit(TrainConfig(**_settings(digits, epochs=1, train_limit=64)), runs)
    disk = Disk("checkpoint", tmp_path, monkeypatch)
    disk.fill()  # every checkpoint write fails: each life trains epoch 1 and cannot save it
    assert main(["worker", "--once", "--runs", str(runs), "--poll", "0.01", "--threads", "1"]) == 2
    captured = capsys.readouterr()
    assert _one_line(captured.err, "disk full: could not write", "last.pt (No space left on device)")
    assert captured.out.count("trying again") == 1 and captured.out.count("back in the queue") == 2
    disk.kind = "store"  # and now the store cannot be written either: the next worker gives up before training
    assert main(["worker", "--once", "--runs", str(runs), "--poll", "0.01"]) == 2
    assert _one_line(capsys.readouterr().err, "disk full: cannot write the run store", "database or disk is full")
    disk.free()
    assert main(["status", "--runs", str(runs)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows[str(run_id)].split()[1] == "queued" and "waiting: the disk was full" in rows[str(run_id)]
    assert rows[str(finished)].split()[1] == "done"
    with RunStore(runs) as store:
        assert (store.run_dir(finished) / "model.pt").read_bytes() == finished_bytes
        assert store.metrics(run_id) == [] and store.get(run_id).progress == 0.0


# ------------------------------------------------------------------------------------------ a read-only runs folder

@contextlib.contextmanager
def read_only(path: Path):
    """``path`` made read-only: a read-only bind mount for root (who may write anything else), else its mode."""
    if os.geteuid() == 0:
        if not (_mount("--bind", str(path), str(path)) and _mount("-o", "remount,bind,ro", str(path))):
            subprocess.run(["umount", str(path)], capture_output=True)
            pytest.skip("root here cannot bind-mount a folder read-only")
        try:
            yield path
        finally:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
    else:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(mode)


@pytest.mark.parametrize("left", ["closed", "a worker's WAL"])
def test_status_answers_on_a_read_only_runs_folder_and_the_rest_says_why_not(tmp_path, capsys, digits, left):
    runs = tmp_path / "runs"
    finished, _ = _finished_run(runs, digits)
    queued = submit(TrainConfig(**_settings(digits)), runs)
    keep_open = RunStore(runs) if left != "closed" else None  # a live connection keeps runs.sqlite-wal on disk
    try:
        if keep_open is not None:
            keep_open.cancel(queued)  # this change lives in the WAL only
        files = {p.name: p.read_bytes() for p in runs.iterdir() if p.is_file()}
        assert ("runs.sqlite-wal" in files) == (keep_open is not None)
        with read_only(runs):
            capsys.readouterr()
            assert main(["status", "--runs", str(runs)]) == 0
            lines = capsys.readouterr().out.splitlines()
            assert lines[0].startswith(f"read-only: {runs} cannot be written") and sum("read-only" in x for x in lines) == 1
            rows = {line.split()[0]: line.split()[1] for line in lines[2:]}
            assert rows == {str(finished): "done", str(queued): "cancelled" if keep_open else "queued"}
            assert main(["status", str(finished), "--runs", str(runs)]) == 0
            assert f"run {finished}: done" in capsys.readouterr().out
            for argv in (["submit", "--data", "sample"], ["cancel", str(queued)], ["worker", "--once"]):
                assert main([*argv, "--runs", str(runs)]) == 2
                assert _one_line(capsys.readouterr().err, f"runs folder {runs} is not writable; pass a writable --runs")
            assert main(["train", "--data", digits, "--epochs", "1", "--quiet", "--out", str(runs / "new")]) == 2
            assert _one_line(capsys.readouterr().err, f"cannot write to --out {runs / 'new'}",
                             "pass a folder you can write")
        assert {p.name: p.read_bytes() for p in runs.iterdir() if p.is_file()} == files  # not a byte written
    finally:
        if keep_open is not None:
            keep_open.close()


# ------------------------------------------------------------------------------------------ dying processes

def test_a_worker_process_killed_at_random_moments_finishes_with_the_uninterrupted_weights(tmp_path, digits, monkeypatch):
    """`convnet-lab worker` processes SIGKILLed KILLS times in one run, each at a random moment (data loading, a step,
    an evaluation, a checkpoint or store write), a new one started each time: the run ends `done` with exactly the
    weights of an uninterrupted run. Every other life is killed only after it saved an epoch: a run whose worker dies
    MAX_ATTEMPTS times in a row without finishing one is failed on purpose (tested in test_faults.py).

    The workers are forked from a process that imported torch once (multiprocessing's forkserver), so a life starts in
    milliseconds instead of the 2-3 s of a fresh interpreter; each runs the CLI's own `worker` command."""
    settings = _settings(digits, epochs=20, seed=7)
    runs = tmp_path / "runs"
    run_id = submit(TrainConfig(**settings), runs)
    store = RunStore(runs)
    out = store.run_dir(run_id)
    # A Streamlit AppTest earlier in this process leaves a page script as __main__, which multiprocessing would
    # re-run in every child: give the children a bare __main__ instead.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(["training.cli"])
    argv = ["worker", "--runs", str(runs), "--once", "--threads", "1", "--report-every", "0.001", "--poll", "0.05"]
    rng = random.Random(KILL_SEED)
    kills, worker, started, cpu = [], None, time.monotonic(), 0.0
    try:
        for life in range(KILLS + 1):
            start = saved_epoch(out)
            worker = forkserver.Process(target=main, args=(argv,), daemon=True)
            worker.start()
            if life == KILLS:
                worker.join(600)
                assert worker.exitcode == 0
                break
            # an odd life dies only after saving an epoch (progress past the next epoch's end), an even one at any time
            target = start + (rng.uniform(1.1, 1.6) if life % 2 else rng.uniform(0.0, 1.6))
            deadline = time.monotonic() + 600
            while True:
                run = store.get(run_id)
                if run.pid == worker.pid and run.progress >= target or not worker.is_alive():
                    break
                assert time.monotonic() < deadline, f"life {life} never reached epoch {target:.2f}"
                time.sleep(0.002)
            if not worker.is_alive():  # it finished the whole run before its moment came
                worker.join()
                break
            cpu += _cpu_seconds(worker.pid)
            os.kill(worker.pid, signal.SIGKILL)
            worker.join()
            assert worker.exitcode == -signal.SIGKILL
            kills.append((start, round(target, 2), run.progress))
    finally:
        if worker is not None and worker.is_alive():
            worker.kill()
            worker.join()
    seconds = time.monotonic() - started
    print(f"worker killed {len(kills)} times (checkpoint epoch, kill at epoch, seen): {kills}; {seconds:.1f} s, "
          f"{cpu:.1f} CPU s in the killed lives")
    assert len(kills) >= 10
    run = store.get(run_id)
    assert run.state == "done" and run.attempts == len(kills) + 1, run.error
    assert [m.epoch for m in store.metrics(run_id, "test_error")] == [float(e) for e in range(1, 21)]
    assert not list(out.glob(".*.tmp"))
    store.close()
    assert _same_weights(out / "model.pt", settings)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *_descendants(int(child))]
    return found


def _rank_pid(agent: int, rank: int) -> int | None:
    for pid in _descendants(agent):
        with contextlib.suppress(OSError):
            if f"RANK={rank}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                return pid
    return None


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds torchrun's ranks through /proc (Linux)")
def test_a_rank_killed_under_torchrun_leaves_the_run_to_be_resumed(tmp_path, digits):
    """Two gloo ranks train a run under `torchrun ... worker`; rank 1 is SIGKILLed after epoch 1 is saved. The run is
    not failed: rank 0 sees its peer gone (or torchrun stops it) and the run waits to be resumed; a second torchrun
    worker resumes it from the checkpoint and finishes it."""
    settings = _settings(digits, epochs=4, options={"batch_norm": False}, device="cpu")
    runs = tmp_path / "runs"
    run_id = submit(TrainConfig(**settings), runs)
    store = RunStore(runs)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "training.cli",
               "worker", "--runs", str(runs), "--once", "--threads", "1", "--report-every", "0.001"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    agent = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + 600
        while store.get(run_id).progress <= 1.0 and agent.poll() is None:  # epoch 1 saved, epoch 2 under way
            assert time.monotonic() < deadline, "the run never got past epoch 1"
            time.sleep(0.005)
        rank1 = _rank_pid(agent.pid, 1)
        assert rank1 is not None and agent.poll() is None, "torchrun ended before its rank 1 could be killed"
        os.kill(rank1, signal.SIGKILL)
        killed_at = store.get(run_id).progress
        output = agent.communicate(timeout=600)[0]
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert agent.returncode != 0
    run = store.get(run_id)
    assert run.state != "failed", run.error
    assert run.state == "queued" or run.orphaned(), (run.state, output[-2000:])
    saved = saved_epoch(store.run_dir(run_id))
    assert 1 <= saved < 4
    after = f"{run.state}{' (its owner gone)' if run.state == 'running' else ''}"

    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = store.get(run_id)
    assert run.state == "done" and run.error is None
    assert [m.epoch for m in store.metrics(run_id, "test_error")] == [1.0, 2.0, 3.0, 4.0]
    payload = convnets.read_checkpoint(store.run_dir(run_id) / "model.pt")
    assert payload["card"]["world_size"] == 2 and [e["epoch"] for e in payload["card"]["epochs"]] == [1, 2, 3, 4]
    model, _ = train(TrainConfig(**settings), progress=False, log=_quiet)
    gap = max((payload["state_dict"][k] - v).abs().max().item() for k, v in model.state_dict().items())
    print(f"rank 1 killed at epoch {killed_at:.3f}: the run {after} with epoch {saved} saved; resumed to done; "
          f"vs one process: max |weight difference| {gap:.3g}")
    assert gap < 1e-4  # 2 ranks vs 1 process: float summation order only (test_distributed.py)
    store.close()
