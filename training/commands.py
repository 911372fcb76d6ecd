"""A run's options as the ``convnet-lab train`` (or ``submit``) command line that makes the same run.

The inverse of ``training.cli.config_from_args``: parsing the line gives back the config (tests/test_commands.py
checks the round trip). Only what differs from the CLI's defaults is written, so the line stays short.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import fields

from .augment import Distortion
from .loop import TrainConfig

# TrainConfig field -> flag, for the plain values; the CLI default of each is the field's own default
_FLAGS = {"epochs": "--epochs", "batch_size": "--batch-size", "optimizer": "--optimizer", "lr": "--lr",
          "momentum": "--momentum", "weight_decay": "--weight-decay", "label_smoothing": "--label-smoothing",
          "warmup": "--warmup", "schedule": "--schedule", "seed": "--seed", "device": "--device",
          "train_limit": "--limit", "precision": "--precision"}
_SWITCHES = {"nesterov": "--nesterov", "augment": "--augment"}  # BooleanOptionalAction: --x / --no-x / unset
_DISTORTION = [f.name for f in fields(Distortion) if f.name != "elastic_sigma"]  # the CLI has no elastic_sigma flag


def _option(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def command_words(config: TrainConfig, command: str = "train") -> list[str]:
    """``convnet-lab COMMAND --model ... --data ...`` as a list of words, for ``config`` as given (not resolved)."""
    if command not in ("train", "submit"):
        raise ValueError(f"command must be train or submit, got {command!r}")
    if config.distort is not None and config.distort.elastic_sigma != Distortion().elastic_sigma:
        raise ValueError("the command line cannot set elastic_sigma; keep the default")
    words = ["convnet-lab", command, "--model", config.model]
    for key, value in config.options.items():
        words += ["--option", f"{key}={_option(value)}"]
    words += ["--data", config.data]
    defaults = TrainConfig()
    for name, flag in _FLAGS.items():
        value = getattr(config, name)
        if value is not None and value != getattr(defaults, name):
            words += [flag, str(value)]
    for name, flag in _SWITCHES.items():
        value = getattr(config, name)
        if value is not None:
            words.append(flag if value else f"--no-{flag[2:]}")
    words += ["--exclude-sample"] if config.exclude_sample else []
    if config.distort is not None:
        words.append("--distort")
        for name in _DISTORTION:
            value = getattr(config.distort, name)
            if value != getattr(Distortion(), name):
                words += [f"--{name}", str(value)]
    return words


def command_line(config: TrainConfig, command: str = "train") -> str:
    """The shell line of :func:`command_words`, quoted for a POSIX shell."""
    return shlex.join(command_words(config, command))
