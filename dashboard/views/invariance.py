"""Invariance lab: shift, rotate, scale, squeeze, thicken or add noise to the current image and watch the prediction."""

from __future__ import annotations

import plots
import resources
import state
import streamlit as st

from convnets.invariance import ROBUSTNESS_KINDS, TRANSFORMS

name = state.model_name()
model, card = resources.load_model(name)
current = state.current_digit()
subject = current["source"]
short = subject.split(" (")[0]  # without "(the default until you draw ...)"
truth = current.get("label")

st.title("Invariance lab")
st.caption(f"Model **{name}**, current image: **{subject}**. Move one slider and see what the network answers; the plots "
           "run the whole range through the model as one batch. Confidence = softmax of the scores"
           + (" (the faithful LeNet-5's scores are negated RBF distances)." if model.head == "rbf" else "."))

kind = st.selectbox("Transform", list(TRANSFORMS), key="invariance_kind",
                    format_func=lambda k: f"{TRANSFORMS[k].label.capitalize()} ({TRANSFORMS[k].help})")
spec = TRANSFORMS[kind]
result = resources.invariance_sweep(name, current["image"], kind)
levels = [float(v) for v in result.levels]
text = [f"{spec.label} {spec.describe(v)}" for v in levels]
level = st.select_slider(f"{spec.label.capitalize()}", options=levels, value=float(spec.identity),
                         format_func=spec.describe, key=f"invariance_level_{kind}")
i = result.at(level)
prediction, confidence = int(result.predictions[i]), float(result.confidences[i])

image_col, sweep_col = st.columns([1, 3.2], gap="medium")
with image_col:
    st.image(plots.thumbnail(result.images[i], 168), width=168, caption=f"{short}, {spec.label} {spec.describe(level)}")
    st.metric("Prediction", str(prediction), help="argmax of the model's scores for the transformed image")
    st.caption(f"confidence {confidence:.1%}"
               + (f"; true label **{truth}**, so the prediction is **{'right' if prediction == truth else 'wrong'}**"
                  if truth is not None else ""))
with sweep_col:
    sweep = resources.figure(  # built once per sweep; the slider's level marked on a copy
        "invariance_sweep", result.levels, result.predictions, result.confidences,
        title=f"{name} on {short}: {spec.label} sweep", x_title=f"{spec.label} ({spec.help})", level_text=text,
        truth=truth, truth_probability=result.probabilities[:, truth] if truth is not None else None)
    st.plotly_chart(plots.marked_at(sweep, level), key="invariance_sweep")
    centre = result.at(spec.identity)
    same = result.predictions == result.predictions[centre]
    lo, hi = centre, centre
    while lo > 0 and same[lo - 1]:
        lo -= 1
    while hi < len(levels) - 1 and same[hi + 1]:
        hi += 1
    st.caption(f"{len(levels)} levels from {spec.describe(levels[0])} to {spec.describe(levels[-1])}, one forward batch. "
               f"The untransformed answer ({int(result.predictions[centre])}) holds from {spec.describe(levels[lo])} "
               f"to {spec.describe(levels[hi])}.")

st.subheader("Animated sweep")
st.caption("Each frame is one level of the sweep with the model's ten probabilities, in the spirit of LeCun's LeNet-5 "
           "demos. Press ▶ Play, or drag the slider under the figure.")
captions = [f"{t} → {int(p)} ({c:.0%})" for t, p, c in zip(text, result.predictions, result.confidences, strict=True)]
animation = resources.sweep_animation(result.images, result.probabilities, captions,
                                      [spec.describe(v) for v in levels])  # built once per sweep; opened at the slider
st.plotly_chart(plots.starting_at(animation, i), key="invariance_animation")

st.subheader("Robustness over the test digits")
models = list(resources.MODEL_NAMES) + ([name] if name not in resources.MODEL_NAMES else [])
curves = {m: resources.robustness_curves(m) for m in models}
description = curves[models[0]].description
st.caption(f"Accuracy of every model on {description}, each digit transformed at each of 11 levels (noise seeded, "
           "the same pixels for every model). Computed once per model and cached.")
columns = st.columns(2)
for k, robust_kind in enumerate(ROBUSTNESS_KINDS):
    robust = TRANSFORMS[robust_kind]
    robust_levels = curves[models[0]].levels[robust_kind]
    with columns[k % 2]:
        st.plotly_chart(resources.figure(
            "robustness_curves", robust_levels, {m: curves[m].accuracy[robust_kind] for m in models},
            title=f"Accuracy vs {robust.label}", x_title=robust.axis,
            level_text=[f"{robust.label} {robust.describe(v)}" for v in robust_levels],
            measured_on=f"on {description}"), key=f"robustness_{robust_kind}")
identity = ", ".join(f"{m} {100 * curves[m].accuracy['shift_x'][list(curves[m].levels['shift_x']).index(0.0)]:.1f} %"
                     for m in models)
st.caption(f"Untransformed accuracy on {description}: {identity}. The model card's test error is "
           f"{card['test_error']:.2f} % for {name}, {resources.measured_on(card)}.")
