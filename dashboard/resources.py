"""Every cached loader of the dashboard, in one module: shipped models, their layer tables, the held-out digits.

Models are shared by all sessions (``st.cache_resource``); each comes with a
lock, because :func:`convnets.activations` hooks the shared model for the
length of a forward pass and two sessions must not interleave there.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch
from torch import nn

import convnets
from convnets.models import WEIGHTS_DIR
from training.data import load_sample

MODEL_NAMES = ("lenet5", "lenet5-modern")
MODEL_LABELS = {"lenet5": "lenet5 · faithful 1998", "lenet5-modern": "lenet5-modern · ReLU, BN"}


def weights_version(name: str) -> float:
    """The weights file's modification time, so new shipped weights replace cached ones without a restart."""
    path = WEIGHTS_DIR / f"{name}.pt"
    return path.stat().st_mtime if path.is_file() else 0.0


@st.cache_resource(show_spinner="Loading the shipped weights…", max_entries=4)
def _load(name: str, version: float) -> tuple[nn.Module, dict, threading.Lock]:
    model, card = convnets.load_pretrained(name)
    return model, card, threading.Lock()


def load_model(name: str) -> tuple[nn.Module, dict]:
    """``convnets.load_pretrained(name)``, cached per weights file: (model in eval mode, card). Treat both as read-only."""
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


@st.cache_data(show_spinner="Loading the offline held-out digits…")
def held_out_digits() -> tuple[np.ndarray, np.ndarray, str]:
    """The 1,000 held-out digits of the offline sample: (uint8 images (N, 28, 28), labels (N,), description)."""
    data = load_sample()
    description = f"the {len(data.test_y):,} held-out digits of {data.description}"
    return data.test_x.numpy(), data.test_y.numpy(), description


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
        outputs = convnets.activations(model, x)
        with torch.no_grad():
            scores = model(x)[0]
    return Probe(activations={k: v[0].numpy() for k, v in outputs.items()}, scores=scores.numpy(),
                 probabilities=torch.softmax(scores, dim=0).numpy())


PAPER_ERRORS = {  # LeCun et al. (1998), official MNIST test set (10,000 digits)
    "LeNet-5": 0.95,
    "LeNet-5, trained on distorted digits": 0.8,
}


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
    """``training.loop.predict`` of the shipped ``name`` model on every held-out digit, with confidences and confusions."""
    from training.data import as_float
    from training.loop import predict

    model, _, lock = _load(name, version)
    data = load_sample()
    images, labels = data.test_x, data.test_y
    with lock, torch.no_grad():
        predictions = predict(model, images)
        probabilities = torch.softmax(model(as_float(images)), dim=1)
    predictions, labels = predictions.numpy(), labels.numpy()
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    confidences = probabilities.numpy()[np.arange(len(predictions)), predictions]
    return HeldOutErrors(predictions=predictions, confidences=confidences, labels=labels, confusion=confusion,
                         description=f"the {len(labels):,} held-out digits of {data.description}")
