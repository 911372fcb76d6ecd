"""Filters: the learnt C1 and C3 kernels, Table I, and (lenet5) the output layer's fixed digit bitmaps."""

from __future__ import annotations

import numpy as np
import plots
import resources
import state
import streamlit as st

from convnets.lenet import SparseConv2d, c3_connection_mask, digit_prototypes


@st.cache_resource(show_spinner=False, max_entries=8)
def bitmaps() -> list:
    """The ten fixed output bitmaps as figures: the same for every model and rerun, so built once."""
    prototypes = digit_prototypes().numpy()
    return [plots.bitmap(prototypes[digit], f"digit {digit}", zmax=1.0, height=230, showscale=False) for digit in range(10)]


@st.cache_resource(show_spinner=False, max_entries=8)
def kernel_figures(name: str, version: float) -> dict:
    """C1's and C3's kernel grids and Table I of model ``name`` (weights ``version``): built once per weights, not per
    rerun (about 0.3 s of figure building on a small CPU)."""
    model, _ = resources.load_model(name)
    c1 = model.features.C1[0].weight.detach().numpy()  # (6, 1, 5, 5)
    c3_layer = model.features.C3[0]
    sparse = isinstance(c3_layer, SparseConv2d)
    c3 = (c3_layer.full_weight() if sparse else c3_layer.weight).detach().numpy()  # (16, 6, 5, 5)
    mask = c3_connection_mask().numpy() if sparse else np.ones(c3.shape[:2], dtype=bool)
    grid = np.where(mask.T[:, :, None, None], c3.transpose(1, 0, 2, 3), np.nan)  # rows = S2 maps, columns = C3 maps
    return {"sparse": sparse,
            "c1": plots.kernel_grid(c1.transpose(1, 0, 2, 3), "C1 kernels", "input", "C1 map", height=260),
            "c3": plots.kernel_grid(grid, "C3 kernels", "S2 map", "C3 map"),
            "table1": plots.connection_table(mask.T, "Table I (LeCun et al., 1998)") if sparse else None}


name = state.model_name()
model, card = resources.load_model(name)
faithful = model.head == "rbf"
figures = kernel_figures(name, resources.weights_version(name))

st.title("Filters")
st.caption(f"Model: **{name}**. Weights learnt from {card['data']['description']} ({card['recipe']}). "
           "Colours are centred on zero: red = positive weight, blue = negative; hover for the value.")

st.subheader("C1: six 5x5 kernels on the input")
st.plotly_chart(figures["c1"], key="c1")
if not faithful:
    st.caption("With batch norm after each convolution, only a kernel's pattern and sign matter, not its scale.")

sparse = figures["sparse"]
if sparse:
    st.subheader("C3: 60 kernels, wired by Table I")
    st.caption("Column j is C3 map j, row i the S2 map it reads: blank where Table I has no connection. "
               "Each C3 map sums its kernels' responses, so it sees a different subset of S2's maps.")
else:
    st.subheader("C3: 96 kernels, full connections")
    st.caption(f"{name} connects every C3 map to all six S2 maps (Table I is not used). Column j is C3 map j, row i the S2 map.")
st.plotly_chart(figures["c3"], key="c3")

if sparse:
    st.subheader("Table I: which S2 maps feed each C3 map")
    st.plotly_chart(figures["table1"], key="table1")
    st.caption("Six C3 maps read 3 contiguous S2 maps, six read 4 contiguous, three read 4 non-contiguous, one reads all 6: "
               "60 connections instead of 96, which breaks the symmetry between maps and saves parameters.")

    st.subheader("Output layer: the ten fixed 7x12 bitmaps")
    st.caption("The RBF units are not learnt: each holds a stylised 7x12 digit (+1 / −1). "
               "The output for digit d is the squared distance from F6's 84 values to bitmap d.")
    for start in (0, 5):
        for digit, column in zip(range(start, start + 5), st.columns(5), strict=True):
            column.plotly_chart(bitmaps()[digit], key=f"bitmap{digit}")
