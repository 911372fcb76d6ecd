"""Training on real digits, checkpoints, determinism, and the CLI's handling of bad input."""

import subprocess
import sys

import pytest
import torch

import convnets
from training.cli import main
from training.loop import TrainConfig, error_rate, train


def _quiet(*_args):
    pass


# both recipes take batches of 128 (32 steps per epoch of 4,000 digits); the faithful network, without batch norm
# and with a warm-up, needs more of them to start: 6 epochs
@pytest.mark.parametrize("name, epochs, max_error", [("lenet5-modern", 2, 12.0), ("lenet5", 6, 20.0)])
def test_short_run_on_real_digits_learns(sample_data, name, epochs, max_error):
    model, card = train(TrainConfig(model=name, epochs=epochs, seed=0), data=sample_data, progress=False, log=_quiet)
    # chance is 90 % error; 4,000 training digits and a few epochs get far below it on the 1,000 held out
    assert card["test_error"] < max_error
    assert card["test_error"] == pytest.approx(error_rate(model, sample_data.test_x, sample_data.test_y))
    assert [e["epoch"] for e in card["epochs"]] == list(range(1, epochs + 1))


def test_same_seed_same_result_and_different_seed_differs(sample_data):
    def weights(seed):
        model, _ = train(TrainConfig(model="lenet5", epochs=1, seed=seed, train_limit=400), data=sample_data,
                         progress=False, log=_quiet)
        return torch.cat([p.flatten() for p in model.parameters()])

    assert torch.equal(weights(3), weights(3))
    assert not torch.equal(weights(3), weights(4))


def test_checkpoint_round_trip_keeps_weights_and_card(sample_data, tmp_path):
    model, card = train(TrainConfig(model="lenet5-modern", options={"dropout": 0.1}, epochs=1, train_limit=500),
                        data=sample_data, out=tmp_path, progress=False, log=_quiet, recipe="convnet-lab train ...")
    payload = convnets.read_checkpoint(tmp_path / "model.pt")
    loaded = convnets.model_from_checkpoint(payload).eval()
    x = sample_data.test_x[:16].unsqueeze(1).float() / 255
    assert torch.equal(loaded(x), model(x))
    assert payload["options"] == {"dropout": 0.1}
    assert payload["card"]["test_error"] == card["test_error"]
    assert payload["card"]["recipe"] == "convnet-lab train ..."
    last = convnets.read_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 1 and "state" in last["optimizer"]


def test_bad_checkpoints_give_one_clear_error(sample_data, tmp_path):
    train(TrainConfig(model="lenet5", epochs=1, train_limit=64), data=sample_data, out=tmp_path, progress=False,
          log=_quiet)
    good = (tmp_path / "model.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(convnets.CheckpointError, match="truncated or corrupt"):
        convnets.read_checkpoint(tmp_path / "truncated.pt")
    payload = convnets.read_checkpoint(tmp_path / "model.pt")
    payload["model"] = "lenet5-modern"  # weights of one architecture claimed for another
    with pytest.raises(convnets.CheckpointError, match="does not fit LeNet5Modern"):
        convnets.model_from_checkpoint(payload)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(convnets.CheckpointError, match="not a convnet-lab checkpoint"):
        convnets.read_checkpoint(tmp_path / "foreign.pt")


def test_cli_help_for_every_subcommand(capsys):
    """In-process (argparse exits 0 after printing help); one interpreter for the real entry point."""
    for sub in ([], ["train"], ["evaluate"], ["layers"], ["experiment"], ["experiment", "dropout-aug"]):
        with pytest.raises(SystemExit) as exit_:
            main([*sub, "--help"])
        assert exit_.value.code == 0 and "usage: convnet-lab" in capsys.readouterr().out
    result = subprocess.run([sys.executable, "-m", "training.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "usage: convnet-lab" in result.stdout


def test_cli_layers_prints_the_papers_counts(capsys):
    assert main(["layers", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert "151,600" in out and "48,120" in out and "60,000" in out


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "lenet7"], "unknown model 'lenet7'"),
    (["train", "--data", "mnsit"], "unknown data source 'mnsit'"),
    (["train", "--data", "/nonexistent/mnist.npz"], "does not exist"),
    (["train", "--epochs", "-1", "--data", "sample"], "epochs must be at least 1"),
    (["train", "--batch-size", "0", "--data", "sample"], "batch size must be at least 1"),
    (["train", "--option", "width=2"], "no option width"),
    (["evaluate", "lenet9"], "no shipped weights for 'lenet9'"),
])
def test_cli_bad_input_is_one_line_and_non_zero(capsys, tmp_path, argv, message):
    if argv[0] == "train":
        argv = [*argv, "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_cli_never_overwrites_an_existing_run(capsys, tmp_path):
    (tmp_path / "model.pt").write_bytes(b"precious")
    assert main(["train", "--data", "sample", "--out", str(tmp_path)]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert (tmp_path / "model.pt").read_bytes() == b"precious"


def test_cli_evaluate_reports_a_corrupt_checkpoint(capsys, tmp_path):
    (tmp_path / "broken.pt").write_bytes(b"\x00" * 100)
    assert main(["evaluate", str(tmp_path / "broken.pt"), "--data", "sample"]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err


def test_cli_train_writes_a_loadable_run(capsys, tmp_path):
    out = tmp_path / "run"
    code = main(["train", "--model", "lenet5-modern", "--data", "sample", "--epochs", "1", "--limit", "300",
                 "--distort", "--out", str(out), "--quiet"])
    assert code == 0
    payload = convnets.read_checkpoint(out / "model.pt")
    assert payload["card"]["config"]["distort"]["translate"] == 2.0
    assert payload["card"]["recipe"].startswith("convnet-lab train --model lenet5-modern")
    assert main(["evaluate", str(out / "model.pt"), "--data", "sample"]) == 0
    assert "test error" in capsys.readouterr().out
