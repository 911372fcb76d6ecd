"""Every cached loader of the dashboard, in one module: shipped models, their layer tables, the held-out digits.

Models are shared by all sessions (``st.cache_resource``); each comes with a
lock, because :func:`convnets.activations` hooks the shared model for the
length of a forward pass and two sessions must not interleave there.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from torch import nn

import convnets
from convnets.models import WEIGHTS_DIR
from convnets.paper import PAPER_LENET5_ERRORS
from convnets.torchvision_alexnet import top_of_scores
from training.data import DataError, evaluation_digits, evaluation_source, load_sample
from training.store import RunStore, StoreError, default_runs_dir, run_dir

MODEL_NAMES = ("lenet5", "lenet5-modern")
MODEL_LABELS = {"lenet5": "lenet5 · faithful 1998", "lenet5-modern": "lenet5-modern · ReLU, BN"}
RUN_PREFIX = "run:"  # a finished run of the run store as a model choice: "run:7"


def run_id(name: str) -> int | None:
    """The run id of a ``run:N`` choice, None for a shipped model."""
    return int(name[len(RUN_PREFIX):]) if name.startswith(RUN_PREFIX) and name[len(RUN_PREFIX):].isdigit() else None


def _run_weights(run: int) -> Path | None:
    """``model.pt`` of a run in the run store of ``default_runs_dir()``; None when there is no store.

    Called on every rerun (through :func:`weights_version`): a path and a stat, no database connection.
    """
    runs = default_runs_dir()
    return run_dir(runs, run) / "model.pt" if (runs / "runs.sqlite").is_file() else None


def weights_path(name: str) -> Path | None:
    """The checkpoint behind a model choice: shipped weights or a run's ``model.pt``."""
    run = run_id(name)
    return WEIGHTS_DIR / f"{name}.pt" if run is None else _run_weights(run)


def weights_version(name: str) -> float:
    """The weights file's modification time, so new weights replace cached ones without a restart."""
    path = weights_path(name)
    return path.stat().st_mtime if path is not None and path.is_file() else 0.0


@st.cache_resource(show_spinner="Loading the weights…", max_entries=4)
def _load(name: str, version: float) -> tuple[nn.Module, dict, threading.Lock]:
    run = run_id(name)
    if run is None:
        model, card = convnets.load_pretrained(name)
    else:
        path = weights_path(name)
        if path is None:
            raise convnets.CheckpointError(f"no run store in {default_runs_dir()}; pick a shipped model")
        payload = convnets.read_checkpoint(path)
        model, card = convnets.model_from_checkpoint(payload, str(path)).eval(), dict(payload["card"])
    return model, card, threading.Lock()


def _card_problem(card: dict) -> str | None:
    """What the pages read from a run's card and this one lacks (test_error, data.description, recipe), or None."""
    error = card.get("test_error")
    if not isinstance(error, (int, float)) or isinstance(error, bool):
        return "has no test error"
    if not isinstance(card.get("data"), dict) or not isinstance(card["data"].get("description"), str):
        return "does not say what the model was trained on"
    if "recipe" not in card:
        return "has no recipe"
    return None


MAX_RUN_CHECKPOINT_MB = 256  # lenet5's model.pt is 0.3 MB, alexnet-cifar's 25 MB; a bigger file is refused unread


@st.cache_data(show_spinner=False, max_entries=256)
def _check_run(path: str, version: float, model: str) -> dict:
    """A run's model.pt checked once per file version, without building the model: its model, options and test
    error, or (``error``) one line saying why it cannot be used -- oversized, unreadable, damaged, another model's
    weights than the run store's ``model``, or weights that do not fit their options."""
    try:
        size_mb = Path(path).stat().st_size / 2**20
        if size_mb > MAX_RUN_CHECKPOINT_MB:
            return {"error": f"model.pt is {size_mb:,.0f} MB, over the {MAX_RUN_CHECKPOINT_MB} MB the app reads"}
        payload = convnets.read_checkpoint(path)
        if payload["model"] != model:
            return {"error": f"model.pt holds weights for '{payload['model']}', but the run trained '{model}'"}
        convnets.models.check_fits(payload, "model.pt")  # shapes against options, nothing allocated
        problem = _card_problem(payload["card"])
        if problem:
            return {"error": f"model.pt's card {problem}"}
        return {"model": payload["model"], "options": dict(payload["options"]),
                "test_error": float(payload["card"]["test_error"]), "error": None}
    except (convnets.CheckpointError, OSError) as exc:
        return {"error": str(exc).replace(path, "model.pt")}


def describe_model(model: str, options: dict, distorted: bool = False) -> str:
    """A model and what differs from its defaults, e.g. 'lenet5-modern (tanh, dropout 0.5, distorted digits)'."""
    details = [options["activation"]] if options.get("activation", "relu") != "relu" else []
    details += [f"dropout {options['dropout']:g}"] if options.get("dropout") else []
    details += ["no batch norm"] if options.get("batch_norm") is False else []
    details += ["distorted digits"] if distorted else []
    return model + (f" ({', '.join(details)})" if details else "")


@dataclass(frozen=True)
class FinishedRuns:
    """The finished runs of the run store the sidebar can show, newest first, and those it skips."""

    labels: dict[str, str]  # "run:7" -> "run 7 · lenet5-modern tanh · 0.90 %"
    skipped: dict[int, str]  # run id -> why its model.pt cannot be used
    problem: str | None = None  # why the run store itself cannot be read


def finished_runs(images: bool = False) -> FinishedRuns:
    """Every done run of ``default_runs_dir()`` whose model.pt fits -- of digit models (the sidebar's picker), or with
    ``images`` of colour-image models (the AlexNet page's); a missing, corrupt, oversized or mislabelled one is skipped
    with its reason. Newest first."""
    from training.loop import takes_images

    labels: dict[str, str] = {}
    skipped: dict[int, str] = {}
    if not (default_runs_dir() / "runs.sqlite").is_file():
        return FinishedRuns(labels, skipped)
    try:
        with RunStore() as store:
            runs = [(run, store.run_dir(run.id) / "model.pt") for run in reversed(store.runs(["done"]))]
    except StoreError as exc:
        return FinishedRuns(labels, skipped, problem=str(exc))
    for run, path in runs:
        if run.model not in convnets.model_names() or takes_images(run.model) != images:
            continue
        if not path.is_file():
            skipped[run.id] = "model.pt is missing from its folder"
            continue
        try:
            checked = _check_run(str(path), path.stat().st_mtime, run.model)
        except OSError as exc:  # removed between the listing and the check
            checked = {"error": f"model.pt cannot be read ({exc.strerror})"}
        if checked["error"]:
            skipped[run.id] = checked["error"]
            continue
        model = describe_image_model(checked["model"], checked["options"], bool(run.config.get("augment"))) if images \
            else describe_model(checked["model"], checked["options"], bool(run.config.get("distort")))
        labels[f"{RUN_PREFIX}{run.id}"] = f"run {run.id} · {model} · {checked['test_error']:.2f} %"
    return FinishedRuns(labels, skipped)


def model_choices(runs: FinishedRuns | None = None) -> dict[str, str]:
    """The sidebar's choices, name -> label: the shipped models, then the finished runs of the run store (newest first)."""
    return {**MODEL_LABELS, **(runs or finished_runs()).labels}


def load_model(name: str) -> tuple[nn.Module, dict]:
    """Shipped weights or a run's (``run:N``), cached per weights file: (model in eval mode, card). Treat both as read-only."""
    model, card, _ = _load(name, weights_version(name))
    return model, card


def measured_on(card: dict) -> str:
    """Where a card's test error comes from, e.g. 'measured on the official MNIST test set (10,000 digits)'."""
    return f"measured on {card.get('test_set', 'an unrecorded test set')}"


@st.cache_data(show_spinner=False, max_entries=4)
def layer_rows(name: str, version: float) -> list[dict]:
    """``convnets.layer_table`` of the shipped model as plain dicts."""
    model, _, lock = _load(name, version)
    with lock:
        return [row.as_dict() for row in convnets.layer_table(model)]


def held_out_digits() -> tuple[np.ndarray, np.ndarray, str]:
    """The digits every page evaluates on: (uint8 images (N, 28, 28), labels (N,), description).

    The official MNIST test set when the full MNIST is at hand (``$CONVNET_LAB_MNIST`` or
    torchvision's cached download), else the offline sample's 1,000 held-out digits.
    """
    return _held_out_digits(evaluation_source())


@st.cache_resource(show_spinner="Loading the test digits…", max_entries=2)
def _held_out_digits(source: str) -> tuple[np.ndarray, np.ndarray, str]:
    # A resource, not cache_data: every page reads these several times a rerun, and cache_data would copy them each
    # time (10,000 official test digits: 7.8 MB). Shared by every session: treat them as read-only.
    try:
        images, labels, description = evaluation_digits(source)
    except DataError as exc:  # a bad $CONVNET_LAB_MNIST: say so, fall back to the offline digits
        st.warning(f"Using the offline digits: {exc}")
        images, labels, description = evaluation_digits("sample")
    return images.numpy(), labels.numpy(), description


@dataclass(frozen=True)
class Probe:
    """One forward pass of the current image: every layer's output, the scores and their softmax."""

    activations: dict[str, np.ndarray]  # layer name -> output for the one image (batch dimension dropped)
    scores: np.ndarray  # (10,) the model's class scores, higher = more likely
    probabilities: np.ndarray  # (10,) softmax of the scores


def probe(name: str, image: np.ndarray) -> Probe:
    """Run the shipped ``name`` model on one 28x28 image in [0, 1] (ink = 1)."""
    model, _, lock = _load(name, weights_version(name))
    x = torch.as_tensor(np.asarray(image, dtype=np.float32)).view(1, 1, 28, 28)
    with lock:
        outputs, scores = convnets.activations_and_scores(model, x)
    scores = scores[0]
    return Probe(activations={k: v[0].numpy() for k, v in outputs.items()}, scores=scores.numpy(),
                 probabilities=torch.softmax(scores, dim=0).numpy())


PAPER_ERRORS = PAPER_LENET5_ERRORS  # LeCun et al. (1998), official MNIST test set (10,000 digits)


@dataclass(frozen=True)
class HeldOutErrors:
    """A shipped model over the 1,000 held-out digits of the offline sample."""

    predictions: np.ndarray  # (N,) predicted class per held-out digit
    confidences: np.ndarray  # (N,) softmax of the scores at the predicted class
    labels: np.ndarray  # (N,) true classes
    confusion: np.ndarray  # (10, 10) counts, rows = true class, columns = predicted class
    description: str  # what the digits are, e.g. 'the 1,000 held-out digits of ...'

    @property
    def wrong(self) -> np.ndarray:
        """Indices of the misclassified held-out digits, in dataset order."""
        return np.flatnonzero(self.predictions != self.labels)

    @property
    def error_rate(self) -> float:
        """Percent of the held-out digits the model gets wrong."""
        return 100.0 * len(self.wrong) / len(self.labels)


@st.cache_data(show_spinner="Classifying the held-out digits…", max_entries=4)
def held_out_errors(name: str, version: float) -> HeldOutErrors:
    """The model ``name`` on every held-out digit (one forward pass): predictions, confidences and confusions."""
    from training.data import as_float

    model, _, lock = _load(name, version)
    images, labels, description = held_out_digits()
    with lock, torch.no_grad():
        probabilities = torch.softmax(model(as_float(torch.from_numpy(images))), dim=1)
    predictions = probabilities.argmax(dim=1).numpy()
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    confidences = probabilities.numpy()[np.arange(len(predictions)), predictions]
    return HeldOutErrors(predictions=predictions, confidences=confidences, labels=labels, confusion=confusion,
                         description=description)


# --- Similarity and Unusual patterns ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddingBank:
    """The offline sample's training digits embedded by a model's last hidden layer, with their 2-D PCA map."""

    vectors: torch.Tensor  # (N, D) embeddings, for convnets.nearest
    sq_norms: torch.Tensor  # (N,) their squared norms
    images: np.ndarray  # (N, 28, 28) uint8, ink = 255
    labels: np.ndarray  # (N,)
    coords: np.ndarray  # (N, 2) PCA coordinates
    mean: torch.Tensor  # (D,) for convnets.project
    components: torch.Tensor  # (2, D)
    explained: np.ndarray  # (2,) fraction of the embeddings' variance along each map axis
    layer: str  # e.g. 'F6'
    description: str  # what the bank's digits are


@st.cache_resource(show_spinner="Embedding the sample's training digits…", max_entries=4)
def embedding_bank(name: str, version: float) -> EmbeddingBank:
    """``convnets.embed`` of the offline sample's 4,000 training digits and ``convnets.pca_2d`` of them. Read-only."""
    from training.data import as_float

    model, _, lock = _load(name, version)
    data = load_sample()
    with lock:
        vectors = convnets.embed(model, as_float(data.train_x))
    coords, mean, components = convnets.pca_2d(vectors)
    explained = (coords.var(dim=0) / vectors.var(dim=0).sum()).numpy()
    return EmbeddingBank(vectors=vectors, sq_norms=vectors.square().sum(dim=1), images=data.train_x.numpy(),
                         labels=data.train_y.numpy(), coords=coords.numpy(), mean=mean, components=components,
                         explained=explained, layer=convnets.embedding_layer(model),
                         description=f"the offline sample's {len(data.train_y):,} training digits (5,000 MNIST "
                                     "training digits shipped with convnet-lab, split 4,000 train / 1,000 held out)")


def embedding(name: str, image: np.ndarray) -> torch.Tensor:
    """The last-hidden-layer vector (D,) of one 28x28 image in [0, 1] under the model ``name``."""
    model, _, lock = _load(name, weights_version(name))
    with lock:
        return convnets.embed(model, torch.as_tensor(np.asarray(image, dtype=np.float32)).view(1, 1, 28, 28))[0]


@dataclass(frozen=True)
class Answers:
    """A model's answers for a batch of images."""

    scores: np.ndarray  # (N, 10), higher = more likely; negated RBF distances when rbf
    rbf: bool  # the faithful LeNet-5's head

    @property
    def probabilities(self) -> np.ndarray:
        return torch.softmax(torch.from_numpy(self.scores), dim=1).numpy()

    @property
    def predictions(self) -> np.ndarray:
        return self.scores.argmax(axis=1)

    @property
    def confidences(self) -> np.ndarray:
        """Softmax of the scores at the predicted class."""
        return self.probabilities.max(axis=1)

    @property
    def oddness(self) -> np.ndarray:
        """How unlike a digit each image looks to the model: the winner's RBF distance (rbf), else 1 - confidence."""
        return -self.scores.max(axis=1) if self.rbf else 1.0 - self.confidences


@st.cache_resource(show_spinner=False, max_entries=4)
def _folded(name: str, version: float) -> nn.Module:
    """:func:`convnets.folding.folded` of the model: the same scores, a few times faster over many digits (the first
    page classifies the 1,000 held-out digits); eval-only and stateless, so sessions share it without a lock."""
    from convnets.folding import folded

    return folded(_load(name, version)[0])


def answers(name: str, images: np.ndarray) -> Answers:
    """One batched forward pass of the model ``name`` over images (N, 28, 28) in [0, 1] (through its folded twin)."""
    version = weights_version(name)
    model, net = _load(name, version)[0], _folded(name, version)
    x = torch.as_tensor(np.asarray(images, dtype=np.float32)).view(-1, 1, 28, 28)
    with torch.no_grad():
        scores = net(x).double().numpy()
    return Answers(scores=scores, rbf=getattr(model, "head", "") == "rbf")


@st.cache_data(show_spinner="Classifying the held-out digits…", max_entries=4)
def held_out_answers(name: str, version: float) -> Answers:
    """:func:`answers` for the digits of :func:`held_out_digits`, the yardstick for what counts as odd."""
    images, _, _ = held_out_digits()
    return answers(name, images.astype(np.float32) / 255.0)


@st.cache_data(show_spinner=False)
def weirdo_set() -> list:
    """``convnets.weirdos.weirdos`` built from the offline sample's 1,000 held-out digits (the same wherever MNIST is)."""
    from convnets.weirdos import weirdos

    data = load_sample()
    return weirdos(data.test_x.numpy(), data.test_y.numpy())


# --- Figures: built once per input and shared by every session ---

@st.cache_resource(show_spinner=False, max_entries=256)
def figure(builder: str, *args, **kwargs) -> go.Figure:
    """``plots.<builder>(*args, **kwargs)``, built once per distinct input (arrays hashed by their bytes) and shared by
    every session and rerun: read-only -- ``st.plotly_chart`` copies it; anything else that changes it copies first."""
    import plots

    return getattr(plots, builder)(*args, **kwargs)


@st.cache_resource(show_spinner=False, max_entries=64)
def figure_of(key: tuple, _build: Callable[[], go.Figure]) -> go.Figure:
    """``_build()``, cached by ``key`` alone (read-only, as :func:`figure`): for a figure whose data is slow to hash on
    every rerun but follows from something small, e.g. the name and modification time of the file it was read from;
    ``key`` must name the figure too."""
    return _build()


@st.cache_resource(show_spinner=False, max_entries=16)
def sweep_animation(images: np.ndarray, probabilities: np.ndarray, captions: list[str], level_text: list[str]) -> go.Figure:
    """``plots.sweep_animation`` opening on frame 0, cached as :func:`figure` is (read-only; ``plots.starting_at`` opens
    it elsewhere), in a smaller cache: one is megabytes."""
    import plots

    return plots.sweep_animation(images, probabilities, captions, level_text)


# --- Invariance lab: sweeps of the current image, robustness curves over the test digits ---

def invariance_sweep(name: str, image: np.ndarray, kind: str) -> convnets.Sweep:
    """``convnets.sweep`` of the model ``name`` over transform ``kind``'s slider grid (one forward batch), cached."""
    return _invariance_sweep(name, weights_version(name), np.asarray(image, dtype=np.float32), kind)


@st.cache_data(show_spinner=False, max_entries=64)
def _invariance_sweep(name: str, version: float, image: np.ndarray, kind: str) -> convnets.Sweep:
    model, _, lock = _load(name, version)
    with lock:  # another session's convnets.activations may have hooks on the shared model
        return convnets.sweep(model, image, kind)


@dataclass(frozen=True)
class RobustnessCurves:
    """A model's accuracy per level of each robustness transform, over the digits of :func:`held_out_digits`."""

    levels: dict[str, np.ndarray]  # kind -> (11,) levels
    accuracy: dict[str, np.ndarray]  # kind -> (11,) fraction right
    description: str  # what the digits are, e.g. 'the 1,000 held-out digits of ...'


def robustness_curves(name: str) -> RobustnessCurves:
    """``convnets.robustness`` of the model ``name`` for every kind of ``ROBUSTNESS_KINDS``: computed once per model."""
    return _robustness_curves(name, weights_version(name), evaluation_source())


@st.cache_data(show_spinner="Measuring robustness on the test digits (once per model)…", max_entries=8)
def _robustness_curves(name: str, version: float, source: str) -> RobustnessCurves:
    from convnets.invariance import ROBUSTNESS_KINDS, robustness, robustness_levels

    model, _, lock = _load(name, version)
    images, labels, description = _held_out_digits(source)
    levels = {kind: robustness_levels(kind) for kind in ROBUSTNESS_KINDS}
    with lock:
        accuracy = {kind: robustness(model, images, labels, kind, levels[kind]) for kind in ROBUSTNESS_KINDS}
    return RobustnessCurves(levels=levels, accuracy=accuracy, description=description)


# --- AlexNet: image models, their finished runs, CIFAR-10 pictures ----------------------------------------------------

IMAGE_MODEL_LABELS = {"alexnet-cifar": "alexnet-cifar · shipped, CIFAR-10",
                      "alexnet-cifar-columns": "alexnet-cifar, two columns · shipped, CIFAR-10 (96 kernels, as in the paper)",
                      "alexnet-torchvision": "alexnet-torchvision · ImageNet, torchvision's weights"}
BANK_PER_CLASS = 500  # training images per class in the fc7 bank when the full CIFAR-10 is at hand (5,000 in all)


def _torchvision_alexnet_file() -> Path | None:
    """torchvision's AlexNet weights if already on disk ($CONVNET_LAB_WEIGHTS or torch's hub cache); the app never downloads."""
    from convnets.torchvision_alexnet import TORCHVISION_WEIGHTS_FILE, _local_torchvision_weights

    try:
        found = _local_torchvision_weights(None)
    except convnets.WeightsError:
        found = None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_WEIGHTS_FILE
    return found or (cached if cached.is_file() else None)


def image_model_names() -> list[str]:
    """The AlexNet models whose weights are here: shipped ``alexnet-cifar`` (one column and two), torchvision's if
    downloaded before."""
    names = [name for name in ("alexnet-cifar", "alexnet-cifar-columns") if (WEIGHTS_DIR / f"{name}.pt").is_file()]
    if _torchvision_alexnet_file() is not None:
        names.append("alexnet-torchvision")
    return names


def describe_image_model(model: str, options: dict, augmented: bool = False) -> str:
    """An image model and the options it was built with, e.g. 'alexnet-cifar (2 columns, width 2, augmented)'."""
    details = []
    for key, value in options.items():
        if key == "columns":
            details.append(f"{value} column{'s' if value != 1 else ''}")
        elif isinstance(value, bool):
            details.append(key if value else f"no {key.upper() if key == 'lrn' else key}")
        else:
            details.append(f"{key} {value:g}" if isinstance(value, (int, float)) else f"{key} {value}")
    details += ["augmented"] if augmented else []
    return model + (f" ({', '.join(details)})" if details else "")


def image_model_choices(runs: FinishedRuns | None = None) -> dict[str, str]:
    """The AlexNet page's choices, name -> label: the image models shipped or on disk, then finished image runs."""
    return {**{name: IMAGE_MODEL_LABELS[name] for name in image_model_names()}, **(runs or finished_runs(images=True)).labels}


@st.cache_resource(show_spinner="Loading AlexNet weights…", max_entries=4)
def model_and_lock(name: str, version: float, images: bool = False) -> tuple[nn.Module, threading.Lock]:
    """The shared cached model (a digit model, or with ``images`` a colour-image one) and the lock that keeps other
    sessions' probes off it while one runs (probes that take gradients must hold it)."""
    model, _, lock = (_load_image_model if images else _load)(name, version)
    return model, lock


@st.cache_resource(show_spinner="Loading AlexNet weights…", max_entries=4)
def _load_image_model(name: str, version: float) -> tuple[nn.Module, dict, threading.Lock]:
    if run_id(name) is not None:
        model, card, lock = _load(name, version)
    else:
        path = _torchvision_alexnet_file() if name == "alexnet-torchvision" else None
        model, card = convnets.load_pretrained(name, weights_path=path)
        lock = threading.Lock()
    if not getattr(model, "classes", None):
        from convnets.pictures import CIFAR10_CLASSES

        model.classes = list(card.get("classes") or card.get("data", {}).get("classes") or CIFAR10_CLASSES)
    return model.eval(), card, lock


def load_image_model(name: str) -> tuple[nn.Module, dict]:
    """An image model of :func:`image_model_choices` in eval mode, and its card (cached per weights file; read-only)."""
    model, card, _ = _load_image_model(name, weights_version(name))
    return model, card


# Paths in a card's text (the shipped card says "image folder /tmp/cifar ..."): what the data is, not where it was.
_PATH = re.compile(r"(?<![\w<])(?:\.{1,2}/|~/|/|[A-Za-z]:\\)[^\s,;:)'\"]+")


def without_paths(text: str, placeholder: str = "a local copy") -> str:
    """``text`` with any local path replaced by ``placeholder`` (cards written before data names were recorded)."""
    return _PATH.sub(placeholder, text)


def _is_cifar10(card: dict) -> bool:
    from convnets.pictures import CIFAR10_CLASSES

    data = card.get("data") or {}
    return tuple(card.get("classes") or data.get("classes") or ()) == CIFAR10_CLASSES and \
        tuple(data.get("image_size") or (32, 32)) == (32, 32)


def data_name(card: dict) -> str:
    """What a card's model was trained on, in words and without a local path: 'CIFAR-10, 50,000 training images'."""
    data = card.get("data") or {}
    train = data.get("train_size", data.get("train_images"))
    if data.get("name") != "cifar10-sample" and _is_cifar10(card) and isinstance(train, int) and 0 < train <= 50_000:
        return f"CIFAR-10, {train:,} training images"
    return _PATH.sub("a local folder", str(data.get("description") or "an unrecorded data set"))


def test_set_name(card: dict) -> str:
    """What a card's test error was measured on, without a local path: 'the CIFAR-10 test set (10,000 images)'."""
    data = card.get("data") or {}
    test = data.get("test_size", data.get("test_images"))
    if data.get("name") != "cifar10-sample" and _is_cifar10(card) and isinstance(test, int) and 0 < test <= 10_000:
        return "the CIFAR-10 test set (10,000 images)" if test == 10_000 else f"{test:,} CIFAR-10 test images"
    return _PATH.sub("a local folder", str(card.get("test_set") or "an unrecorded test set"))


def clean_command(card: dict) -> str:
    """The card's training command with local data paths replaced by a placeholder ('--data <CIFAR-10>')."""
    command = card.get("command") or (card["recipe"] if isinstance(card.get("recipe"), str) else "")
    return _PATH.sub("<CIFAR-10>" if _is_cifar10(card) else "<DATA>", str(command))


def image_card_summary(card: dict) -> str:
    """One markdown line on an image model's card: its test error and where it was measured, what it was trained on
    and how -- names of data, never local paths."""
    if card.get("acc@1") is not None:  # torchvision's published weights
        return (f"torchvision's IMAGENET1K_V1 weights: top-1 error **{card['test_error']:.2f} %**, top-5 "
                f"**{card['top5_error']:.2f} %** on {card['test_set']}. Widths: {card['widths']}.")
    recipe = card["recipe"] if isinstance(card.get("recipe"), dict) else {}  # a run's card names its recipe instead
    config = card.get("config") if isinstance(card.get("config"), dict) else {}
    ten, flip = card.get("ten_patch_test_error"), card.get("test_error_flip")
    epochs = recipe.get("epochs") or config.get("epochs") or len(card.get("epochs") or [])
    augmented = recipe.get("augmentation") if "augmentation" in recipe else config.get("augment")
    optimizer = {"sgd": "SGD with" + (" Nesterov" if config.get("nesterov") else "") + " momentum",
                 "adam": "Adam"}.get(recipe.get("optimizer") or config.get("optimizer"), "")
    extras = [f"label smoothing {config['label_smoothing']:g}"] if config.get("label_smoothing") else []
    extras += [f"{config['warmup']:g} epochs of warm-up, then {config.get('schedule')} decay"] if config.get("warmup") else []
    extras += [f"{card['train_seconds'] / 60:.0f} minutes on {card.get('device', 'cpu')}"] if card.get("train_seconds") else []
    command = clean_command(card)
    return (f"Test error **{card['test_error']:.2f} %**" + (f" ({ten:.2f} % averaging the paper's ten patches)" if ten else "")
            + (f" ({flip:.2f} % averaging each image with its mirror image)" if flip is not None else "")
            + f", measured on {test_set_name(card)}. Trained on {data_name(card)} — {epochs} epochs"
            + (f", {optimizer}" if optimizer else "") + f", augmentation {'on' if augmented else 'off'}"
            + "".join(f", {e}" for e in extras) + (f"; `{command}`." if command else "."))


@dataclass(frozen=True)
class Pictures:
    """CIFAR-10 images for the AlexNet page: test images to pick from, and the training images of the fc7 bank."""

    name: str  # 'the CIFAR-10 sample' or 'CIFAR-10'
    classes: tuple[str, ...]
    test_x: np.ndarray  # (N, 3, 32, 32) uint8; read-only
    test_y: np.ndarray  # (N,)
    train_x: np.ndarray  # (M, 3, 32, 32) uint8: the bank; read-only
    train_y: np.ndarray  # (M,)
    test_description: str  # e.g. "the sample's 1,000 test images (from the official CIFAR-10 test split)"
    bank_description: str  # e.g. 'the 2,000 training images of the CIFAR-10 sample shipped with convnet-lab'
    note: str | None = None  # why the full CIFAR-10 named by $CONVNET_LAB_CIFAR is not used


def pictures() -> Pictures:
    """The full CIFAR-10 when :func:`training.images.cifar_source` finds it (every test image, a bank of 500 training
    images per class), else the CIFAR-10 sample shipped with convnet-lab (1,000 test, 2,000 training images)."""
    from training.images import cifar_source

    return _pictures(cifar_source() or "")


@st.cache_resource(show_spinner="Loading CIFAR-10 images…", max_entries=2)
def _pictures(source: str) -> Pictures:
    from training.images import cifar_sample, load_images

    note = None
    if source:
        try:
            data = load_images(source, size=32, train_per_class=BANK_PER_CLASS)
        except DataError as exc:
            note = f"the CIFAR-10 named by $CONVNET_LAB_CIFAR cannot be read ({_PATH.sub('a local folder', str(exc))})"
        else:
            cifar = data.name == "cifar10"
            name = "CIFAR-10" if cifar else _PATH.sub("a local folder", data.description)
            return Pictures(name, tuple(data.classes), data.test_x.numpy(), data.test_y.numpy(), data.train_x.numpy(),
                            data.train_y.numpy(),
                            f"the CIFAR-10 test set ({len(data.test_y):,} images)" if cifar else data.test_description,
                            f"{len(data.train_y):,} CIFAR-10 training images (the first {BANK_PER_CLASS} of each class)"
                            if cifar else f"the {len(data.train_y):,} training images of {name}")
    sample = cifar_sample()
    return Pictures("the CIFAR-10 sample", tuple(sample.classes), sample.test_x.numpy(), sample.test_y.numpy(),
                    sample.train_x.numpy(), sample.train_y.numpy(), sample.test_description,
                    f"the {len(sample.train_y):,} training images of the CIFAR-10 sample shipped with convnet-lab", note)


@dataclass(frozen=True)
class ImageProbe:
    """One forward pass of an RGB picture through an AlexNet model."""

    image: np.ndarray  # (S, S, 3) float in [0, 1]: what the model saw, after prepare_images
    activations: dict[str, np.ndarray]  # layer name -> output for the one image
    top: list[tuple[str, float]]  # the five most probable classes (name, probability)
    embedding: torch.Tensor  # (D,) the retrieval layer's output (fc7), for convnets.nearest


def image_probe(name: str, picture: np.ndarray) -> ImageProbe:
    """Run image model ``name`` on one RGB picture (3, H, W) in [0, 1], resized and centre-cropped to its input (cached)."""
    return _image_probe(name, weights_version(name), np.asarray(picture, dtype=np.float32))


@st.cache_data(show_spinner=False, max_entries=32)
def _image_probe(name: str, version: float, picture: np.ndarray) -> ImageProbe:
    model, _, lock = _load_image_model(name, version)
    x = convnets.prepare_images(torch.from_numpy(picture), model.input_shape[-1])
    with lock:
        outputs, scores = convnets.activations_and_scores(model, x)
    top = top_of_scores(scores, getattr(model, "classes", None), k=5)[0]
    return ImageProbe(image=x[0].permute(1, 2, 0).numpy(), activations={k: v[0].numpy() for k, v in outputs.items()},
                      top=top, embedding=outputs[convnets.embedding_layer(model)][0].flatten())


@st.cache_resource(show_spinner="Embedding the bank's training images (fc7, once per model)…", max_entries=4)
def _image_bank(name: str, version: float, source: str) -> tuple[torch.Tensor, torch.Tensor]:
    from training.images import as_float

    model, _, lock = _load_image_model(name, version)
    images = torch.from_numpy(_pictures(source).train_x)
    with lock:
        vectors = convnets.embed(model, as_float(images))
    return vectors, vectors.square().sum(dim=1)


def nearest_training_images(name: str, probe: ImageProbe, k: int = 6) -> tuple[list[float], list[int], int]:
    """The k training images of :func:`pictures`' bank nearest to a probed picture in the model's retrieval layer
    (fc7; the paper's Figure 4): (distances, bank indices, the embedding's length). The bank is embedded once per
    model and weights version."""
    from training.images import cifar_source

    vectors, norms = _image_bank(name, weights_version(name), cifar_source() or "")
    distances, indices = convnets.nearest(probe.embedding, vectors, k=k, bank_sq_norms=norms)
    return distances.tolist(), indices.tolist(), int(vectors.shape[1])


@st.cache_data(show_spinner=False, max_entries=16)
def kernel_pictures(name: str, version: float, one_scale: bool) -> list[np.ndarray]:
    """The first layer's RGB kernels, one array (n, k, k, 3) in [0, 1] per group (GPU column).

    ``one_scale=False``: each kernel min-max scaled on its own (:func:`convnets.kernels.first_layer_kernels`, as
    cuda-convnet and the paper's Figure 3). ``one_scale=True``: one scale for the whole layer, zero at mid-grey and
    the largest absolute weight at the ends, so weak kernels look weak.
    """
    from convnets.kernels import first_layer_kernels

    model, _, lock = _load_image_model(name, version)
    with lock:
        images, groups = first_layer_kernels(model)
        if one_scale:
            weights = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).weight.detach().float().cpu()
            images = (0.5 + weights / (2 * weights.abs().max().clamp_min(1e-12))).permute(0, 2, 3, 1).numpy()
    per_group = len(images) // groups
    return [images[g * per_group:(g + 1) * per_group] for g in range(groups)]


@st.cache_data(show_spinner=False, max_entries=16)
def kernel_colours(name: str, version: float) -> list[dict]:
    """:func:`convnets.kernel_colour` of the model's first layer: per group its mean chroma and share of grey kernels."""
    model, _, lock = _load_image_model(name, version)
    with lock:
        return convnets.kernel_colour(model)


@st.cache_data(show_spinner=False)
def paper_counts() -> dict:
    """:func:`convnets.paper_comparison` (params, neurons, connections of the 2012 network beside the paper's), once."""
    return convnets.paper_comparison()


# --- Unit page: every unit's top-9 patches (cached on disk per model version), one unit's feature visualisation ---
# ``images=True``: a colour model of :func:`image_model_choices`, over :func:`pictures`' test images.

UNIT_CACHE_FORMAT = 2  # bump when convnets.units.top_patches changes what it finds


@dataclass(frozen=True)
class UnitPatches:
    """:func:`convnets.units.top_patches` of a model over its evaluation images (:func:`held_out_digits`, or for a
    colour model :func:`pictures`' test images), every unit layer."""

    patches: dict  # layer -> convnets.units.TopPatches
    description: str  # what the images are, e.g. 'the official MNIST test set (10,000 digits)'
    count: int  # how many
    seconds: float  # the time it took to find them (0 when read from the disk cache)
    cache: str  # where the result is kept on disk, or why it is not


def _unit_model(name: str, version: float, images: bool) -> tuple[nn.Module, threading.Lock]:
    model, _, lock = (_load_image_model if images else _load)(name, version)
    return model, lock


def _evaluation_source(images: bool) -> str:
    from training.images import cifar_source

    return (cifar_source() or "") if images else evaluation_source()


def _evaluation_images(source: str, images: bool) -> tuple[np.ndarray, str]:
    """(uint8 images, what they are) the top-9 patches are found over."""
    if images:
        found = _pictures(source)
        return found.test_x, found.test_description
    digits, _, description = _held_out_digits(source)
    return digits, description


def unit_layer_sizes(name: str, images: bool = False) -> dict[str, int]:
    """:func:`convnets.units.unit_layers` of the model ``name``: its layers with units, and how many each has."""
    return _unit_layer_sizes(name, weights_version(name), images)


@st.cache_data(show_spinner=False, max_entries=8)
def _unit_layer_sizes(name: str, version: float, images: bool = False) -> dict[str, int]:
    from convnets.units import unit_layers

    model, lock = _unit_model(name, version, images)
    with lock:
        return unit_layers(model)


def _unit_cache_file(name: str, version: float, source: str, description: str, count: int) -> Path:
    import hashlib

    key = hashlib.blake2b(f"{name}|{version!r}|{source}|{description}|{count}|{UNIT_CACHE_FORMAT}".encode(),
                          digest_size=10).hexdigest()
    return default_runs_dir() / "unit-cache" / f"top-patches-{re.sub(r'[^A-Za-z0-9]+', '-', name)}-{key}.npz"


def unit_patches(name: str, images: bool = False) -> UnitPatches:
    """Every unit's top-9 patches for the model ``name`` over its evaluation images: found once per weights version
    and data (batched passes), kept on disk in the runs folder (``unit-cache/``) and in memory."""
    return _unit_patches(name, weights_version(name), _evaluation_source(images), images)


@st.cache_data(show_spinner="Finding every unit's top-9 patches in the test images (once per model version)…",
               max_entries=8)
def _unit_patches(name: str, version: float, source: str, images: bool = False) -> UnitPatches:
    import time

    from convnets import units

    model, lock = _unit_model(name, version, images)
    data, description = _evaluation_images(source, images)
    path = _unit_cache_file(name, version, source, description, len(data))
    shown = f"unit-cache/{path.name} in the runs folder"
    if path.is_file():
        try:
            return UnitPatches(units.load_top_patches(path, model), description, len(data), 0.0, shown)
        except (OSError, ValueError, KeyError) as exc:  # damaged or from another format: find them again
            shown = f"{shown} (unreadable, rewritten: {exc})"
    start = time.perf_counter()
    with lock:
        patches = units.top_patches(model, data, batch_size=250 if images else 1000)
    seconds = time.perf_counter() - start
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        units.save_top_patches(path, patches)
    except OSError as exc:
        shown = f"not kept on disk ({exc.strerror or exc}); kept in memory for this server only"
    return UnitPatches(patches, description, len(data), seconds, shown)


def unit_weighted_sum(name: str, image: np.ndarray, layer: str, unit: int, images: bool = False):
    """:func:`convnets.units.weighted_sum` of one unit on one image (28x28; a colour model's (3, S, S) at its input
    size), at its most active position (cached)."""
    return _unit_weighted_sum(name, weights_version(name), np.asarray(image, dtype=np.float32), layer, unit, images)


@st.cache_data(show_spinner=False, max_entries=64)
def _unit_weighted_sum(name: str, version: float, image: np.ndarray, layer: str, unit: int, images: bool = False):
    from convnets.units import weighted_sum

    model, lock = _unit_model(name, version, images)
    with lock:
        return weighted_sum(model, image, layer, unit)


@st.cache_data(show_spinner="Visualising the unit (activation maximisation from noise)…", max_entries=64)
def unit_visualisation(name: str, version: float, layer: str, unit: int, objective: str, images: bool = False):
    """:func:`convnets.units.visualise` with its default regularisation and seed: the same picture every time."""
    from convnets.units import visualise

    model, lock = _unit_model(name, version, images)
    with lock:
        return visualise(model, layer, unit, objective=objective)
