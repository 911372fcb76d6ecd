"""Misclassified: every held-out digit the chosen model gets wrong (like Fig. 8 of the paper), and the confusion matrix."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import plots
import resources
import state
import streamlit as st

ANY = "any"
TRUE_KEY, PRED_KEY, CHART_KEY = "misclassified_true", "misclassified_predicted", "misclassified_confusion"
COLUMNS = 10
PER_PAGE = 40  # tiles per gallery page: a poor model's hundreds of mistakes stay one screen, not 12,000 px
PAGE_KEY = "misclassified_page"
ss = st.session_state
ss.setdefault(TRUE_KEY, ANY)
ss.setdefault(PRED_KEY, ANY)


@st.cache_resource(show_spinner=False, max_entries=8)
def confusion_figure(name: str, version: float) -> go.Figure:
    """The confusion matrix of model ``name`` (weights ``version``): the same on every rerun, so built once."""
    errors = resources.held_out_errors(name, version)
    total = len(errors.labels)
    return plots.confusion_matrix(errors.confusion, f"Confusion matrix, {name}, {total:,} held-out digits",
                                  f"of the {total:,} held-out digits")


name = state.model_name()
model, card = resources.load_model(name)
errors = resources.held_out_errors(name, resources.weights_version(name))
images, _, _ = resources.held_out_digits()
measured = f"measured on {errors.description}"
total, wrong = len(errors.labels), errors.wrong


def from_chart() -> None:
    """A click on a confusion-matrix cell sets both filters (a cleared selection resets them)."""
    points = ss[CHART_KEY].selection.points
    if points:
        ss[TRUE_KEY], ss[PRED_KEY] = int(points[0]["y"]), int(points[0]["x"])
    else:
        ss[TRUE_KEY], ss[PRED_KEY] = ANY, ANY
    first_page()


def clear_filters() -> None:
    ss[TRUE_KEY], ss[PRED_KEY] = ANY, ANY
    first_page()


def first_page() -> None:
    """A new filter shows its first page."""
    ss[PAGE_KEY] = 1


def use(index: int) -> None:
    """Make held-out digit ``index`` the current image for every page (and the Draw page's held-out pick)."""
    picked = state.held_out(index)
    state.set_current_digit(picked["image"], picked["source"], label=picked["label"], origin="held-out")
    ss["held_out_index"], ss["input_source"] = int(index), "held-out"


st.title("Misclassified")
st.caption(f"Model: **{name}**. Every digit below is one of {errors.description}, which the shipped weights never "
           "saw in training; like Fig. 8 of LeCun et al. (1998), each shows the true class → the model's guess.")

count_col, rate_col, card_col, paper_col = st.columns(4)
count_col.metric("Misclassified held-out digits", str(len(wrong)), help=f"Out of {total:,}, {measured}")
count_col.caption(f"of {total:,}, {measured}")
rate_col.metric("Held-out error", f"{errors.error_rate:.2f} %", help=measured)
rate_col.caption(f"{len(wrong)} / {total:,}, {measured}. With only {total:,} digits one error is 0.1 %.")
card_col.metric("Model card test error", f"{card['test_error']:.2f} %")
card_col.caption(f"From the model card, {resources.measured_on(card)}: a different, 10× larger set.")
paper_col.metric("Paper, LeNet-5", " / ".join(f"{v:g} %" for v in resources.PAPER_ERRORS.values()))
paper_col.caption("LeCun et al. (1998), measured on the official MNIST test set (10,000 digits): "
                  + "; ".join(f"{v:g} % {k}" for k, v in resources.PAPER_ERRORS.items()) + ".")

chart_col, gallery_col = st.columns([1.2, 1.4], gap="large")
with chart_col:
    st.plotly_chart(confusion_figure(name, resources.weights_version(name)), key=CHART_KEY, on_select=from_chart,
                    selection_mode="points")
    st.caption(f"Rows = true class, columns = predicted class; counts of {errors.description}. Colour = wrong "
               "answers only (the diagonal holds the right ones). Click a cell to filter the gallery; "
               "double-click the chart to clear.")

with gallery_col:
    options = [ANY, *range(10)]
    true_col, pred_col, reset_col = st.columns([1, 1, 0.7], vertical_alignment="bottom")
    true_col.selectbox("True class", options, key=TRUE_KEY, on_change=first_page)
    pred_col.selectbox("Predicted class", options, key=PRED_KEY, on_change=first_page)
    reset_col.button("Show all", icon=":material/filter_alt_off:", on_click=clear_filters)
    keep = np.ones(len(wrong), dtype=bool)
    if ss[TRUE_KEY] != ANY:
        keep &= errors.labels[wrong] == ss[TRUE_KEY]
    if ss[PRED_KEY] != ANY:
        keep &= errors.predictions[wrong] == ss[PRED_KEY]
    shown = wrong[keep]
    filters = [f"{what} {ss[key]}" for what, key in (("true", TRUE_KEY), ("predicted", PRED_KEY)) if ss[key] != ANY]
    st.markdown(f"**{len(shown)}** of the {len(wrong)} misclassified held-out digits"
                + (f" ({', '.join(filters)})" if filters else "") + ". Caption: true → predicted, and the model's "
                "confidence (softmax of its scores) in its wrong guess, in the gallery below. **Use** makes a digit "
                "the current image for the other pages."
                + (" The faithful LeNet-5's scores are negative RBF distances, whose softmax saturates: its wrong "
                   "guesses read close to 100 % too." if model.head == "rbf" else ""))
    if ss[TRUE_KEY] != ANY and ss[TRUE_KEY] == ss[PRED_KEY]:
        st.info(f"That cell is the diagonal: {errors.confusion[ss[TRUE_KEY], ss[TRUE_KEY]]} held-out {ss[TRUE_KEY]}s "
                "classified right, so none is in the gallery.", icon=":material/check_circle:")
    elif not len(wrong):
        st.success(f"No mistakes on {errors.description}.", icon=":material/check_circle:")

st.subheader(f"Gallery: {len(shown)} misclassified held-out digit{'s' * (len(shown) != 1)}, {name}")
pages = max(1, -(-len(shown) // PER_PAGE))
if ss.get(PAGE_KEY, 1) > pages:  # fewer pages under a new filter or model
    ss[PAGE_KEY] = 1
if pages > 1:
    picker_col, note_col = st.columns([1, 4], vertical_alignment="bottom")
    number = picker_col.number_input(f"Page (of {pages})", min_value=1, max_value=pages, step=1, key=PAGE_KEY)
    start = (number - 1) * PER_PAGE
    note_col.caption(f"Digits {start + 1}–{min(start + PER_PAGE, len(shown))} of {len(shown)}, {PER_PAGE} per page, in "
                     "held-out order.")
else:
    start = 0
for row in range(start, min(start + PER_PAGE, len(shown)), COLUMNS):
    for column, index in zip(st.columns(COLUMNS), shown[row:min(row + COLUMNS, start + PER_PAGE)], strict=False):
        index = int(index)
        tile = plots.thumbnail(images[index].astype(np.float32) / 255.0, 84)
        column.image(tile, width=tile.shape[1],
                     caption=f"#{index}: {errors.labels[index]} → {errors.predictions[index]}, "
                             f"{errors.confidences[index]:.1%}")
        column.button("Use", key=f"use_{index}", on_click=use, args=(index,),
                      help=f"Make held-out digit #{index} the current image for the other pages")
