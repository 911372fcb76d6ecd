"""Adversarial digits: the smallest perturbation that changes the answer (FGSM, PGD), both digit models, accuracy vs ε."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plots
import resources
import state
import streamlit as st

from convnets import adversarial as A

METHODS = {"fgsm": "FGSM (one step)", "pgd": f"PGD ({A.PGD_STEPS} steps)"}
CURVE_DIGITS = 1000  # the curves attack at most this many evaluation digits (the first ones)
ANY = -1  # the target picker's "any other class"


@st.cache_data(show_spinner=False, max_entries=128)
def attack(name: str, version: float, image: np.ndarray, method: str, target: int | None) -> A.AdversarialExample | str:
    """``A.smallest_perturbation`` of model ``name`` (per weights version), or the one line saying why not."""
    model, lock = resources.model_and_lock(name, version)
    try:
        with lock:  # another session's convnets.activations may have hooks on the shared model
            return A.smallest_perturbation(model, image, method, target)
    except ValueError as exc:
        return str(exc)


@st.cache_data(show_spinner="Attacking the test digits (once per model and method)…", max_entries=16)
def curve(name: str, version: float, digits: str, method: str) -> np.ndarray:
    """``A.accuracy_vs_epsilon`` of model ``name`` over the first CURVE_DIGITS of ``digits`` (the evaluation digits)."""
    model, lock = resources.model_and_lock(name, version)
    images, labels, _ = resources.held_out_digits()
    with lock:
        return A.accuracy_vs_epsilon(model, images[:CURVE_DIGITS], labels[:CURVE_DIGITS], A.CURVE_EPSILONS, method)


def answer(cls: int | None, probability: float | None) -> str:
    return "—" if cls is None else f"{cls} ({probability:.1%})"


name = state.model_name()
current = state.current_digit()
short = current["source"].split(" (")[0]  # without "(the default until you draw ...)"
models = list(resources.MODEL_NAMES) + ([name] if name not in resources.MODEL_NAMES else [])

st.title("Adversarial digits")
st.caption(f"Model **{name}**, current image: **{current['source']}**. The smallest change to the pixels that makes "
           "the model answer something else: every pixel may move by at most ε (L∞; pixel units of the [0, 1] image, "
           "so ε = 0.1 is a tenth of full ink), and the result is clipped to [0, 1]. The search tries a grid of ε in one "
           f"batch, then a finer grid in the bracket; it gives up above ε = {A.EPS_MAX:g}.")

method_col, target_col = st.columns(2)
method = method_col.radio("Method", list(METHODS), format_func=METHODS.get, horizontal=True, key="adversarial_method")
picked = target_col.selectbox("Change the answer to", [ANY, *range(10)], key="adversarial_target",
                              format_func=lambda t: "any other class" if t == ANY else f"class {t}")
target = None if picked == ANY else int(picked)
st.caption(A.describe(method, target is not None) + ".")

image = np.asarray(current["image"], dtype=np.float32)
examples = {m: attack(m, resources.weights_version(m), image, method, target) for m in models}
example = examples[name]
if isinstance(example, str):
    st.warning(f"{name}: {example}", icon=":material/error:")
else:
    original_col, delta_col, adversarial_col = st.columns(3, gap="medium")
    with original_col:
        st.image(plots.thumbnail(example.original, 196), width=196, caption=f"{short}, as given")
        st.metric("Answer", str(example.original_class), help="argmax of the model's scores")
        st.caption(f"probability {example.original_probability:.1%}")
    if not example.found:
        delta_col.info(f"No ε up to {A.EPS_MAX:g} changes {name}'s answer with {METHODS[method]}"
                       + (f" to {target}" if target is not None else "") + ".", icon=":material/shield:")
    else:
        with delta_col:
            st.plotly_chart(resources.figure("perturbation", example.perturbation,
                                             f"Perturbation (ε = {example.epsilon:.3f})", limit=example.epsilon),
                            key="adversarial_delta")
            st.metric("ε needed", f"{example.epsilon:.3f}",
                      help=f"The smallest ε on the search grid that changes the answer; ε - {example.resolution:.4f} did not")
            st.caption(f"red: ink added, blue: ink removed; search resolution {example.resolution:.4f}")
        with adversarial_col:
            st.image(plots.thumbnail(example.adversarial, 196), width=196, caption=f"{short} + perturbation")
            st.metric("New answer", str(example.new_class))
            st.caption(f"probability {example.new_probability:.1%}")

st.subheader("Both digit models, same image")
rows = []
for m, ex in examples.items():
    if isinstance(ex, str):
        rows.append({"model": m, "answer now": "—", "ε needed": None, "new answer": "—", "note": ex})
    else:
        rows.append({"model": m, "answer now": answer(ex.original_class, ex.original_probability), "ε needed": ex.epsilon,
                     "new answer": answer(ex.new_class, ex.new_probability),
                     "note": "" if ex.found else f"no ε up to {A.EPS_MAX:g} works"})
st.dataframe(pd.DataFrame(rows), hide_index=True,
             column_config={"ε needed": st.column_config.NumberColumn(format="%.3f")}, key="adversarial_models")
needed = {row["model"]: row["ε needed"] for row in rows if row["ε needed"] is not None}
if len(needed) >= 2:
    larger = max(needed, key=needed.get)
    st.caption(f"{METHODS[method]} on {short}: **{larger}** needs the larger ε here ("
               + ", ".join(f"{m} {e:.3f}" for m, e in needed.items()) + ").")

st.subheader("Accuracy vs ε over the test digits")
images, labels, description = resources.held_out_digits()
digits = description if len(labels) <= CURVE_DIGITS else f"the first {CURVE_DIGITS:,} of {description}"
curves = {m: curve(m, resources.weights_version(m), description, method) for m in models}
epsilons = np.asarray(A.CURVE_EPSILONS)
curve_method = METHODS[method] if method == "fgsm" else f"PGD ({A.CURVE_STEPS} steps per ε)"  # not the single image's
st.plotly_chart(resources.figure("robustness_curves", epsilons, curves, title=f"Accuracy vs ε, {curve_method}, untargeted",
                                 x_title="ε (L∞, pixel units of [0, 1])", level_text=[f"ε {e:g}" for e in epsilons],
                                 measured_on=f"on {digits}"), key="adversarial_curves")
halves = {m: A.epsilon_at(epsilons, acc) for m, acc in curves.items()}
st.caption(f"Each of {digits} attacked at every ε, against its true label; a digit counts as wrong at ε once any image "
           "the attack tried within that ε (or a smaller one) was misclassified, so the curve starts at the clean "
           "accuracy and never rises. "
           + (f"PGD here: {A.CURVE_STEPS} steps per ε, each ε starting where the previous one ended. " if method == "pgd"
              else "") + "Computed once per model and method. Accuracy halves at "
           + ", ".join(f"ε ≈ {e:.3f} for {m}" if e is not None else f"no listed ε for {m}" for m, e in halves.items()) + ".")
at_tenth = ", ".join(f"{m} {100 * acc[list(A.CURVE_EPSILONS).index(0.1)]:.1f} %" for m, acc in curves.items())
st.markdown("**Compared with the Invariance lab:** there both models keep most answers under shifts of a few pixels "
            "and under random Gaussian noise of σ = 0.1, which moves every pixel, many by more than 0.1. Random noise "
            "points nowhere in particular; adversarial noise is aimed along the gradient, and at ε = 0.1 it leaves "
            f"{at_tenth} of the digits right under {curve_method}. Robustness to natural changes says little about "
            "robustness to the worst case.")
