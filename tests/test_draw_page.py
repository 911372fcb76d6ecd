"""Draw & predict never shows a prediction for an image that is no longer there: a removed or refused upload, an
unreadable one, an emptied canvas (its state logic here; the canvas itself in tests/browser_check.py)."""

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest

_missing = [m for m in ("streamlit", "plotly", "streamlit_drawable_canvas") if importlib.util.find_spec(m) is None]
if _missing:
    pytest.skip(f"dashboard dependencies not installed: {', '.join(_missing)}", allow_module_level=True)
from PIL import Image, ImageDraw  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard"
PAGE = str(DASHBOARD / "views" / "draw.py")
TIMEOUT = 120


@pytest.fixture(autouse=True)
def dashboard_on_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(DASHBOARD))
    monkeypatch.setenv("CONVNET_LAB_RUNS", str(tmp_path / "runs"))


def photo() -> bytes:
    """A dark '7' on light paper, as a PNG."""
    image = Image.new("RGB", (120, 160), (230, 228, 220))
    ImageDraw.Draw(image).line([(25, 30), (95, 30), (50, 135)], fill=(20, 20, 30), width=10)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.message for e in at.exception]
    return at


def predicting(at: AppTest) -> bool:
    return any(m.label == "First guess" for m in at.metric)


def uploaded(at: AppTest) -> AppTest:
    at.file_uploader[0].upload("seven.png", photo(), "image/png").run()
    ok(at)
    assert at.session_state["current_digit"]["source"] == "your upload 'seven.png'" and predicting(at)
    return at


def test_an_unreadable_upload_leaves_no_earlier_prediction_on_the_page():
    at = uploaded(ok(AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()))
    at.file_uploader[0].set_value(("notes.png", b"this is not a picture", "image/png")).run()
    ok(at)
    assert "could not read 'notes.png' as an image" in at.warning[0].value
    assert not predicting(at) and "current_digit" not in at.session_state
    assert not any(s.value.startswith("Current image") for s in at.subheader)


def test_a_removed_upload_takes_its_prediction_with_it_and_a_held_out_pick_comes_back():
    at = uploaded(ok(AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()))
    at.file_uploader[0].set_value(None).run()  # removed, or replaced by a file the uploader refused
    ok(at)
    assert not predicting(at) and "current_digit" not in at.session_state and at.info
    at.number_input(key="held_out_index").set_value(5).run()
    ok(at)
    assert at.session_state["current_digit"]["source"] == "held-out digit #5" and predicting(at)


def test_the_upload_states_its_limit_beside_it():
    at = ok(AppTest.from_file(PAGE, default_timeout=TIMEOUT).run())
    assert "up to 2 MB" in at.file_uploader[0].label
    assert any("Files over 2 MB are refused before the app sees them" in c.value for c in at.caption)


def _state_app() -> None:
    """A bare script: the current image set from an origin, then cleared if it came from another one."""
    import numpy as np
    import state
    import streamlit as st

    origin, emptied = st.session_state["origin"], st.session_state["emptied"]
    state.set_current_digit(np.zeros((28, 28)), "an image", origin=origin)
    st.session_state["cleared"] = state.clear_if_from(emptied)


@pytest.mark.parametrize(("origin", "emptied", "cleared"), [("canvas", "canvas", True), ("held-out", "canvas", False),
                                                             ("upload", "canvas", False), ("upload", "upload", True),
                                                             (None, "canvas", False)])
def test_an_emptied_canvas_or_upload_clears_only_its_own_image(origin, emptied, cleared):
    at = AppTest.from_function(_state_app, default_timeout=TIMEOUT)
    at.session_state["origin"], at.session_state["emptied"] = origin, emptied
    ok(at.run())
    assert at.session_state["cleared"] is cleared
    assert ("current_digit" in at.session_state) is not cleared
    assert ("current_origin" in at.session_state) is not cleared
    if not cleared:
        assert np.array_equal(at.session_state["current_digit"]["image"], np.zeros((28, 28), dtype=np.float32))
