"""The run store: a queue of training runs and their live metrics in one SQLite file (stdlib only).

Layout of a runs folder (``--runs DIR``, default ``$CONVNET_LAB_RUNS`` or ``~/.cache/convnet-lab/runs``)::

    runs.sqlite        the store (WAL mode: readers never block the worker)
    run-00001/         one folder per run: last.pt every epoch (atomic), model.pt at the end
    worker.pid         the background worker started by ``ensure_worker`` (and worker.log)

Table ``runs``: one row per run -- id, model, data, config (the full resolved TrainConfig as JSON),
recipe, state (queued, running, done, failed, cancelled), device, submitted / started / ended /
heartbeat (unix seconds), the owner (pid, host, attempt), stalls (deaths of its worker since the run
last finished an epoch), progress (epochs done, fractional), epochs, error (traceback). Table
``metrics``: run, epoch (fractional), step (optimiser steps), name, value (finite only), time.
A worker claims a run inside ``BEGIN IMMEDIATE`` (one writer at a time), so two workers never
take the same run; a running run whose owner is dead (its pid is gone on this host, or its heartbeat
is stale) is claimed again and resumed from its checkpoint -- unless it died ``MAX_ATTEMPTS`` times in a
row without finishing an epoch: then it is failed. A row whose config is not JSON is failed, never trained.

A full disk makes every write raise :class:`StoreFull` (SQLite rolls the transaction back, so nothing
written before is lost); the worker backs off and retries. A runs folder that cannot be written is opened
read-only with ``RunStore(dir, readonly=True)`` (``status`` does so): reading works, writing raises
:class:`StoreReadOnly`.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
SCHEMA_VERSION = 2  # 2: runs.stalls
STALE_AFTER = 60.0  # seconds without a heartbeat after which a running run is taken to be orphaned
MAX_ATTEMPTS = 3  # a run whose worker died this many times in a row without finishing an epoch is failed
DAMAGED_CONFIG = "its config in the run store is not a JSON object (a damaged row); resubmit it"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    data TEXT NOT NULL,
    config TEXT NOT NULL,
    recipe TEXT,
    state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    device TEXT,
    submitted REAL NOT NULL,
    started REAL,
    ended REAL,
    heartbeat REAL,
    pid INTEGER,
    host TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    stalls INTEGER NOT NULL DEFAULT 0,
    progress REAL NOT NULL DEFAULT 0,
    epochs INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS runs_state ON runs (state, id);
CREATE TABLE IF NOT EXISTS metrics (
    run INTEGER NOT NULL REFERENCES runs (id),
    epoch REAL NOT NULL,
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics (run, name, step);
"""


class StoreError(ValueError):
    """A run store that cannot be used, or a run that does not exist; the message says what to do."""


class StoreFull(StoreError):
    """The disk of the run store is full: a write was rolled back, nothing already stored is lost."""


class StoreReadOnly(StoreError):
    """The runs folder (or the store file) cannot be written; ``RunStore(dir, readonly=True)`` can still read it."""


def default_runs_dir() -> Path:
    """``$CONVNET_LAB_RUNS`` or ``~/.cache/convnet-lab/runs``."""
    return Path(os.environ.get("CONVNET_LAB_RUNS", Path.home() / ".cache" / "convnet-lab" / "runs"))


@dataclass(frozen=True)
class Owner:
    """A worker process: who holds a running run."""

    pid: int
    host: str

    @classmethod
    def me(cls) -> Owner:
        return cls(os.getpid(), socket.gethostname())


@dataclass(frozen=True)
class Run:
    """One row of ``runs``."""

    id: int
    model: str
    data: str
    config: dict
    recipe: str | None
    state: str
    device: str | None
    submitted: float
    started: float | None
    ended: float | None
    heartbeat: float | None
    pid: int | None
    host: str | None
    attempts: int
    stalls: int
    progress: float
    epochs: int
    error: str | None
    problem: str | None = None  # why the row cannot be trained (its config is not JSON), else None

    @property
    def owner(self) -> Owner | None:
        return Owner(self.pid, self.host) if self.pid is not None and self.host is not None else None

    def orphaned(self, now: float | None = None, stale_after: float = STALE_AFTER) -> bool:
        """A running run whose worker is dead: its pid gone on this host, or its heartbeat stale."""
        return self.state == "running" and orphaned(self.heartbeat, self.pid, self.host, now or time.time(), stale_after)


@dataclass(frozen=True)
class Metric:
    """One row of ``metrics``."""

    epoch: float
    step: int
    name: str
    value: float
    time: float


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def orphaned(heartbeat: float | None, pid: int | None, host: str | None, now: float, stale_after: float,
             me: Owner | None = None) -> bool:
    """Whether a running run's owner is dead: no or a stale heartbeat, or a pid gone on this host."""
    if heartbeat is None or now - heartbeat > stale_after:
        return True
    return host == (me or Owner.me()).host and (pid is None or not pid_alive(pid))


def parse_config(text: str) -> dict | None:
    """A run row's config column as a dict; None when it is not a JSON object (a damaged row)."""
    try:
        config = json.loads(text)
    except (TypeError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def run_dir(runs_dir: Path, run_id: int) -> Path:
    """Run ``run_id``'s checkpoint folder in ``runs_dir`` (a path only: no database is opened)."""
    return runs_dir / f"run-{run_id:05d}"


class RunStore:
    """The runs folder's SQLite store. One instance per thread (sqlite3 connections are not shared).

    ``readonly``: open an existing store without writing anything (a read-only runs folder); writes raise StoreReadOnly.
    """

    def __init__(self, runs_dir: str | Path | None = None, readonly: bool = False):
        self.runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        self.path = self.runs_dir / "runs.sqlite"
        self.readonly = readonly
        if self.runs_dir.exists() and not self.runs_dir.is_dir():
            raise StoreError(f"runs folder {self.runs_dir} is a file; pass a folder with --runs")
        if readonly:
            self._open_readonly()
            return
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create runs folder {self.runs_dir} ({exc.strerror}); pass a writable --runs folder") \
                from None
        if not os.access(self.runs_dir, os.W_OK | os.X_OK):
            raise StoreReadOnly(f"runs folder {self.runs_dir} is not writable; pass a writable --runs folder")
        with self._errors():
            self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} was written by a newer convnet-lab (schema {version}); upgrade convnet-lab")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            if version < SCHEMA_VERSION:
                with self._write():
                    if version == 1:  # a store of an older convnet-lab: add what it lacks
                        self.db.execute("ALTER TABLE runs ADD COLUMN stalls INTEGER NOT NULL DEFAULT 0")
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            self.db.execute(statement)
                    self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _open_readonly(self) -> None:
        """Read the store without writing a byte: ``mode=ro`` (which reads a WAL left by a worker), else, when there
        is no WAL to read (a store closed cleanly in a folder that cannot be written), ``immutable=1``; no store: empty."""
        def connect(uri: str) -> sqlite3.Connection:
            db = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # opens the file now
            return db

        with self._errors():
            if not self.path.exists():
                self.db = connect("file:empty?mode=memory")
                self.db.executescript(SCHEMA)
                return
            uri = self.path.resolve().as_uri()
            try:
                self.db = connect(f"{uri}?mode=ro")
            except sqlite3.OperationalError:
                wal = self.path.with_name(self.path.name + "-wal")
                if wal.exists() and wal.stat().st_size > 0:
                    raise
                self.db = connect(f"{uri}?immutable=1")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} was written by a newer convnet-lab (schema {version}); upgrade convnet-lab")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ plumbing

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """sqlite3 errors as one clear StoreError line."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            if "not a database" in text or "malformed" in text:
                raise StoreError(f"{self.path} is not a readable run store ({text}); move it aside and "
                                 "resubmit, or pass another --runs folder") from None
            if getattr(exc, "sqlite_errorcode", None) == getattr(sqlite3, "SQLITE_FULL", 13) or "disk is full" in text:
                raise StoreFull(f"disk full: cannot write the run store {self.path} ({text}); free space on its disk "
                                "(nothing stored before is lost)") from None
            if "readonly" in text:
                raise StoreReadOnly(f"cannot write the run store {self.path} ({text}); pass a writable --runs folder") \
                    from None
            if "unable to open" in text:
                raise StoreError(f"cannot open the run store {self.path} ({text}); pass a writable --runs folder") \
                    from None
            raise StoreError(f"run store {self.path}: {text}") from None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``BEGIN IMMEDIATE`` takes the write lock up front. A failed COMMIT (a full disk)
        is rolled back too, so the connection stays usable."""
        if self.readonly:
            raise StoreReadOnly(f"the run store {self.path} is open read-only ({self.runs_dir} cannot be written); "
                                "pass a writable --runs folder to change it")
        with self._errors():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL does)
                    try:
                        self.db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise

    def _read(self, sql: str, args: Iterable = ()) -> list[dict]:
        with self._errors():
            return [dict(row) for row in self.db.execute(sql, tuple(args)).fetchall()]

    @staticmethod
    def _run(row: dict) -> Run:
        """A row as a Run; a config that is not JSON reads as {} with the reason in ``problem`` (claim fails such a
        run instead of training it). A store of schema 1 (read-only, not upgraded) has no stalls."""
        config = parse_config(row["config"])
        return Run(**{"stalls": 0, **row, "config": config or {}, "problem": None if config is not None else DAMAGED_CONFIG})

    # ------------------------------------------------------------------------------------------ queue

    def submit(self, config: dict, recipe: str | None = None) -> int:
        """Queue a run of a resolved TrainConfig (as :meth:`TrainConfig.card` gives it); returns its id."""
        with self._write() as db:
            cursor = db.execute("INSERT INTO runs (model, data, config, recipe, submitted, epochs) VALUES (?, ?, ?, ?, ?, ?)",
                                (config["model"], config["data"], json.dumps(config), recipe, time.time(),
                                 int(config["epochs"])))
            return int(cursor.lastrowid)

    def get(self, run_id: int) -> Run:
        """The run with this id, or a StoreError naming the folder."""
        rows = self._read("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise StoreError(f"no run {run_id} in {self.runs_dir}; `convnet-lab status --runs {self.runs_dir}` lists them")
        return self._run(rows[0])

    def runs(self, states: Iterable[str] | None = None) -> list[Run]:
        """All runs (or those in ``states``) in submission order."""
        if states is None:
            return [self._run(r) for r in self._read("SELECT * FROM runs ORDER BY id")]
        states = list(states)
        marks = ", ".join("?" * len(states))
        return [self._run(r) for r in self._read(f"SELECT * FROM runs WHERE state IN ({marks}) ORDER BY id", states)]

    def run_dir(self, run_id: int) -> Path:
        """The run's checkpoint folder."""
        return run_dir(self.runs_dir, run_id)

    def _fail(self, db: sqlite3.Connection, run_id: int, now: float, error: str) -> None:
        db.execute("UPDATE runs SET state = 'failed', ended = ?, error = ? WHERE id = ?", (now, error, run_id))

    def claim(self, owner: Owner | None = None, stale_after: float = STALE_AFTER) -> Run | None:
        """Atomically take the oldest queued or orphaned run for ``owner``; None when there is none.

        An orphaned run counts a stall (a death without a finished epoch since the last); at ``MAX_ATTEMPTS``
        stalls in a row it is failed. A run whose config is not a JSON object is failed.
        """
        owner = owner or Owner.me()
        with self._write() as db:
            now = time.time()
            for row in db.execute("SELECT id, state, heartbeat, pid, host, stalls, config FROM runs "
                                  "WHERE state IN ('queued', 'running') ORDER BY id").fetchall():
                stall = 0
                if row["state"] == "running":
                    if not orphaned(row["heartbeat"], row["pid"], row["host"], now, stale_after, owner):
                        continue
                    stall = 1
                    if row["stalls"] + 1 >= MAX_ATTEMPTS:
                        self._fail(db, row["id"], now, f"its worker died {row['stalls'] + 1} times while running it "
                                   f"without finishing an epoch (last: pid {row['pid']} on {row['host']}); "
                                   "resubmit it to try again")
                        continue
                if parse_config(row["config"]) is None:
                    self._fail(db, row["id"], now, DAMAGED_CONFIG)
                    continue
                db.execute("UPDATE runs SET state = 'running', pid = ?, host = ?, heartbeat = ?, attempts = attempts + 1, "
                           "stalls = stalls + ?, started = COALESCE(started, ?) WHERE id = ? AND state = ?",
                           (owner.pid, owner.host, now, stall, now, row["id"], row["state"]))
                return self._run(dict(db.execute("SELECT * FROM runs WHERE id = ?", (row["id"],)).fetchone()))
        return None

    def _owned(self, db: sqlite3.Connection, run_id: int, owner: Owner) -> bool:
        row = db.execute("SELECT state, pid, host FROM runs WHERE id = ?", (run_id,)).fetchone()
        return row is not None and tuple(row) == ("running", owner.pid, owner.host)

    def heartbeat(self, run_id: int, owner: Owner) -> bool:
        """Mark ``owner`` alive on its run; False when the run is no longer its (cancelled, reclaimed)."""
        with self._write() as db:
            if not self._owned(db, run_id, owner):
                return False
            db.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time(), run_id))
            return True

    def report(self, run_id: int, owner: Owner, epoch: float, step: int, metrics: dict[str, float],
               device: str | None = None, epoch_done: bool = False) -> bool:
        """Append metrics (one transaction), move progress and heartbeat; False when the run is no longer ``owner``'s.

        NaN and infinite values are left out (SQLite would store them as NULL). ``epoch_done``: an epoch was finished
        and saved, so the run's stalls start again from 0.
        """
        with self._write() as db:
            if not self._owned(db, run_id, owner):
                return False
            now = time.time()
            db.executemany("INSERT INTO metrics (run, epoch, step, name, value, time) VALUES (?, ?, ?, ?, ?, ?)",
                           [(run_id, epoch, step, name, float(value), now) for name, value in metrics.items()
                            if math.isfinite(float(value))])
            db.execute("UPDATE runs SET progress = ?, heartbeat = ?, device = COALESCE(?, device), "
                       "stalls = CASE WHEN ? THEN 0 ELSE stalls END WHERE id = ?", (epoch, now, device, epoch_done, run_id))
            return True

    def rewind(self, run_id: int, owner: Owner, epoch: float) -> None:
        """Forget the metrics after ``epoch`` (a resumed run repeats them from its checkpoint)."""
        with self._write() as db:
            if self._owned(db, run_id, owner):
                db.execute("DELETE FROM metrics WHERE run = ? AND epoch > ?", (run_id, epoch))
                db.execute("UPDATE runs SET progress = ? WHERE id = ?", (epoch, run_id))

    def finish(self, run_id: int, owner: Owner, state: str, error: str | None = None) -> bool:
        """End ``owner``'s run as done or failed; False if it was no longer ``owner``'s (e.g. cancelled)."""
        if state not in ("done", "failed"):
            raise ValueError(f"a worker finishes a run as done or failed, not {state}")
        with self._write() as db:
            if not self._owned(db, run_id, owner):
                return False
            progress = "epochs" if state == "done" else "progress"
            db.execute(f"UPDATE runs SET state = ?, ended = ?, error = ?, progress = {progress} WHERE id = ?",
                       (state, time.time(), error, run_id))
            return True

    def release(self, run_id: int, owner: Owner, epoch: float | None = None, note: str | None = None) -> bool:
        """Give ``owner``'s running run back to the queue (a worker shutting down; a full disk); it resumes from its
        checkpoint. ``epoch``: the epochs its checkpoint holds -- later metrics go and progress goes back there, in the
        same transaction. ``note`` (why it waits; none clears an older one) shows in ``status``. False if it was not ``owner``'s.
        """
        with self._write() as db:
            if not self._owned(db, run_id, owner):
                return False
            if epoch is not None:
                db.execute("DELETE FROM metrics WHERE run = ? AND epoch > ?", (run_id, epoch))
                db.execute("UPDATE runs SET progress = ? WHERE id = ?", (epoch, run_id))
            db.execute("UPDATE runs SET state = 'queued', pid = NULL, host = NULL, heartbeat = NULL, "
                       "attempts = attempts - 1, error = ? WHERE id = ?", (note, run_id))
            return True

    def cancel(self, run_id: int) -> Run:
        """Cancel a queued or running run (its worker stops within seconds); a StoreError if it already ended."""
        with self._write() as db:
            row = db.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"no run {run_id} in {self.runs_dir}; `convnet-lab status --runs {self.runs_dir}` lists them")
            if row[0] in FINISHED:
                raise StoreError(f"run {run_id} already ended ({row[0]}); nothing to cancel")
            db.execute("UPDATE runs SET state = 'cancelled', ended = ? WHERE id = ?", (time.time(), run_id))
        return self.get(run_id)

    # ------------------------------------------------------------------------------------------ metrics

    def metrics(self, run_id: int, name: str | None = None) -> list[Metric]:
        """A run's metrics in the order written (one name, or all)."""
        sql = "SELECT epoch, step, name, value, time FROM metrics WHERE run = ?"
        args: list = [run_id]
        if name is not None:
            sql += " AND name = ?"
            args.append(name)
        return [Metric(**r) for r in self._read(sql + " ORDER BY rowid", args)]

    def latest(self, run_id: int) -> dict[str, float]:
        """The most recent value of each metric of a run."""
        rows = self._read("SELECT name, value FROM metrics WHERE rowid IN "
                          "(SELECT MAX(rowid) FROM metrics WHERE run = ? GROUP BY name)", (run_id,))
        return {r["name"]: r["value"] for r in rows}
