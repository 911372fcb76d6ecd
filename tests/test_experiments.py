"""The experiments: ReLU vs tanh on real CIFAR-10 images, dropout x augmentation, results files and the CLI."""

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import convnets
from training.experiments import curve_run, dropout_augmentation, experiment_config, main, relu_vs_tanh, save_result
from training.images import ImageData, load_images

CIFAR_TAR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture(scope="module")
def cifar_subset(tmp_path_factory) -> Path:
    """30 training and 10 test images per class from the shared CIFAR-10 archive (only those are extracted)."""
    if not CIFAR_TAR.is_file():
        pytest.skip(f"CIFAR-10 archive not found at {CIFAR_TAR} (see ../shared/data/README.md)")
    target = tmp_path_factory.mktemp("cifar")
    limits = {"train": 30, "test": 10}
    with tarfile.open(CIFAR_TAR) as tar:
        members = [m for m in tar if m.isfile() and len(parts := Path(m.name).parts) == 3 and parts[0] in limits
                   and int(Path(m.name).stem) < limits[parts[0]]]
        tar.extractall(target, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return target


def _synthetic(n_train: int = 64, n_test: int = 32, seed: int = 0) -> ImageData:
    """Two classes told apart by brightness, 32x32 RGB uint8."""
    g = torch.Generator().manual_seed(seed)

    def split(n):
        y = torch.arange(n) % 2
        x = (torch.rand(n, 3, 32, 32, generator=g) * 100 + 120 * y.view(-1, 1, 1, 1)).to(torch.uint8)
        return x, y

    (tx, ty), (vx, vy) = split(n_train), split(n_test)
    return ImageData("synthetic", "synthetic", ("dark", "bright"), tx, ty, vx, vy)


def test_relu_vs_tanh_records_both_curves_on_real_cifar(cifar_subset, tmp_path):
    torch.set_num_threads(1)
    data = load_images(str(cifar_subset))
    assert len(data.train_y) == 300 and len(data.test_y) == 100
    result = relu_vs_tanh(data, lrs=(0.01,), epochs=2, width=8, stop_at_target=False, log=lambda _line: None)
    assert [r["activation"] for r in result["runs"]] == ["relu", "tanh"]
    for run in result["runs"]:
        assert [row["epoch"] for row in run["curve"]] == [1, 2]
        for row in run["curve"]:
            assert 0 <= row["train_error"] <= 100 and 0 <= row["test_error"] <= 100 and row["seconds"] > 0
            assert np.isfinite(row["loss"])
        if run["epochs_to_target"] is not None:  # a 25 % training error is possible, not expected, after 2 epochs
            assert run["curve"][run["epochs_to_target"] - 1]["train_error"] <= 25
    summary = result["summary"]
    assert summary["relu"]["lr"] == summary["tanh"]["lr"] == 0.01
    assert result["conditions"]["init"] == "default" and result["conditions"]["data"]["train_size"] == 300
    # identical except for the non-linearity: same data order, same start, so the curves differ only through it
    assert result["runs"][0]["curve"][0]["loss"] != result["runs"][1]["curve"][0]["loss"]
    path = save_result(result, tmp_path, "race")
    saved = json.loads(path.read_text())
    assert saved["experiment"] == "relu-vs-tanh" and len(saved["runs"]) == 2 and "finished" in saved


def test_target_is_found_and_runs_stop_there():
    """Through the one training loop: a run stops at the epoch that reaches the target; a diverging run is marked."""
    data = _synthetic()
    config = experiment_config("cnn4-cifar", {"width": 4}, data, epochs=10, batch_size=16, lr=0.05)
    _, run = curve_run(config, data, target_error=40.0, stop_at_target=True, log=lambda _line: None)
    assert run["epochs_to_target"] is not None and len(run["curve"]) == run["epochs_to_target"]
    assert run["curve"][-1]["train_error"] <= 40.0 and run["seconds_to_target"] == run["curve"][-1]["seconds"]
    blown_config = experiment_config("cnn4-cifar", {"width": 4}, data, epochs=3, lr=1e12)
    model, blown = curve_run(blown_config, data, log=lambda _line: None)
    assert model is None
    assert blown["diverged"] and not np.isfinite(blown["curve"][-1]["loss"]) and "test_error" not in blown["curve"][-1]


def test_dropout_and_augmentation_runs_record_train_and_test_error():
    torch.set_num_threads(1)
    data = _synthetic(48, 16)
    result = dropout_augmentation(data, epochs=2, width=0.25, hidden=32, batch_size=16, clean_train_eval=32,
                                  log=lambda _line: None)
    assert [r["label"] for r in result["runs"]] == ["dropout=0.5 aug=on", "dropout=0.5 aug=off", "dropout=0 aug=on",
                                                   "dropout=0 aug=off"]
    for run in result["runs"]:
        assert len(run["curve"]) == 2
        assert all({"train_error", "test_error", "train_error_clean"} <= set(row) for row in run["curve"])
        assert 0 <= run["ten_patch_test_error"] <= 100
    assert result["runs"][0]["augmentation"] == {"crop": 32, "pad": 4, "flip": True, "pca_std": 0.1, "ten_patch": False}
    assert result["runs"][1]["augmentation"] is None
    pca = result["conditions"]["colour_pca"]
    assert len(pca["eigenvalues"]) == 3 and pca["eigenvalues"][0] >= pca["eigenvalues"][1] >= pca["eigenvalues"][2]
    assert set(result["summary"]) == {r["label"] for r in result["runs"]}


def _image_folder(root: Path, per_class: int = 6) -> Path:
    data = _synthetic(per_class * 2, per_class * 2)
    for split, x, y in (("train", data.train_x, data.train_y), ("test", data.test_x, data.test_y)):
        for i, (image, label) in enumerate(zip(x, y, strict=True)):
            folder = root / split / data.classes[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")
    return root


def test_cli_writes_results_and_evaluates_a_checkpoint(tmp_path, capsys):
    folder = _image_folder(tmp_path / "pets")
    out = tmp_path / "results"
    code = main(["relu-tanh", "--data", str(folder), "--train-size", "12", "--test-size", "8", "--epochs", "1",
                 "--lrs", "0.01,0.02", "--width", "4", "--out", str(out), "--name", "tiny"])
    assert code == 0
    saved = json.loads((out / "tiny.json").read_text())
    assert len(saved["runs"]) == 4 and saved["command"].startswith("convnet-lab experiment relu-tanh")
    assert saved["conditions"]["lrs"] == [0.01, 0.02] and saved["preset"] == "smoke"
    options = {"width": 0.25, "hidden": 16, "num_classes": 2}
    checkpoint = convnets.save_checkpoint(tmp_path / "m.pt", "alexnet-cifar", options,
                                          convnets.get_model("alexnet-cifar", **options), {})
    capsys.readouterr()
    assert main(["evaluate", str(checkpoint), "--data", str(folder)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 12 and 0 <= report["top1_error"] <= 100 and report["top5_error"] == 0.0  # 2 classes
    too_few = {"width": 0.25, "hidden": 16, "num_classes": 1}
    convnets.save_checkpoint(checkpoint, "alexnet-cifar", too_few, convnets.get_model("alexnet-cifar", **too_few), {})
    assert main(["evaluate", str(checkpoint), "--data", str(folder)]) == 2
    assert "has 1 outputs" in capsys.readouterr().err
    assert main(["relu-tanh", "--data", str(tmp_path / "missing")]) == 2
    capsys.readouterr()
    assert main(["time-retrieval", "--n", "500", "--dim", "8"]) == 0
    timing = json.loads(capsys.readouterr().out)
    assert timing["bank"] == [500, 8] and timing["single_ms"] > 0
