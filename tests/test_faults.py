"""Fault injection: damaged checkpoints, bad run folders, dying workers, diverging runs and bad input each give one
clear line (or a clear state in the store), and nothing finished is lost.

Everything runs on a few hundred digits of the offline sample with one torch thread.
"""

import functools
import gzip
import math
import os
import random
import socket
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import convnets
from convnets.checkpoint import FORMAT, CheckpointError
from training.cli import main
from training.loop import TrainConfig, train
from training.store import MAX_ATTEMPTS, Owner, RunStore
from training.worker import execute, serve, submit

torch.set_num_threads(1)

FUZZ_CASES = int(os.environ.get("CONVNET_LAB_FUZZ_CASES", "1200"))  # more for a longer hunt


def _quiet(*_args):
    pass


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    """A real training checkpoint (weights, optimiser, epoch, RNG) of a small model, as bytes."""
    torch.manual_seed(0)
    model = convnets.get_model("lenet5-modern")
    optimizer = torch.optim.Adam(model.parameters())
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    convnets.save_checkpoint(path, "lenet5-modern", {}, model, {"test_error": 1.5}, optimizer=optimizer.state_dict(),
                             epoch=1, rng=[{"torch": torch.get_rng_state()}])
    return path.read_bytes()


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One deterministic damage: a truncation, bit flips, random or zeroed spans, deleted or inserted bytes --
    aimed at the pickled header, the zip directory at the end, or anywhere."""
    b, n = bytearray(data), len(data)
    low, high = rng.choice([(0, min(n, 2500)), (max(0, n - 3000), n), (0, n)])
    at = rng.randrange(low, high)
    kind = rng.randrange(6)
    if kind == 0:
        return bytes(b[:rng.randrange(n)])
    if kind == 1:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(low, high)] ^= 1 << rng.randrange(8)
    elif kind == 2:
        b[at:at + rng.randint(1, 16)] = rng.randbytes(rng.randint(1, 16))
    elif kind == 3:
        b[at:at + 64] = bytes(64)
    elif kind == 4:
        del b[at:at + rng.randint(1, 32)]
    else:
        b[at:at] = rng.randbytes(rng.randint(1, 8))
    return bytes(b)


def _only_checkpoint_errors(path: Path, data: bytes, escapes: list) -> bool:
    """Read and rebuild ``data`` as a checkpoint; True when it loaded, False on CheckpointError; records anything else."""
    path.write_bytes(data)
    try:
        convnets.model_from_checkpoint(convnets.read_checkpoint(path), str(path))
        return True
    except CheckpointError as exc:
        assert "\n" not in str(exc)
        return False
    except Exception as exc:  # an escape: the fuzzer's finding
        escapes.append(f"{type(exc).__name__}: {exc}")
        return False


# ------------------------------------------------------------------------------------------ 1. checkpoints

def test_fuzzed_checkpoints_raise_only_checkpoint_error(checkpoint_bytes, tmp_path):
    rng = random.Random(10)
    escapes: list[str] = []
    loaded = sum(_only_checkpoint_errors(tmp_path / "bad.pt", mutate(checkpoint_bytes, rng), escapes)
                 for _ in range(FUZZ_CASES))
    assert escapes == []
    assert 0 < loaded < FUZZ_CASES // 2  # most damage is caught; flipped weight bytes still load (as other weights)


def test_fuzzed_checkpoints_with_hypothesis(checkpoint_bytes, tmp_path):
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    n = len(checkpoint_bytes)
    escapes: list[str] = []

    @hypothesis.settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @hypothesis.given(start=st.integers(0, n), length=st.integers(0, 64), junk=st.binary(max_size=64),
                      cut=st.integers(1, n))
    def check(start: int, length: int, junk: bytes, cut: int) -> None:
        data = (checkpoint_bytes[:start] + junk + checkpoint_bytes[start + length:])[:cut]
        _only_checkpoint_errors(tmp_path / "bad.pt", data, escapes)

    check()
    assert escapes == []


def _payload(checkpoint_bytes: bytes, tmp_path: Path) -> dict:
    (tmp_path / "good.pt").write_bytes(checkpoint_bytes)
    return convnets.read_checkpoint(tmp_path / "good.pt")


@pytest.mark.parametrize("change, message", [
    (lambda p: p.pop("state_dict"), "no 'state_dict'"),
    (lambda p: p.pop("model"), "no 'model'"),
    (lambda p: p.update(card=[1, 2]), "'card' is list, not a dict"),
    (lambda p: p.update(options="hidden=3"), "'options' is str"),
    (lambda p: p.update(epoch="one"), "'epoch' is str, not a whole number"),
    (lambda p: p["state_dict"].update(extra=[1.0]), "'state_dict' holds something other than named tensors"),
])
def test_payload_keys_and_types_are_checked(checkpoint_bytes, tmp_path, change, message):
    payload = _payload(checkpoint_bytes, tmp_path)
    change(payload)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="damaged convnet-lab checkpoint") as caught:
        convnets.read_checkpoint(tmp_path / "bad.pt")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_text_and_empty_files_are_not_checkpoints(tmp_path):
    (tmp_path / "notes.pt").write_text("these are my notes\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    for name in ("notes.pt", "empty.pt"):
        with pytest.raises(CheckpointError, match="not a readable checkpoint"):
            convnets.read_checkpoint(tmp_path / name)


@pytest.mark.parametrize("name, options", [("lenet5", {}), ("lenet5-modern", {"batch_norm": False}),
                                           ("alexnet-cifar", {"width": 0.25, "hidden": 16}), ("cnn4-cifar", {"width": 8})])
def test_shapes_known_without_building_match_the_built_model(name, options):
    kind, shapes = convnets.models.expected_shapes(name, options)
    model = convnets.get_model(name, **options)
    assert kind == type(model).__name__ and shapes == {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_options_are_checked_against_the_weights_before_the_model_is_built(tmp_path, monkeypatch):
    """A small file claiming hidden=20000 (a 2 GB model) is refused from shapes alone: nothing is built for real."""
    model = convnets.get_model("alexnet-cifar", width=0.25, hidden=16)
    payload = {"format": FORMAT, "model": "alexnet-cifar", "options": {"width": 0.25, "hidden": 20000},
               "state_dict": model.state_dict(), "card": {}}
    torch.save(payload, tmp_path / "liar.pt")
    devices = []
    real = convnets.models.MODELS["alexnet-cifar"]

    @functools.wraps(real)
    def spy(**options):
        devices.append(torch.get_default_device().type)
        return real(**options)

    monkeypatch.setitem(convnets.models.MODELS, "alexnet-cifar", spy)
    with pytest.raises(CheckpointError, match=r"does not fit AlexNetCifar \(.*\(20000, .*in the model"):
        convnets.model_from_checkpoint(convnets.read_checkpoint(tmp_path / "liar.pt"), "liar.pt")
    assert devices == ["meta"]
    for options, match in [({"width": 0.25, "hidden": "big"}, "cannot be built"), ({"depth": 3}, "has no option depth")]:
        torch.save({**payload, "options": options}, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=match):
            convnets.model_from_checkpoint(convnets.read_checkpoint(tmp_path / "bad.pt"), "bad.pt")
    torch.save({**payload, "options": {"width": 0.25, "hidden": 16}}, tmp_path / "good.pt")
    rebuilt = convnets.model_from_checkpoint(convnets.read_checkpoint(tmp_path / "good.pt"))
    assert devices == ["meta"] * 3 + ["cpu"] and torch.equal(rebuilt.state_dict()["classifier.fc8.weight"],
                                                             model.state_dict()["classifier.fc8.weight"])


# ------------------------------------------------------------------------------------------ 3. workers and ranks

def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture(scope="module")
def digits(sample_data, tmp_path_factory) -> str:
    """256 real training digits and 200 test digits as an .npz (what a worker loads from a run's config)."""
    pick = torch.randperm(len(sample_data.train_y), generator=torch.Generator().manual_seed(0))[:256]
    path = tmp_path_factory.mktemp("digits") / "digits.npz"
    np.savez(path, x_train=sample_data.train_x[pick].numpy(), y_train=sample_data.train_y[pick].numpy(),
             x_test=sample_data.test_x[:200].numpy(), y_test=sample_data.test_y[:200].numpy())
    return str(path)


def test_a_progressing_run_is_never_failed_for_its_deaths_but_a_stuck_one_is(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.submit({"model": "lenet5", "data": "sample", "epochs": 30})
    owner = Owner(_dead_pid(), socket.gethostname())  # every life "dies" as soon as it stops
    for life in range(1, 11):
        run = store.claim(owner)
        assert run.id == run_id and run.attempts == life and run.stalls == (life > 1)
        assert store.report(run_id, owner, float(life), life * 10, {"test_error": 5.0}, epoch_done=True)
    for stall in range(1, MAX_ATTEMPTS):  # then it dies again and again without finishing an epoch
        assert store.claim(owner).stalls == stall
    assert store.claim(owner) is None
    run = store.get(run_id)
    assert run.state == "failed" and run.attempts == 10 + MAX_ATTEMPTS - 1
    assert f"died {MAX_ATTEMPTS} times while running it without finishing an epoch" in run.error


class Killed(BaseException):
    """A kill -9 of the worker, at a chosen store write: nothing after it runs, the run stays `running`."""


class DyingStore(RunStore):
    """The worker's store, whose process "dies" on its ``die_at``-th report."""

    def __init__(self, runs_dir: Path, die_at: int):
        super().__init__(runs_dir)
        self.die_at, self.reports = die_at, 0

    def report(self, *args, **kwargs) -> bool:
        self.reports += 1
        if self.reports == self.die_at:
            raise Killed
        return super().report(*args, **kwargs)


# The report at which each life dies: 1 is the start, 2-9 the 8 steps of its first epoch, 10 that epoch's report
# (its checkpoint is written right after), 11-18 the next epoch's steps; 11 is the first report after the checkpoint,
# which restarts the run's stalls. Lives dying at 11 or later made progress; at 12 or later they also said so, and
# between two of those at most one life makes none that counts (MAX_ATTEMPTS = 3).
DEATHS = [2, 12, 11, 13, 5, 12, 10, 14, 3, 12, 6, 13]


def test_a_worker_killed_twelve_times_finishes_with_the_uninterrupted_weights(tmp_path, digits):
    settings = {"model": "lenet5-modern", "options": {"dropout": 0.2}, "data": digits, "epochs": 9, "batch_size": 32,
                "seed": 3}
    runs = tmp_path / "runs"
    run_id = submit(TrainConfig(**settings), runs)
    owner = Owner(_dead_pid(), socket.gethostname())
    for die_at in [*DEATHS, None]:
        store = DyingStore(runs, die_at or 0)
        run = store.claim(owner)
        assert run is not None and run.id == run_id, store.get(run_id).error
        try:
            state = execute(run, store.run_dir(run_id), store, owner, report_every=0.0, log=_quiet)
            assert die_at is None and state == "done"
        except Killed:
            assert store.get(run_id).state == "running"
        finally:
            store.close()
    with RunStore(runs) as store:
        run = store.get(run_id)
        assert run.state == "done" and run.attempts == len(DEATHS) + 1 and run.stalls == 0
        assert [m.epoch for m in store.metrics(run_id, "test_error")] == [float(e) for e in range(1, 10)]
    resumed = convnets.read_checkpoint(store.run_dir(run_id) / "model.pt")["state_dict"]
    model, _ = train(TrainConfig(**settings), progress=False, log=_quiet)
    gap = max((resumed[k].float() - v.float()).abs().max().item() for k, v in model.state_dict().items())
    assert gap == 0.0


def test_a_diverging_run_fails_with_one_clear_line_and_no_nan_in_the_store(tmp_path, digits):
    runs = tmp_path / "runs"
    run_id = submit(TrainConfig(model="lenet5-modern", options={"batch_norm": False}, data=digits, optimizer="sgd",
                                lr=1e10, epochs=2, batch_size=32), runs)
    assert serve(runs, once=True, report_every=0.0, log=_quiet) == 1
    with RunStore(runs) as store:
        run = store.get(run_id)
        assert run.state == "failed"
        assert run.error.strip().splitlines()[-1].endswith("diverged at epoch 1 (loss nan); lower --lr (now 1e+10)")
        assert all(math.isfinite(m.value) for m in store.metrics(run_id))
        owner = Owner.me()
        other = store.submit({"model": "lenet5", "data": "sample", "epochs": 1})
        assert store.claim(owner).id == other
        assert store.report(other, owner, 0.5, 3, {"loss": float("nan"), "lr": float("inf"), "train_error": 50.0})
        assert [(m.name, m.value) for m in store.metrics(other)] == [("train_error", 50.0)]


def test_a_dead_torchrun_peer_does_not_fail_the_run(tmp_path, monkeypatch):
    """Rank 0 sees gloo's "Connection reset by peer" when another rank dies: the worker stops, the run is resumed."""
    import training.worker as worker

    store = RunStore(tmp_path)
    run_id = store.submit(TrainConfig(data="sample", epochs=1).resolved().card())
    owner = Owner.me()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")

    def reset(*_args, **_kwargs):
        raise RuntimeError("[gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:41371: Connection reset by peer")

    monkeypatch.setattr(worker, "train", reset)
    monkeypatch.setattr(worker, "_load", lambda *_args: None)
    with pytest.raises(RuntimeError, match="Connection reset"):
        execute(store.claim(owner), store.run_dir(run_id), store, owner, log=_quiet)
    assert store.get(run_id).state == "running"  # resumed by the next worker once this one has exited

    def broken(*_args, **_kwargs):
        raise ValueError("the run's own fault")

    monkeypatch.setattr(worker, "train", broken)
    store.db.execute("UPDATE runs SET pid = ? WHERE id = ?", (_dead_pid(), run_id))
    assert execute(store.claim(owner), store.run_dir(run_id), store, owner, log=_quiet) == "failed"
    assert store.get(run_id).state == "failed"


@pytest.mark.parametrize("argv, message", [
    (["--lr", "inf"], "learning rate must be a finite number"),
    (["--lr", "nan"], "learning rate must be positive"),
    (["--lr", "0"], "learning rate must be positive"),
    (["--weight-decay", "-0.1"], "weight decay must be a finite number >= 0"),
    (["--weight-decay", "nan"], "weight decay must be a finite number >= 0"),
    (["--momentum", "-1"], "momentum must be a finite number >= 0"),
    (["--device", "gpu"], "unknown device 'gpu'"),
    (["--device", "cuda:99"], "no cuda:99 on this machine"),
    (["--model", "lenet5-modern", "--option", "dropout=abc"], "refuses options {'dropout': 'abc'}"),
])
def test_settings_that_would_fail_later_are_refused_at_submit(tmp_path, capsys, argv, message):
    runs = tmp_path / "runs"
    assert main(["submit", "--data", "sample", "--runs", str(runs), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convnet-lab: error: ") and message in err and err.count("\n") == 1
    assert not (runs / "runs.sqlite").exists() or RunStore(runs).runs() == []


# ------------------------------------------------------------------------------------------ 4. bad input, one line

def _npz(path: Path, **arrays) -> str:
    base = {"x_train": np.zeros((8, 28, 28), np.uint8), "y_train": np.arange(8) % 10,
            "x_test": np.zeros((4, 28, 28), np.uint8), "y_test": np.arange(4)}
    np.savez(path, **{**base, **arrays})
    return str(path)


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (convnet-lab arguments, what the one line says)."""
    (tmp / "notes.pt").write_text("my notes, not weights\n")
    (tmp / "empty.npz").write_bytes(b"")
    idx = tmp / "idx"
    idx.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (idx / f"{name}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + bytes(64))[:-9])  # cut short
    (tmp / "a-file").write_text("")
    train = ["train", "--epochs", "1", "--limit", "64", "--quiet", "--threads", "1"]
    return {
        "text file as checkpoint": (["evaluate", str(tmp / "notes.pt"), "--data", "sample"], "not a readable checkpoint"),
        "0-byte .npz": ([*train, "--data", str(tmp / "empty.npz")], "cannot be read as digits (EOFError"),
        "corrupt .gz idx files": ([*train, "--data", str(idx)], "cannot be read as digits (EOFError"),
        "empty training set": ([*train, "--data", _npz(tmp / "none.npz", x_train=np.zeros((0, 28, 28), np.uint8),
                                                       y_train=np.zeros(0, np.int64))], "has no training examples"),
        "NaN labels": ([*train, "--data", _npz(tmp / "nan.npz", y_train=np.full(8, np.nan))], "labels must be whole numbers"),
        "string pixels": ([*train, "--data", _npz(tmp / "str.npz", x_train=np.full((8, 28, 28), "a"))], "cannot be read"),
        "--option dropout=abc": ([*train, "--data", "sample", "--model", "lenet5-modern", "--option", "dropout=abc"],
                                 "refuses options"),
        "--out under a file": ([*train, "--data", "sample", "--out", str(tmp / "a-file" / "out")], "cannot write to --out"),
    }


def test_bad_input_gives_exit_code_2_and_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default --out lands here, never in the project
    failures = {}
    for name, (argv, message) in _bad_inputs(tmp_path).items():
        if argv[0] == "train" and "--out" not in argv:
            argv = [*argv, "--out", str(tmp_path / name.replace(" ", "-"))]
        code = main(argv)
        captured = capsys.readouterr()
        err = captured.err
        if not (code == 2 and err.startswith("convnet-lab: error: ") and err.count("\n") == 1 and message in err
                and "epoch" not in captured.out + err):
            failures[name] = (code, err[-300:])
    assert failures == {}


def test_a_damaged_resume_state_is_one_line_and_the_checkpoint_stays(tmp_path, capsys, digits):
    out = tmp_path / "out"
    argv = ["train", "--model", "lenet5-modern", "--data", digits, "--batch-size", "64", "--quiet", "--threads", "1",
            "--out", str(out)]
    assert main([*argv, "--epochs", "1"]) == 0
    payload = convnets.read_checkpoint(out / "last.pt")
    torch.save({**payload, "optimizer": {"state": {}, "param_groups": []}}, out / "last.pt")
    before = (out / "last.pt").read_bytes()
    capsys.readouterr()
    assert main([*argv, "--epochs", "1", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "holds a resume state that does not fit this run" in err and err.count("\n") == 1
    assert (out / "last.pt").read_bytes() == before and (out / "model.pt").is_file()


# ------------------------------------------------------------------------------------------ 5. the run store

def test_status_shows_a_dead_workers_run_as_stale_and_a_damaged_row_stops_nothing(tmp_path, capsys, digits):
    runs = tmp_path / "runs"
    with RunStore(runs) as store:
        damaged = store.submit({"model": "lenet5", "data": "sample", "epochs": 1})
        store.db.execute("UPDATE runs SET config = '{not json' WHERE id = ?", (damaged,))
        orphan = store.submit(TrainConfig(model="lenet5-modern", data=digits, epochs=1, batch_size=64).resolved().card())
        owner = Owner(_dead_pid(), socket.gethostname())  # its worker was killed
        assert store.claim(owner).id == orphan  # the damaged row is failed on the way, not trained
        assert store.get(damaged).state == "failed" and "not a JSON object" in store.get(damaged).error
    assert main(["status", "--runs", str(runs)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows[str(orphan)].split()[1] == "stale" and f"worker pid {owner.pid}" in rows[str(orphan)]
    assert rows[str(damaged)].split()[1] == "failed" and "not a JSON object" in rows[str(damaged)]
    assert serve(runs, once=True, log=_quiet) == 1  # the next worker resumes the stale run
    with RunStore(runs) as store:
        assert store.get(orphan).state == "done" and store.get(orphan).attempts == 2


def test_a_store_of_the_previous_schema_is_upgraded_in_place(tmp_path):
    from training import store as store_module

    old_schema = store_module.SCHEMA.replace("    stalls INTEGER NOT NULL DEFAULT 0,\n", "")
    db = sqlite3.connect(tmp_path / "runs.sqlite")
    db.executescript(old_schema + "PRAGMA user_version = 1;")
    db.execute("INSERT INTO runs (model, data, config, submitted, epochs) VALUES ('lenet5', 'sample', '{}', 0, 1)")
    db.commit()
    db.close()
    with RunStore(tmp_path) as store:
        assert [(r.id, r.stalls, r.state) for r in store.runs()] == [(1, 0, "queued")]
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION
