"""The one file format for trained models: a dict of tensors and plain values.

Written with :func:`torch.save`, read with ``torch.load(weights_only=True)``,
so loading never executes code. Keys: ``format``, ``model`` (registry name),
``options`` (constructor keywords), ``state_dict`` and ``card`` (data, recipe,
metrics); training checkpoints add ``optimizer`` and ``epoch``.

A write that runs out of disk space raises :class:`DiskFullError` (an OSError) with one line saying so and
leaves the previous file as it was (torch itself would report it as "unexpected pos").
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT = "convnet-lab/checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the problem and the fix."""


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # no space left on the device; disk quota exceeded


class DiskFullError(OSError):
    """A write that ran out of disk space (``errno`` ENOSPC or EDQUOT); ``str()`` is its one-line message."""

    def __str__(self) -> str:
        return str(self.strerror)


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is an OSError saying the disk (or the quota) is full."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL


class _Recorder:
    """A file's ``write`` that keeps the OSError it raised: torch.save turns it into "unexpected pos"."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.file.flush()


_open_for_writing = os.fdopen  # the fault tests swap in a file that fills the disk


def save_checkpoint(path: str | Path, model_name: str, options: dict, model: nn.Module, card: dict,
                    **extra: Any) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then rename).

    On a full disk nothing is replaced: the temporary file is removed and :class:`DiskFullError` says so in one line.
    """
    path = Path(path)
    payload = {"format": FORMAT, "model": model_name, "options": dict(options),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "card": card, **extra}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with _open_for_writing(fd, "wb") as f:
            writer = _Recorder(f)
            try:
                torch.save(payload, writer)
            except RuntimeError:
                if writer.error is not None:  # the real cause, not torch's "unexpected pos 704 vs 598"
                    raise writer.error from None
                raise
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if disk_full(exc):
            kept = f"{path.name} there is unchanged" if path.exists() else f"no {path.name} was written"
            raise DiskFullError(exc.errno, f"disk full: could not write {path} ({os.strerror(exc.errno)}); {kept}; "
                                "free space on that disk, then resume the run (train --resume; a worker resumes it "
                                "by itself)") from None
        raise
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint without executing code; a clear CheckpointError on anything wrong.

    Damaged bytes make ``torch.load`` raise almost anything (struct.error, IndexError, KeyError, UnicodeDecodeError,
    ...), so every exception of the load becomes one CheckpointError line; then the payload's keys and types are checked.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: check the path")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # any failure to parse the file means the same to the caller: damaged
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(exc).__name__}): it may be truncated or corrupt; "
            "re-run the training command to write it again"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a convnet-lab checkpoint: write it with `convnet-lab train`")
    problem = payload_problem(payload)
    if problem:
        raise CheckpointError(f"{path} is a damaged convnet-lab checkpoint ({problem}); "
                              "re-run the training command to write it again")
    return payload


# key -> (required, type, what it should be); training checkpoints add the optional ones
PAYLOAD_KEYS: dict[str, tuple[bool, type | tuple[type, ...], str]] = {
    "model": (True, str, "a model name"),
    "options": (True, dict, "a dict of constructor options"),
    "state_dict": (True, dict, "a dict of tensors"),
    "card": (True, dict, "a dict"),
    "epoch": (False, int, "a whole number"),
    "optimizer": (False, dict, "a dict"),
    "rng": (False, list, "a list of RNG states"),
    "scaler": (False, dict, "a dict"),
}


def payload_problem(payload: dict) -> str | None:
    """What is wrong with a loaded checkpoint dict (a missing key, a value of the wrong type), or None."""
    for key, (required, kind, what) in PAYLOAD_KEYS.items():
        if key not in payload:
            if required:
                return f"no '{key}'"
            continue
        value = payload[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"'{key}' is {type(value).__name__}, not {what}"
    if not all(isinstance(k, str) for k in payload["options"]):
        return "'options' has keys that are not names"
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload["state_dict"].items()):
        return "'state_dict' holds something other than named tensors"
    if "epoch" in payload and payload["epoch"] < 0:
        return f"'epoch' is {payload['epoch']}"
    return None


def load_state(model: nn.Module, payload: dict, source: str = "checkpoint") -> nn.Module:
    """Load ``payload['state_dict']`` into ``model``, turning shape or key mismatches into one clear line."""
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise CheckpointError(
            f"{source} does not fit {type(model).__name__} ({detail}); "
            f"it was written for model '{payload.get('model')}' with options {payload.get('options')}"
        ) from None
    return model
