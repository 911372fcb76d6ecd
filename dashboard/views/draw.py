"""Draw & predict: draw, upload or pick a digit; see it preprocessed the MNIST way and classified."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import plots
import resources
import state
import streamlit as st
from draw_helper import page_helper
from PIL import Image, UnidentifiedImageError
from streamlit_drawable_canvas import st_canvas

from convnets.digits import prepare_digit
from convnets.novelty import NoveltyRule, Verdict, calibrate

MAX_UPLOAD_MB = 2  # as the server's own limit (training/cli.py app_command, .streamlit/config.toml)
UPLOAD_TYPES = ("png", "jpg", "jpeg", "bmp", "gif", "webp")
ss = st.session_state
ss.setdefault("input_source", "held-out")
ss.setdefault("input_generation", 0)  # bumped by Clear: new widget keys give an empty canvas and uploader
ss.setdefault("held_out_index", 0)


def use(source: str) -> None:
    ss["input_source"] = source


def canvas_changed() -> None:
    """The canvas sent a new drawing: strokes make it the source; an emptied canvas (undo, its trash icon) takes the
    drawing's prediction with it, and leaves a held-out digit or an upload alone."""
    drawing = (ss.get(f"canvas_{ss['input_generation']}") or {}).get("drawing") or {}
    if (drawing.get("raw") or {}).get("objects"):
        use("canvas")
    else:
        state.clear_if_from("canvas")


def pick_random() -> None:
    ss["held_out_index"] = random.randrange(len(resources.held_out_digits()[1]))
    use("held-out")


def clear() -> None:
    ss["input_generation"] += 1
    ss["input_source"] = "canvas"
    state.clear_current_digit()


def no_ink(message: str) -> str:
    """prepare_digit's 'no ink' refusals (an empty canvas, a flat picture) as the not-a-digit verdicts they are."""
    return f"This does not look like a digit: {message}" if "no ink" in message else message


def refusal_reason(refused: dict) -> str:
    """Why the uploader refused a file, in words: its own reason when the browser gave it, else from the name and size."""
    if refused.get("reason"):
        return refused["reason"].strip().removeprefix("Error:").strip().rstrip(".")  # e.g. "File must be 2.0MB or smaller"
    size = refused.get("label", "").rpartition(", ")[2]
    if not refused["name"].lower().endswith(tuple(f".{kind}" for kind in UPLOAD_TYPES)):
        return f"only {', '.join(UPLOAD_TYPES).upper()} files are taken"
    return f"it is {size or 'larger than the limit'}, over the limit of {MAX_UPLOAD_MB} MB per file"


@st.cache_data(show_spinner=False, max_entries=8)
def novelty_rule(models: tuple[str, ...], versions: tuple[float, ...], digits: str) -> NoveltyRule:
    """convnets.novelty's rule calibrated on the evaluation digits (``digits`` names them) and ``models``' answers."""
    images, _, description = resources.held_out_digits()
    answers = {m: resources.held_out_answers(m, v) for m, v in zip(models, versions, strict=True)}
    return calibrate(images, {m: (a.scores, a.rbf) for m, a in answers.items()}, description)


def novelty_verdict(image: np.ndarray) -> tuple[Verdict, NoveltyRule]:
    """Does the current image look like a digit -- judged by the faithful LeNet-5's RBF distance and the current
    model's own signal (its confidence for a softmax model), on top of the ink checks."""
    models = ("lenet5",) if name == "lenet5" else ("lenet5", name)
    rule = novelty_rule(models, tuple(resources.weights_version(m) for m in models), resources.held_out_digits()[2])
    answers = {m: resources.answers(m, image[None]) for m in models}
    return rule.verdicts(image, {m: (a.scores, a.rbf) for m, a in answers.items()})[0], rule


def novelty_note(rule: NoveltyRule) -> None:
    with st.expander("The not-a-digit rule: its thresholds and how they were chosen"):
        st.markdown(f"An image does not look like a digit when any of these is outside the range of real digits; each "
                    f"bound is a percentile over {rule.calibrated_on} (their ink for the first two, the models' answers "
                    "for the others):\n\n" + "\n".join(f"- {line}" for line in rule.describe())
                    + f"\n\nTogether they accept **{rule.accepted:.1%}** of those digits. The faithful LeNet-5's RBF "
                    "distance is the paper's own rejection signal; a softmax's confidence is a weaker one. A dot is "
                    "caught by its ink (the MNIST recipe blows it up into a filled disc that both models call a 0); "
                    "a scribble only when it strays far enough from every digit.")


name = state.model_name()
model, card = resources.load_model(name)
_, _, held_out_description = resources.held_out_digits()

st.title("Draw & predict")
st.caption(f"Model: **{name}**. Draw a digit, upload a picture of one, or pick one of {held_out_description} "
           "(never seen in training). Whatever you choose becomes the current image for every page.")

canvas_key, upload_key = f"canvas_{ss['input_generation']}", f"upload_{ss['input_generation']}"
# Fixed widths in a wrapping row, not columns: the 280-px canvas stays whole at any window width (at 1,024 px the
# held-out picker wraps under the other two) instead of being cut off behind the next column.
inputs = st.container(horizontal=True, gap="medium")
with inputs.container(width=280):
    st.subheader("Draw")
    canvas = st_canvas(stroke_width=18, stroke_color="#FFFFFF", background_color="#000000", width=280, height=280,
                       drawing_mode="freedraw", return_image_data=True, key=canvas_key, on_change=canvas_changed,
                       update_streamlit=True)
    st.button("Clear", icon=":material/delete:", on_click=clear, help="Empty the canvas and the upload")
with inputs.container(width=250):
    st.subheader("Upload")
    upload = st.file_uploader(f"A photo or scan of one digit (PNG, JPEG, up to {MAX_UPLOAD_MB} MB)",
                              type=list(UPLOAD_TYPES), max_upload_size=MAX_UPLOAD_MB,
                              key=upload_key, on_change=use, args=("upload",))
    st.caption(f"Files over {MAX_UPLOAD_MB} MB are refused before the app sees them: crop the photo to the digit or "
               "save it smaller (a digit needs far less).")
with inputs.container(width=250):
    st.subheader("Held-out digit")
    st.number_input("Index among the held-out digits", min_value=0, max_value=len(resources.held_out_digits()[1]) - 1,
                    step=1, key="held_out_index", on_change=use, args=("held-out",))
    st.button("Random held-out digit", icon=":material/casino:", on_click=pick_random)

source = ss["input_source"]
problem = None
if source == "canvas":
    strokes = (canvas.json_data or {}).get("objects") or []
    pixels = canvas.image_data
    if strokes and pixels is not None:
        try:
            steps = prepare_digit(np.asarray(pixels))
            state.set_current_digit(steps.centred, "your drawing", steps=steps, origin="canvas")
        except ValueError as exc:
            problem = no_ink(str(exc))
elif source == "upload" and upload is not None:
    try:
        with Image.open(upload) as picture:
            steps = prepare_digit(picture)
        state.set_current_digit(steps.centred, f"your upload {upload.name!r}", steps=steps, origin="upload")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as exc:
        problem = f"could not read {upload.name!r} as an image ({type(exc).__name__}); upload a PNG or JPEG"
    except ValueError as exc:
        problem = no_ink(str(exc))
elif source == "upload":  # the upload was removed, or replaced by one the uploader refused
    state.clear_if_from("upload")
elif source == "held-out":
    picked = state.held_out(ss["held_out_index"])
    state.set_current_digit(picked["image"], picked["source"], label=picked["label"], origin="held-out")
refused = page_helper()
if refused:
    problem = f"{refused['name']!r} was not uploaded: {refusal_reason(refused)}; crop the photo to the digit or save it " \
              "as a smaller PNG or JPEG."
if problem:  # nothing from before may look like the answer to what was just refused
    state.clear_current_digit()

def show(current: dict) -> None:
    """The current image's preprocessing, prediction, probabilities and (lenet5) RBF distances."""
    steps = ss.get(state.STEPS_KEY)
    st.divider()
    st.subheader(f"Current image: {current['source']}")
    if steps is not None:
        st.caption("Preprocessing, the MNIST recipe: grayscale → ink = 1 on black (uneven light removed) → crop to the ink → "
                   "strokes thinner than MNIST's widened → fit the longer side to 20 px (aspect kept, antialiased) → place "
                   "in 28x28 with the centre of mass at the centre.")
        gallery = steps.gallery()
        for column, (caption, image) in zip(st.columns(len(gallery)), gallery, strict=True):
            tile = plots.thumbnail(image, 112)
            column.image(tile, width=tile.shape[1], caption=caption)
    else:
        st.caption("Held-out digits are already in MNIST format (20x20 box, centred by mass in 28x28): no preprocessing.")
        st.image(plots.thumbnail(current["image"], 112), width=112, caption="28x28 model input")

    result = resources.probe(name, current["image"])
    order = np.argsort(-result.probabilities)
    first, second = int(order[0]), int(order[1])
    truth = current.get("label")
    verdict, rule = novelty_verdict(np.asarray(current["image"], dtype=np.float32))
    rejected = not verdict.digit and truth is None  # a labelled image is a real digit whatever the rule says
    if rejected:
        st.warning(f"This does not look like a digit: {'; '.join(verdict.reasons)}. The closest digit, {first} "
                   f"({result.probabilities[first]:.1%}), means nothing here.", icon=":material/help:")
    elif not verdict.digit:
        st.info(f"A real digit, labelled {truth}, that the not-a-digit rule would reject ({'; '.join(verdict.reasons)}): "
                f"one of the {1 - rule.accepted:.1%} of {rule.calibrated_on} it rejects.", icon=":material/help:")

    guess_col, chart_col = st.columns([1, 2.2], gap="large")
    with guess_col:
        st.metric("First guess", "not a digit" if rejected else str(first),
                  help="Probability = softmax of the scores for this image")
        st.caption(f"probability {result.probabilities[first]:.1%} for {current['source']}")
        st.metric("Second guess", str(second))
        st.caption(f"probability {result.probabilities[second]:.1%}")
        if truth is not None:
            verdict = "right" if first == truth else "wrong"
            st.markdown(f"True label: **{truth}**, so the first guess is **{verdict}**.")
    with chart_col:
        if model.head == "rbf":
            how = ("softmax of the negative RBF distances: the faithful LeNet-5 outputs distances to ten 7x12 digit "
                   "bitmaps, not probabilities")
        else:
            how = "softmax of the output layer's scores"
        st.plotly_chart(plots.bars(result.probabilities, f"Probabilities for {current['source']}", "digit", "probability",
                                   highlight=first, fmt=".2%"), key="probabilities")
        st.caption(f"Probability = {how}.")

    table = pd.DataFrame({"digit": range(10), "score": result.scores, "probability (%)": 100 * result.probabilities})
    if model.head == "rbf":
        distances = result.activations["output"]
        table.insert(1, "RBF distance", distances)
        st.markdown("**The ten RBF distances** (squared Euclidean distance from F6's 84 outputs to each digit's 7x12 "
                    f"bitmap; lower = closer; score = −distance), for {current['source']}:")
    st.dataframe(table, hide_index=True, column_config={"probability (%)": st.column_config.NumberColumn(format="%.2f")})
    novelty_note(rule)


if problem:
    st.warning(problem, icon=":material/error:")
if state.CURRENT_KEY in ss:
    show(state.current_digit())
else:
    st.info("Draw a digit on the black canvas, upload a picture, or pick a held-out digit.", icon=":material/draw:")
