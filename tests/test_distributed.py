"""DistributedDataParallel: batch sharding, and two gloo processes under torchrun against one process."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import convnets
from training import distributed
from training.distributed import Dist
from training.loop import TrainConfig, train

torch.set_num_threads(1)


@pytest.mark.parametrize("n, batch_size, world", [(301, 32, 2), (100, 32, 3), (64, 32, 4), (33, 32, 2)])
def test_ranks_split_every_global_batch_exactly(n, batch_size, world):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    steps = distributed.num_steps(n, batch_size, world)
    assert steps == -(-n // batch_size) - (1 if 0 < n % batch_size < world else 0)  # no rank ever gets no digit
    for step in range(steps):
        batch = order[step * batch_size:(step + 1) * batch_size]
        shards = [distributed.shard(batch, Dist(rank, world)) for rank in range(world)]
        assert torch.equal(torch.cat(shards), batch)  # disjoint, in order, nothing lost
        assert max(map(len, shards)) - min(map(len, shards)) <= 1 and min(map(len, shards)) >= 1
        for rank in range(world):
            assert distributed.digits_seen(step + 1, n, batch_size, Dist(rank, world)) == sum(
                len(distributed.shard(order[s * batch_size:(s + 1) * batch_size], Dist(rank, world)))
                for s in range(step + 1))


def test_two_gloo_processes_under_torchrun_match_one_process(tmp_path, sample_data):
    # a small real subset, shuffled (the sample is sorted by class); 301 digits: the last batch splits 7 / 6
    pick = torch.randperm(len(sample_data.train_y), generator=torch.Generator().manual_seed(0))[:301]
    npz = tmp_path / "digits.npz"
    np.savez(npz, x_train=sample_data.train_x[pick].numpy(), y_train=sample_data.train_y[pick].numpy(),
             x_test=sample_data.test_x[::2].numpy(), y_test=sample_data.test_y[::2].numpy())
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "training.cli", "train", "--model", "lenet5-modern", "--option", "batch_norm=false",
               "--data", str(npz), "--epochs", "2", "--batch-size", "32", "--device", "cpu", "--threads", "1",
               "--out", str(out), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("test error") == 1  # rank 0 alone reports
    assert sorted(p.name for p in out.iterdir()) == ["last.pt", "model.pt"]  # and alone writes
    ddp = convnets.read_checkpoint(out / "model.pt")
    assert ddp["card"]["world_size"] == 2 and len(convnets.read_checkpoint(out / "last.pt")["rng"]) == 2

    config = TrainConfig(model="lenet5-modern", options={"batch_norm": False}, data=str(npz), epochs=2, batch_size=32,
                         device="cpu")
    model, card = train(config, progress=False, log=lambda _line: None)
    gap = max((ddp["state_dict"][k] - v).abs().max().item() for k, v in model.state_dict().items())
    print(f"2 gloo ranks vs 1 process: max |weight difference| = {gap:.3g}, "
          f"test error {ddp['card']['test_error']:.2f}% vs {card['test_error']:.2f}%")
    assert gap < 1e-4  # float summation order only: measured about 1e-6
    for a, b in zip(ddp["card"]["epochs"], card["epochs"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["train_error"] == pytest.approx(b["train_error"], abs=1e-9)  # the same digits, the same mistakes
        assert a["test_error"] == pytest.approx(b["test_error"], abs=0.21)  # at most one of 500 test digits flips
    assert card["test_error"] < 80  # and it learns (chance is 90 %; 20 steps on 301 digits)
