"""The AlexNet page (streamlit.testing AppTest) offline: learned kernels per column with their colour numbers, a sample
test image's five classes and feature maps, its six nearest training images by fc7 distance, finished image runs."""

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch

if importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("plotly") is None:
    pytest.skip("dashboard dependencies not installed", allow_module_level=True)
from streamlit.testing.v1 import AppTest  # noqa: E402

import convnets  # noqa: E402
from training.images import as_float, cifar_sample  # noqa: E402
from training.loop import TrainConfig, train  # noqa: E402
from training.store import Owner, RunStore  # noqa: E402

torch.set_num_threads(1)
DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard"
PAGE = str(DASHBOARD / "views" / "alexnet.py")
CIFAR_TAR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-jpeg.tar.gz"
TIMEOUT = 300  # the first run embeds the sample's 2,000 training images on a busy CPU
TWO_COLUMNS = {"columns": 2, "width": 0.5, "hidden": 64}  # the paper's two-GPU layout at a size a test trains in seconds


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """No CIFAR-10 at hand (only the shipped sample), an empty runs folder, no worker, dashboard/ on sys.path."""
    monkeypatch.setenv("CONVNET_LAB_CIFAR", "")
    monkeypatch.setenv("CONVNET_LAB_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("CONVNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CONVNET_LAB_NO_WORKER", "1")
    monkeypatch.syspath_prepend(str(DASHBOARD))
    return tmp_path / "runs"


@pytest.fixture(scope="module")
def sample():
    return cifar_sample()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def captions(at: AppTest) -> list[str]:
    return [image.proto.imgs[0].caption for image in at.get("image")]


def texts(at: AppTest) -> str:
    return " ".join(e.value for kind in ("markdown", "caption", "subheader", "info", "warning") for e in at.get(kind))


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


@pytest.fixture(scope="module")
def shipped(sample) -> tuple[torch.nn.Module, torch.Tensor]:
    """The shipped alexnet-cifar and the fc7 vectors of the sample's 2,000 training images, computed here."""
    model, _ = convnets.load_pretrained("alexnet-cifar")
    return model, convnets.embed(model, as_float(sample.train_x))


def neighbours(shipped, sample, index: int) -> tuple[list[float], list[int]]:
    """The six nearest sample training images to sample test image ``index`` by fc7 distance."""
    model, bank = shipped
    query = convnets.embed(model, as_float(sample.test_x[index:index + 1]))[0]
    distances, indices = convnets.nearest(query, bank, k=6)
    return distances.tolist(), indices.tolist()


def test_offline_the_page_shows_kernels_top5_and_nearest_training_images(sample, shipped):
    at = ok(AppTest.from_file(PAGE, default_timeout=TIMEOUT).run())
    assert at.selectbox(key="alexnet_model").value == "alexnet-cifar"
    model = shipped[0]
    # the kernel grid: one column of 48 colour kernels and its measured colour numbers
    assert "conv1: 48 learned kernels of 5x5x3" in [s.value for s in at.subheader]
    shown = captions(at)
    assert shown[0] == "kernels 0–47" and "**one column**" in texts(at)
    kernel_image = at.get("image")[0].proto.imgs[0]
    colour = convnets.kernel_colour(model)
    assert len(colour) == 1
    assert metrics(at)["mean chroma"] == f"{colour[0]['mean_chroma']:.2f}"
    assert metrics(at)["grey kernels"] == f"{colour[0]['grey_fraction']:.0%}"
    # the default picture: sample test image #0, its five most probable classes
    assert any(s.value.startswith("Current picture: test image #0 of the CIFAR-10 sample") for s in at.subheader)
    top = at.get("plotly_chart")[0].proto.spec
    with torch.no_grad():
        probabilities = model(as_float(sample.test_x[:1])).softmax(1)[0]
    expected = [convnets.pictures.CIFAR10_CLASSES[i] for i in probabilities.topk(5).indices.tolist()]
    assert all(f'"{name}"' in top for name in expected)
    assert f"True class: **{sample.classes[sample.test_y[0]]}**" in texts(at)
    # conv1 and conv5 feature maps
    titles = [c.proto.spec for c in at.get("plotly_chart")[1:]]
    assert len(titles) == 2 and "conv1: 48 maps of 15x15" in titles[0] and "conv5: 128 maps of 3x3" in titles[1]
    # the six nearest training images by fc7 distance, over the sample's 2,000 training images
    distances, indices = neighbours(shipped, sample, 0)
    assert shown[-6:] == [f"{sample.classes[sample.train_y[i]]} · distance {d:.1f}" for d, i in zip(distances, indices,
                                                                                                      strict=True)]
    assert "the 2,000 training images of the CIFAR-10 sample shipped with convnet-lab" in texts(at)
    # names of data, never a local path (the shipped card says "image folder /tmp/cifar")
    assert "Trained on CIFAR-10, 50,000 training images" in texts(at) and "the CIFAR-10 test set (10,000 images)" in texts(at)
    assert "/tmp" not in texts(at) and "/work" not in texts(at) and str(Path.home()) not in texts(at)
    assert "--data cifar10 " in texts(at)  # the shipped card names its data

    at.radio(key="alexnet_kernel_scaling").set_value("one").run()
    ok(at)
    assert "One scale for the whole layer" in texts(at)
    assert at.get("image")[0].proto.imgs[0].url != kernel_image.url  # another picture of the same kernels


def test_the_gallery_filters_by_class_and_a_picked_image_becomes_the_current_picture(sample, shipped):
    at = ok(AppTest.from_file(PAGE, default_timeout=TIMEOUT).run())
    at.selectbox(key="alexnet_class").select("cat").run()
    ok(at)
    cats = np.flatnonzero(sample.test_y.numpy() == 3)
    gallery = [c for c in captions(at) if c.startswith("#")]
    assert gallery == [f"#{i} · cat" for i in cats[:12]]
    at.number_input(key="alexnet_gallery_page").set_value(9).run()  # 100 cats: the last page holds 4
    assert [c for c in captions(ok(at)) if c.startswith("#")] == [f"#{i} · cat" for i in cats[96:]]
    at.button(key=f"alexnet_use_{cats[97]}").click().run()
    ok(at)
    assert f"Current picture: test image #{cats[97]} of the CIFAR-10 sample" in [s.value for s in at.subheader]
    assert "True class: **cat**" in texts(at)
    distances, indices = neighbours(shipped, sample, int(cats[97]))
    assert captions(at)[-6:] == [f"{sample.classes[sample.train_y[i]]} · distance {d:.1f}" for d, i in zip(distances, indices,
                                                                                                             strict=True)]
    at.selectbox(key="alexnet_class").select("every class").run()  # 84 pages: page 9 stays
    ok(at)
    assert at.number_input(key="alexnet_gallery_page").value == 9
    assert f"Current picture: test image #{cats[97]} of the CIFAR-10 sample" in [s.value for s in at.subheader]


def finished_two_column_run(runs: Path, sample) -> tuple[int, dict]:
    """A done run of a two-column alexnet-cifar in the run store: trained briefly on sample images, as the worker would."""
    config = TrainConfig(model="alexnet-cifar", options=TWO_COLUMNS, data="cifar10-sample", epochs=1, train_limit=200,
                         batch_size=50, device="cpu").resolved()
    with RunStore(runs) as store:
        run_id = store.submit(config.card())
        owner = Owner.me()
        assert store.claim(owner).id == run_id
        _, card = train(config, out=store.run_dir(run_id), data=sample, progress=False, log=lambda _line: None)
        store.finish(run_id, owner, "done")
    return run_id, card


def test_a_two_column_run_shows_both_groups_and_their_colour_numbers(offline, sample):
    run_id, card = finished_two_column_run(offline, sample)
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["alexnet_model"] = f"run:{run_id}"
    ok(at.run())
    picker = at.selectbox(key="alexnet_model")
    assert picker.value == f"run:{run_id}"
    augmented = ", augmented" if card["config"]["augment"] else ""  # the alexnet-cifar recipe augments by default
    label = f"run {run_id} · alexnet-cifar (2 columns, width 0.5, hidden 64{augmented}) · {card['test_error']:.2f} %"
    assert picker.options == ["alexnet-cifar · shipped, CIFAR-10",
                              "alexnet-cifar, two columns · shipped, CIFAR-10 (96 kernels, as in the paper)", label]
    assert "conv1: 24 learned kernels of 5x5x3, in 2 columns (GPUs)" in [s.value for s in at.subheader]
    titles = [m.value for m in at.markdown if m.value.startswith("**column")]
    assert titles == ["**column 1 (GPU 1)**", "**column 2 (GPU 2)**"]
    assert captions(at)[:2] == ["kernels 0–11", "kernels 12–23"]  # side by side: one st.columns cell each
    cells = [c for c in at.columns if c.get("image")][:2]  # the two kernel grids sit in two cells of one row
    assert [c.get("image")[0].proto.imgs[0].caption for c in cells] == ["kernels 0–11", "kernels 12–23"]
    assert [m.label for m in cells[1].get("metric")] == ["mean chroma, column 2", "grey kernels, column 2"]
    model = convnets.model_from_checkpoint(convnets.read_checkpoint(offline / f"run-{run_id:05d}" / "model.pt"))
    colour = convnets.kernel_colour(model)
    assert [c["kernels"] for c in colour] == [12, 12]
    shown = metrics(at)
    for g in (0, 1):
        assert shown[f"mean chroma, column {g + 1}"] == f"{colour[g]['mean_chroma']:.2f}"
        assert shown[f"grey kernels, column {g + 1}"] == f"{colour[g]['grey_fraction']:.0%}"
    assert f"Test error **{card['test_error']:.2f} %**" in texts(at)
    assert "Trained on CIFAR-10 sample shipped with convnet-lab: 2,000 training / 1,000 test images" in texts(at)
    assert len(re.findall(r"· distance \d", " ".join(captions(at)))) == 6  # its own fc7 (64-d) neighbours
    assert "64-d fc7 vectors" in texts(at)


def test_cards_are_described_by_name_not_path():
    import resources

    _, card = convnets.load_pretrained("alexnet-cifar")
    assert resources.data_name(card) == "CIFAR-10, 50,000 training images"
    assert resources.test_set_name(card) == "the CIFAR-10 test set (10,000 images)"
    assert "--data cifar10 " in resources.clean_command(card)
    old = {**card, "data": {**card["data"], "description": "image folder /tmp/cifar (10 classes, 32x32)"},
           "recipe": {"epochs": 5}, "command": "convnet-lab experiment train --data /tmp/cifar --epochs 5"}  # the earlier card
    assert resources.data_name(old) == "CIFAR-10, 50,000 training images"
    assert "--data <CIFAR-10>" in resources.clean_command(old) and "/tmp" not in resources.clean_command(old)
    folder = {"data": {"description": "image folder /home/me/flowers (5 classes, 64x64)"},
              "test_set": "the test split of /home/me/flowers (500 images)", "command": "convnet-lab train --data /home/me/x"}
    assert resources.data_name(folder) == "image folder a local folder (5 classes, 64x64)"
    assert "/home" not in resources.test_set_name(folder) and resources.clean_command(folder).endswith("--data <DATA>")


def test_with_the_full_cifar10_the_bank_and_gallery_use_it(monkeypatch):
    if not CIFAR_TAR.is_file():
        pytest.skip(f"CIFAR-10 copy not found at {CIFAR_TAR} (see ../shared/data/README.md)")
    monkeypatch.setenv("CONVNET_LAB_CIFAR", str(CIFAR_TAR))
    monkeypatch.delenv("CONVNET_LAB_DATA")  # the archive is extracted once into the usual cache folder
    at = ok(AppTest.from_file(PAGE, default_timeout=600).run())
    assert at.number_input(key="alexnet_gallery_page").max == 834  # 10,000 test images, 12 a page
    at.button(key="alexnet_use_3").click().run()
    ok(at)
    assert "Current picture: test image #3 of CIFAR-10" in [s.value for s in at.subheader]
    assert "5,000 CIFAR-10 training images (the first 500 of each class)" in texts(at)
    assert len(re.findall(r"· distance \d", " ".join(captions(at)))) == 6
    assert str(CIFAR_TAR.parent) not in texts(at)
