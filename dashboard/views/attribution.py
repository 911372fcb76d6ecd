"""Why this answer: which pixels of the current image the model's answer depends on, by five methods, each overlaid
on the input, and their deletion curves on one chart so they can be compared by a number. The computation is
convnets.attribution; this page lays it out."""

from __future__ import annotations

import numpy as np
import plots
import resources
import state
import streamlit as st
import torch

from convnets import attribution as A
from convnets.inference import probabilities as softmax_of

ss = st.session_state
DIGITS, PICTURES = "digits", "pictures"
DELETION_STEPS = 20
LABELS = {"saliency": "Gradient (saliency)", "smoothgrad": "SmoothGrad", "integrated-gradients": "Integrated gradients",
          "grad-cam": "Grad-CAM", "occlusion": "Occlusion", "random": "random order (chance)"}
MAX_SIDE = 64  # occlusion at stride 1 and SmoothGrad run every copy as one batch: 32x32 models, not 224x224 ones


@st.cache_data(show_spinner=False, max_entries=64)
def probabilities(kind: str, name: str, version: float, x: np.ndarray) -> np.ndarray:
    """Softmax of the model's scores for the one image ``x`` (C, H, W)."""
    model, lock = resources.model_and_lock(name, version, images=kind != DIGITS)
    with lock:
        return softmax_of(model, torch.from_numpy(x)[None])[0].numpy()


@st.cache_data(show_spinner=False, max_entries=256)
def explain(kind: str, name: str, version: float, x: np.ndarray, target: int | None, method: str,
            settings: tuple) -> tuple[A.Attribution | str | None, A.DeletionCurve | None]:
    """(the method's Attribution, its deletion curve), or (the one-line reason it cannot run, None).

    ``method="random"`` gives (None, the deletion curve of a seeded random pixel order): the chance level."""
    model, lock = resources.model_and_lock(name, version, images=kind != DIGITS)
    image = torch.from_numpy(x)
    with lock:
        if method == "random":
            order = np.random.default_rng(0).random(x.shape[1:])
            return None, A.deletion_curve(model, image, order, target=target, steps=DELETION_STEPS)
        try:
            attribution = A.attribute(model, image, method, target=target, **dict(settings))
        except ValueError as exc:
            return str(exc), None
        return attribution, A.deletion_curve(model, image, attribution, steps=DELETION_STEPS)


def digit_subject() -> dict:
    """The sidebar's digit model and the current image."""
    name = state.model_name()
    model, _ = resources.load_model(name)
    current = state.current_digit()
    image = np.asarray(current["image"], dtype=np.float32)
    return {"kind": DIGITS, "name": name, "version": resources.weights_version(name), "model": model,
            "x": image.reshape(1, 28, 28), "display": image, "classes": [str(i) for i in range(10)],
            "source": current["source"], "truth": current.get("label"),
            "fill": "0, the background (a blank digit)",
            "scores": "negated RBF distances" if model.head == "rbf" else "logits"}


def picture_subject() -> dict | None:
    """An AlexNet CIFAR model (a picker here) and the AlexNet page's current picture, else CIFAR-10 test image #0."""
    choices = {k: v for k, v in resources.image_model_choices().items() if k != "alexnet-torchvision"}
    if not choices:
        st.info("No AlexNet CIFAR weights here: `convnets/weights/alexnet-cifar.pt` ships with the source tree.")
        return None
    if ss.get("why_image_model") not in choices:
        ss["why_image_model"] = next(iter(choices))
    name = st.selectbox("AlexNet model", list(choices), format_func=choices.get, key="why_image_model")
    model, _ = resources.load_image_model(name)
    if model.input_shape[-1] > MAX_SIDE:
        st.info(f"{name} takes {model.input_shape[-1]}x{model.input_shape[-1]} pictures: too large for occlusion at "
                "interactive speed here; pick a CIFAR model.")
        return None
    picture = ss.get("alexnet_picture")
    if picture is None:
        pictures = resources.pictures()
        picture = {"image": pictures.test_x[0].astype(np.float32) / 255, "label": pictures.classes[pictures.test_y[0]],
                   "source": f"test image #0 of {pictures.name} (pick another on the AlexNet page)"}
    seen = resources.image_probe(name, picture["image"]).image  # (S, S, 3): what the model sees
    return {"kind": PICTURES, "name": name, "version": resources.weights_version(name), "model": model,
            "x": np.ascontiguousarray(seen.transpose(2, 0, 1), dtype=np.float32), "display": seen,
            "classes": list(model.classes), "source": picture["source"], "truth": picture.get("label"),
            "fill": "0, black", "scores": "logits"}


def class_picker(subject: dict, probs: np.ndarray) -> int | None:
    """The class to explain: None (the predicted one, following the image) or any class of the model."""
    classes, predicted = subject["classes"], int(probs.argmax())
    key = f"why_target_{subject['kind']}"
    options = [None, *range(len(classes))]
    if ss.get(key) not in options:  # a class the model does not have (another model was picked)
        if ss.get(key) is not None:
            st.warning(f"Class {ss[key]} does not exist for {subject['name']} ({len(classes)} classes); explaining the "
                       "predicted class.", icon=":material/warning:")
        ss[key] = None
    return st.selectbox(
        "Explain the class", options, key=key,
        format_func=lambda c: (f"the predicted class: {classes[predicted]} ({probs[predicted]:.1%})" if c is None
                               else f"{classes[c]} ({probs[c]:.1%})"),
        help="Every map answers: which pixels raise the score of this class? The predicted class by default.")


@st.cache_data(show_spinner=False, max_entries=16)
def grad_cam_layers(kind: str, name: str, version: float) -> tuple[list[str], str]:
    """(the model's Grad-CAM layers, the default one)."""
    model, lock = resources.model_and_lock(name, version, images=kind != DIGITS)
    with lock:
        return A.cam_layers(model), A.default_cam_layer(model)


def layer_picker(subject: dict) -> str:
    layers, default = grad_cam_layers(subject["kind"], subject["name"], subject["version"])
    key = f"why_layer_{subject['kind']}"
    asked = ss.get(key)
    if asked is not None and asked not in layers:  # e.g. a layer of another model, or one set from outside
        st.warning(f"{subject['name']} has no convolutional layer '{asked}' (it has {', '.join(layers)}); showing "
                   f"{default}.", icon=":material/warning:")
        ss[key] = default
    ss.setdefault(key, default)
    return st.selectbox("layer", layers, key=key, help="Grad-CAM weights this layer's maps by the score's mean gradient "
                                                       "per map; the last conv layer with maps larger than 1x1 by default.")


def method_settings(method: str, subject: dict) -> tuple:
    """The method's controls, returned as sorted (name, value) pairs for :func:`explain`."""
    kind, side = subject["kind"], subject["x"].shape[-1]
    if method == "saliency":
        st.caption("No settings: one forward and one backward pass.")
        return ()
    if method == "smoothgrad":
        samples = st.slider("samples", 5, 100, 25, 5, key=f"why_samples_{kind}")
        sigma = st.slider("noise σ (share of the pixel range)", 0.0, 0.5, 0.15, 0.05, key=f"why_sigma_{kind}")
        return (("samples", samples), ("sigma", sigma))
    if method == "integrated-gradients":
        steps = st.select_slider("steps", [8, 16, 32, 64, 128, 256, 512], 32, key=f"why_steps_{kind}")
        return (("steps", steps),)
    if method == "grad-cam":
        return (("layer", layer_picker(subject)),)
    patch = st.slider("patch (pixels a side)", 1, side // 2, 4, key=f"why_patch_{kind}")
    stride = st.slider("stride", 1, 8, 1 if kind == DIGITS else 2, key=f"why_stride_{kind}",
                       help="Patches are centred every stride pixels; a stride above the patch leaves pixels unseen.")
    return (("patch", patch), ("stride", stride))


def show(method: str, subject: dict, attribution: A.Attribution | str, class_name: str) -> None:
    """One method's map over the input, with what it did in one line; or its one-line problem."""
    if isinstance(attribution, str):
        st.warning(f"{LABELS[method]}: {attribution}", icon=":material/warning:")
        return
    title = f"{LABELS[method]} · {class_name}"
    st.plotly_chart(resources.figure("attribution_overlay", subject["display"], attribution.heatmap, title,
                                     attribution.signed), key=f"why_map_{method}")
    note = attribution.note.rstrip(".")  # one sentence, its full stop added here
    if attribution.completeness_gap is not None:
        difference = attribution.score - attribution.baseline_score
        share = abs(attribution.completeness_gap) / max(abs(difference), 1e-12)
        note += f" ({share:.1%} of it" + ("; raise the steps to close it)" if share > 0.05 else ")")
    st.caption(note + "." + (" Red: for the class, blue: against." if attribution.signed else ""))


def deletion_chart(subject: dict, curves: dict[str, A.DeletionCurve], chance: A.DeletionCurve, class_name: str) -> None:
    """Every method's deletion curve on one chart, AUC in the legend, and the numbers ranked."""
    traces = [{"name": f"{LABELS[m]} · AUC {c.auc:.3f}", "x": c.fractions * 100, "y": c.probabilities * 100,
               "color": plots.PALETTE[i % len(plots.PALETTE)], "markers": True} for i, (m, c) in enumerate(curves.items())]
    traces.append({"name": f"{LABELS['random']} · AUC {chance.auc:.3f}", "x": chance.fractions * 100,
                   "y": chance.probabilities * 100, "color": "#888", "dash": "dot"})
    st.plotly_chart(resources.figure("curves", traces, f"Deletion: probability of {class_name} as the most-attributed "
                                     "pixels go", "pixels removed (%)", f"probability of {class_name}", y_format=".1f",
                                     y_suffix=" %"), key="why_deletion")
    if chance.probabilities[0] < 0.05:  # nothing to delete: every area is about 0
        st.info(f"The model gives {class_name} only {chance.probabilities[0]:.1%} on this image, so there is little "
                "probability to remove and every area is close to 0: deletion curves compare the methods for the "
                "predicted class or a close runner-up.", icon=":material/info:")
    ranked = sorted(curves.items(), key=lambda item: item[1].auc)
    for column, (method, curve) in zip(st.columns(max(1, len(ranked))), ranked, strict=False):
        gain = round(curve.auc - chance.auc, 3)  # 0: no arrow, no colour (not a red '+0.000')
        column.metric(LABELS[method], f"{curve.auc:.3f}", f"{gain:+.3f} vs chance" if gain else "at chance",
                      delta_color="inverse" if gain else "off", delta_arrow="auto" if gain else "off",
                      help="Area under the deletion curve (probability vs share of pixels removed, 0 to 1): lower = "
                           "the map put first the pixels the answer needs.")
    st.caption(f"Pixels are removed in the order of each map (highest first), {100 // DELETION_STEPS} % of them per "
               f"step, by setting them to {subject['fill']}; all {DELETION_STEPS + 1} images of a curve go through "
               f"the model as one batch. The area under a curve is one number per method for this image and class "
               f"(lower = better); a seeded random order gives the chance level, {chance.auc:.3f}.")


st.title("Why this answer")
st.caption("Which pixels does the answer depend on? Five methods of `convnets.attribution`, each overlaid on the input, "
           "for the predicted class or any class you pick; then each method's deletion curve, so they can be compared "
           "by a number rather than by eye.")
family = st.radio("Network", [DIGITS, PICTURES], horizontal=True, key="why_family",
                  format_func={DIGITS: f"digit model (sidebar: {state.model_name()}) on the current image",
                               PICTURES: "AlexNet on a CIFAR-10 picture"}.get)
subject = digit_subject() if family == DIGITS else picture_subject()
if subject is None:
    st.stop()
key = (subject["kind"], subject["name"], subject["version"], subject["x"])
probs = probabilities(*key)
predicted = int(probs.argmax())
picture_col, text_col = st.columns([1, 5], vertical_alignment="center")
with picture_col:
    shown = (plots.thumbnail(subject["display"], 112) if subject["kind"] == DIGITS
             else plots.rgb_picture(subject["display"], 112))
    st.image(shown, width=112, caption=f"{subject['x'].shape[-1]}x{subject['x'].shape[-2]} input")
with text_col:
    truth = f" (true class **{subject['truth']}**)" if subject["truth"] is not None else ""
    st.markdown(f"Model **{subject['name']}**, image: **{subject['source']}**{truth}. It answers "
                f"**{subject['classes'][predicted]}** with probability {probs[predicted]:.1%} (softmax of its scores, "
                f"which are {subject['scores']}).")
    target = class_picker(subject, probs)
class_name = subject["classes"][predicted if target is None else target]

curves: dict[str, A.DeletionCurve] = {}
settings = {}  # the controls in one row, the maps in the next: the maps line up whatever each method's controls
for method, column in zip(A.METHODS, st.columns(len(A.METHODS), gap="small"), strict=True):
    with column:
        st.markdown(f"**{LABELS[method]}**")
        settings[method] = method_settings(method, subject)
for method, column in zip(A.METHODS, st.columns(len(A.METHODS), gap="small"), strict=True):
    with column:
        attribution, curve = explain(*key, target, method, settings[method])
        show(method, subject, attribution, class_name)
        if curve is not None:
            curves[method] = curve
st.caption(f"Baseline of integrated gradients and fill of occlusion: {subject['fill']}. Gradient maps show the size of "
           "d score / d pixel; Grad-CAM is placed on the input by each unit's receptive-field centre.")

st.subheader("Deletion curves: which map found what the answer needs?")
_, chance = explain(*key, target, "random", ())
if curves:
    deletion_chart(subject, curves, chance, class_name)
else:
    st.info("No method could run with these settings; see the messages above.")
