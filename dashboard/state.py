"""What the pages share through ``st.session_state``: the chosen model and the current image.

The current image is a plain dict under ``CURRENT_KEY``, so tests can set it::

    {"image": float32 (28, 28) in [0, 1], ink = 1, "source": "held-out digit #3", "label": 4 or None}
"""

from __future__ import annotations

import numpy as np
import resources
import streamlit as st

MODEL_KEY = "model_name"
CURRENT_KEY = "current_digit"
STEPS_KEY = "current_steps"  # the convnets.digits.DigitSteps behind the current image, when it came from a picture
ORIGIN_KEY = "current_origin"  # where the current image came from: "canvas", "upload", "held-out" (None: a test set it)


def model_name() -> str:
    """The model picked in the sidebar (``lenet5`` until one is picked, or when a picked run is no longer usable)."""
    name = st.session_state.get(MODEL_KEY, resources.MODEL_NAMES[0])
    if name in resources.MODEL_NAMES:
        return name
    return name if name in resources.model_choices() else resources.MODEL_NAMES[0]


def held_out(index: int) -> dict:
    """Held-out digit ``index`` of the offline sample as a current-image dict."""
    images, labels, _ = resources.held_out_digits()
    index = int(index) % len(labels)
    return {"image": images[index].astype(np.float32) / 255.0, "source": f"held-out digit #{index}",
            "label": int(labels[index])}


def current_digit() -> dict:
    """The current image; held-out digit #0 until one is drawn, uploaded or picked."""
    current = st.session_state.get(CURRENT_KEY)
    if current is None:
        current = held_out(0)
        current["source"] += " (the default until you draw, upload or pick one)"
    return current


def set_current_digit(image: np.ndarray, source: str, label: int | None = None, steps: object | None = None,
                      origin: str | None = None) -> None:
    st.session_state[CURRENT_KEY] = {"image": np.asarray(image, dtype=np.float32).reshape(28, 28), "source": source,
                                     "label": label}
    st.session_state[STEPS_KEY] = steps
    st.session_state[ORIGIN_KEY] = origin


def clear_current_digit() -> None:
    for key in (CURRENT_KEY, STEPS_KEY, ORIGIN_KEY):
        st.session_state.pop(key, None)


def clear_if_from(origin: str) -> bool:
    """Drop the current image if it came from ``origin`` (an emptied canvas, a removed upload); True if it did."""
    if CURRENT_KEY not in st.session_state or st.session_state.get(ORIGIN_KEY) != origin:
        return False
    clear_current_digit()
    return True
