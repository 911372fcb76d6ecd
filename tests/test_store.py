"""The run store: queue order, atomic claims across processes, cancel, orphaned runs, bad stores; atomic checkpoints."""

import multiprocessing
import os
import socket
import subprocess
import time
from contextlib import contextmanager

import pytest
import torch

import convnets
from training.store import MAX_ATTEMPTS, Owner, RunStore, StoreError

ME = Owner.me()


def _config(**overrides) -> dict:
    return {"model": "lenet5", "data": "sample", "epochs": 2, **overrides}


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_runs_are_claimed_in_submission_order(tmp_path):
    store = RunStore(tmp_path)
    ids = [store.submit(_config(seed=i), recipe=f"convnet-lab submit --seed {i}") for i in range(3)]
    claimed = [store.claim(ME) for _ in range(4)]
    assert [r.id for r in claimed[:3]] == ids and claimed[3] is None
    first = claimed[0]
    assert first.state == "running" and first.attempts == 1 and first.owner == ME
    assert first.config["seed"] == 0 and first.recipe == "convnet-lab submit --seed 0"
    assert [r.state for r in store.runs()] == ["running"] * 3


def _claim_all(runs_dir, barrier, results) -> None:
    store = RunStore(runs_dir)
    owner = Owner.me()
    barrier.wait()
    taken = []
    while (run := store.claim(owner)) is not None:
        taken.append(run.id)
        store.finish(run.id, owner, "done")  # so a finished claimer's runs never look orphaned to the others
    results.put(taken)


def test_concurrent_workers_never_take_the_same_run(tmp_path):
    store = RunStore(tmp_path)
    ids = [store.submit(_config(seed=i)) for i in range(40)]
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    workers = [ctx.Process(target=_claim_all, args=(tmp_path, barrier, results)) for _ in range(4)]
    for w in workers:
        w.start()
    taken = [results.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    every = [run_id for t in taken for run_id in t]
    assert sorted(every) == ids  # each run exactly once
    assert all(t == sorted(t) for t in taken)  # and each worker took its runs in queue order
    assert {r.state for r in store.runs()} == {"done"}


def test_cancel_queued_and_running_runs(tmp_path):
    store = RunStore(tmp_path)
    running, queued = store.submit(_config()), store.submit(_config())
    assert store.claim(ME).id == running
    assert store.cancel(queued).state == "cancelled"
    assert store.cancel(running).state == "cancelled"
    # the worker learns it at its next report and cannot finish the run as done
    assert store.report(running, ME, 0.5, 3, {"loss": 1.0}) is False
    assert store.finish(running, ME, "done") is False
    assert store.claim(ME) is None
    assert store.get(running).state == "cancelled" and store.get(running).ended is not None
    with pytest.raises(StoreError, match="already ended"):
        store.cancel(running)
    with pytest.raises(StoreError, match="no run 99 in"):
        store.cancel(99)
    with pytest.raises(StoreError, match="no run 99 in"):
        store.get(99)


def test_orphaned_runs_are_reclaimed_and_live_ones_are_not(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.submit(_config())
    here = socket.gethostname()
    assert store.claim(Owner(os.getpid(), here)).id == run_id
    assert store.claim(Owner(os.getpid() + 1, here)) is None  # owner alive, heartbeat fresh
    store.db.execute("UPDATE runs SET pid = ? WHERE id = ?", (_dead_pid(), run_id))  # its worker was killed
    again = store.claim(ME)
    assert again.id == run_id and again.attempts == 2 and again.owner == ME

    store.db.execute("UPDATE runs SET pid = 1, host = 'elsewhere' WHERE id = ?", (run_id,))
    assert store.claim(ME) is None  # another host's worker: only a stale heartbeat frees the run
    time.sleep(0.05)
    assert store.claim(ME, stale_after=0.01).attempts == 3


def test_a_run_whose_worker_keeps_dying_is_failed(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.submit(_config())
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert store.claim(ME).attempts == attempt
        store.db.execute("UPDATE runs SET pid = ? WHERE id = ?", (_dead_pid(), run_id))
    assert store.claim(ME) is None
    run = store.get(run_id)
    assert run.state == "failed" and f"died {MAX_ATTEMPTS} times" in run.error


def test_release_puts_a_run_back_in_the_queue(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.submit(_config())
    store.claim(ME)
    store.release(run_id, ME)
    run = store.get(run_id)
    assert run.state == "queued" and run.pid is None and run.attempts == 0
    assert store.claim(ME).id == run_id


def test_metrics_stream_and_rewind(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.submit(_config(epochs=3))
    store.claim(ME)
    assert store.report(run_id, ME, 0.0, 0, {}, device="cuda:0 (Test GPU)")
    for step in range(1, 7):  # three steps per epoch; the test error after the first epoch
        assert store.report(run_id, ME, step / 3, step, {"loss": 1.0 / step, "images_per_s": 1000.0 + step})
        if step == 3:
            assert store.report(run_id, ME, 1.0, 3, {"test_error": 5.0})
    run = store.get(run_id)
    assert run.device == "cuda:0 (Test GPU)" and run.progress == 2.0
    assert [m.step for m in store.metrics(run_id, "loss")] == [1, 2, 3, 4, 5, 6]
    assert store.latest(run_id) == {"loss": 1.0 / 6, "images_per_s": 1006.0, "test_error": 5.0}
    store.rewind(run_id, ME, 1.0)  # resumed from the checkpoint after epoch 1
    assert [m.step for m in store.metrics(run_id, "loss")] == [1, 2, 3]
    assert [(m.epoch, m.value) for m in store.metrics(run_id, "test_error")] == [(1.0, 5.0)]
    assert store.get(run_id).progress == 1.0
    assert store.finish(run_id, ME, "done") and store.get(run_id).progress == 3.0


def test_a_second_connection_reads_while_one_writes(tmp_path):
    writer, reader = RunStore(tmp_path), RunStore(tmp_path)
    assert writer.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    run_id = writer.submit(_config())
    writer.claim(ME)
    writer.db.execute("BEGIN IMMEDIATE")  # a writer mid-transaction never blocks readers
    writer.db.execute("UPDATE runs SET progress = 1.5 WHERE id = ?", (run_id,))
    assert reader.get(run_id).progress == 0.0
    writer.db.execute("COMMIT")
    assert reader.get(run_id).progress == 1.5


def test_corrupt_store_is_one_clear_error_and_left_alone(tmp_path):
    junk = b"this is not sqlite" * 100
    (tmp_path / "runs.sqlite").write_bytes(junk)
    with pytest.raises(StoreError, match="is not a readable run store") as err:
        RunStore(tmp_path)
    assert len(str(err.value).splitlines()) == 1
    assert (tmp_path / "runs.sqlite").read_bytes() == junk


def test_runs_folder_that_is_a_file_or_from_the_future(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        RunStore(tmp_path / "file")
    store = RunStore(tmp_path / "runs")
    store.db.execute("PRAGMA user_version = 99")
    store.close()
    with pytest.raises(StoreError, match="newer convnet-lab"):
        RunStore(tmp_path / "runs")


@contextmanager
def _read_only(folder):
    """chmod for users; root writes through modes, so it gets the immutable flag (skip where chattr cannot)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root where chattr +i is unavailable: cannot make a read-only folder")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_read_only_runs_folder(tmp_path):
    empty, existing = tmp_path / "empty", tmp_path / "existing"
    empty.mkdir()
    RunStore(existing).submit(_config())
    before = (existing / "runs.sqlite").read_bytes()
    for folder in (empty, existing):
        with _read_only(folder):
            with pytest.raises(StoreError, match="not writable"):
                RunStore(folder)
            with pytest.raises(StoreError, match="cannot create runs folder"):
                RunStore(folder / "sub")
    assert list(empty.iterdir()) == []
    assert (existing / "runs.sqlite").read_bytes() == before


def _write_checkpoints(path, count) -> None:
    torch.set_num_threads(1)
    model = convnets.get_model("lenet5-modern")
    for i in range(count):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float(i))
        convnets.save_checkpoint(path, "lenet5-modern", {}, model, {"i": i}, epoch=i)


def test_a_reader_racing_the_checkpoint_writer_never_sees_a_partial_file(tmp_path):
    path = tmp_path / "last.pt"
    _write_checkpoints(path, 1)
    writer = multiprocessing.get_context("fork").Process(target=_write_checkpoints, args=(path, 150))
    writer.start()
    seen = set()
    while writer.is_alive():
        payload = convnets.read_checkpoint(path)  # raises on a torn file
        i = payload["card"]["i"]
        assert payload["epoch"] == i
        assert all(torch.all(v == i) for k, v in payload["state_dict"].items() if k.endswith(("weight", "bias")))
        seen.add(i)
    writer.join()
    assert writer.exitcode == 0
    assert len(seen) > 3  # the reader really overlapped many writes
    assert convnets.read_checkpoint(path)["card"]["i"] == 149
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary files left behind
