"""The one file format for trained models: a dict of tensors and plain values.

Written with :func:`torch.save`, read with ``torch.load(weights_only=True)``,
so loading never executes code. Keys: ``format``, ``model`` (registry name),
``options`` (constructor keywords), ``state_dict`` and ``card`` (data, recipe,
metrics); training checkpoints add ``optimizer`` and ``epoch``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT = "convnet-lab/checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the problem and the fix."""


def save_checkpoint(path: str | Path, model_name: str, options: dict, model: nn.Module, card: dict,
                    **extra: Any) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "model": model_name, "options": dict(options),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "card": card, **extra}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
