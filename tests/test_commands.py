"""training.commands writes the command line of a run; parsing that line gives back the same config."""

import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.augment import Distortion
from training.cli import build_parser, config_from_args
from training.commands import command_line, command_words
from training.loop import TrainConfig


def parsed(line: str) -> TrainConfig:
    """What ``convnet-lab`` builds from the line (its own parser, not ours)."""
    words = shlex.split(line)
    assert words[0] == "convnet-lab"
    return config_from_args(build_parser().parse_args(words[1:]))


def test_a_plain_run_gives_a_short_line():
    config = TrainConfig(model="lenet5", data="sample", epochs=2)
    assert command_line(config) == "convnet-lab train --model lenet5 --data sample --epochs 2"
    assert parsed(command_line(config)) == config


def test_the_training_pages_runs_round_trip_as_submit_lines():
    modern = TrainConfig(model="lenet5-modern", options={"dropout": 0.5, "activation": "tanh"}, data="sample",
                         epochs=2, train_limit=300, distort=Distortion())
    line = command_line(modern, "submit")
    assert line.startswith("convnet-lab submit --model lenet5-modern --option dropout=0.5 --option activation=tanh")
    assert "--limit 300" in line and "--distort" in line
    assert parsed(line) == modern
    alex = TrainConfig(model="alexnet-cifar", options={"lrn": False}, data="/data/my images", precision="bf16", epochs=3)
    line = command_line(alex, "submit")
    assert "--data '/data/my images'" in line and "--option lrn=false" in line and "--precision bf16" in line
    assert parsed(line) == alex


def test_switches_and_distortion_strengths_are_written_both_ways():
    config = TrainConfig(model="alexnet-cifar", data="cifar10-sample", nesterov=False, augment=True, lr=0.01,
                         weight_decay=0.0005, warmup=0.5, schedule="linear", seed=3, device="cpu", batch_size=64)
    line = command_line(config)
    assert "--no-nesterov" in line and "--augment" in line and "--schedule linear" in line
    assert parsed(line) == config
    bent = TrainConfig(model="lenet5", data="sample", exclude_sample=True, distort=Distortion(rotate=5.0, elastic=2.0))
    line = command_line(bent)
    assert "--exclude-sample" in line and "--rotate 5.0" in line and "--elastic 2.0" in line and "--shear" not in line
    assert parsed(line) == bent


def test_what_the_command_line_cannot_say_is_refused():
    with pytest.raises(ValueError, match="train or submit"):
        command_words(TrainConfig(), "evaluate")
    with pytest.raises(ValueError, match="elastic_sigma"):
        command_words(TrainConfig(distort=Distortion(elastic_sigma=2.0)))


@settings(max_examples=60, deadline=None)
@given(epochs=st.none() | st.integers(1, 500), lr=st.none() | st.floats(1e-5, 1.0),
       batch=st.none() | st.integers(1, 512), limit=st.none() | st.integers(1, 60_000),
       dropout=st.floats(0, 0.9), nesterov=st.none() | st.booleans(), translate=st.none() | st.floats(0, 4),
       data=st.sampled_from(["sample", "mnist", "runs/a b.npz", "x'y"]))
def test_any_digit_run_round_trips(epochs, lr, batch, limit, dropout, nesterov, translate, data):
    config = TrainConfig(model="lenet5-modern", options={"dropout": dropout}, data=data, epochs=epochs, lr=lr,
                         batch_size=batch, train_limit=limit, nesterov=nesterov,
                         distort=None if translate is None else Distortion(translate=translate))
    assert parsed(command_line(config)) == config
