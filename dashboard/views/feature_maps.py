"""Feature maps: every layer's output for the current image, in network order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plots
import resources
import state
import streamlit as st

from convnets.lenet import digit_prototypes

name = state.model_name()
model, card = resources.load_model(name)
current = state.current_digit()
result = resources.probe(name, current["image"])
rows = {row["name"]: row for row in resources.layer_rows(name, resources.weights_version(name))}
acts = result.activations
faithful = model.head == "rbf"
subject = current["source"]

st.title("Feature maps")
left, right = st.columns([1, 5], vertical_alignment="center")
left.image(plots.thumbnail(current["image"], 112), width=112, caption="current 28x28 image")
right.markdown(f"Model **{name}**, current image: **{subject}**. Every value below is this one image's activation; "
               "hover over a map for its values. Draw or pick another image on *Draw & predict*.")

summary = pd.DataFrame([{"layer": r["name"], "kind": r["kind"], "output": "x".join(map(str, r["output_shape"])),
                         "neurons": r["neurons"], "params": r["params"], "connections": r["connections"]}
                        for r in rows.values()])
with st.expander("Layers at a glance (params and connections per image, from convnets.layer_table)"):
    st.dataframe(summary, hide_index=True)

sizes = resources.unit_layer_sizes(name)  # one unit on its own page: kernels, receptive field, top-9, visualisation
layer_col, unit_col, open_col = st.columns([1, 1, 3], vertical_alignment="bottom")
unit_layer = layer_col.selectbox("Look at one unit of", list(sizes), key="maps_unit_layer")
st.session_state["maps_unit"] = min(st.session_state.get("maps_unit", 0), sizes[unit_layer] - 1)
unit = unit_col.number_input(f"unit (0–{sizes[unit_layer] - 1})", 0, sizes[unit_layer] - 1, key="maps_unit")
if open_col.button("Open the unit page", icon=":material/center_focus_strong:", key="maps_open_unit"):
    st.switch_page("views/unit.py", query_params={"model": name, "layer": unit_layer, "unit": str(unit)})


def heading(layer: str, what: str) -> None:
    row = rows[layer]
    shape = "x".join(map(str, row["output_shape"]))
    st.subheader(f"{layer}: {what}")
    st.caption(f"{row['kind']} · output {shape} · {row['params']:,} params · {row['connections']:,} connections")


def maps(layer: str, columns: int, label: str = "map", height: int | None = None) -> None:
    values = acts[layer]
    n = values.shape[0]
    title = f"{layer}: {n} map{'s' if n > 1 else ''} of {values.shape[1]}x{values.shape[2]} for {subject}"
    st.plotly_chart(resources.figure("feature_maps", values, title, columns, label=label, height=height), key=f"maps_{layer}")


heading("input", "the image as the network sees it")
st.caption("Padded to 32x32 and rescaled so background = −0.1 and ink = 1.175, as in the paper.")
maps("input", 1, label="input", height=340)

heading("C1", "six convolutions of the input")
maps("C1", 6)
heading("S2", "subsampling halves the resolution")
maps("S2", 6)
heading("C3", "sixteen convolutions of S2's maps")
maps("C3", 8)
heading("S4", "subsampling again")
maps("S4", 8)

heading("C5", "120 units, each a 5x5 convolution over all of S4 (output 1x1)")
c5 = acts["C5"].reshape(-1)
st.plotly_chart(resources.figure("bars", c5, f"C5 for {subject}", "unit", "activation", height=260), key="c5")

heading("F6", "84 units, read as a 7x12 image")
f6 = acts["F6"].reshape(-1)
if faithful:
    distances = acts["output"]
    nearest = int(np.argmin(distances))
    f6_col, proto_col, _ = st.columns([1, 1, 2])
    with f6_col:
        st.plotly_chart(resources.figure("bitmap", f6, f"F6 for {subject}", zmax=1.7159), key="f6")
    with proto_col:
        st.plotly_chart(resources.figure("bitmap", digit_prototypes()[nearest].numpy(), f"nearest bitmap: digit {nearest}",
                                         zmax=1.7159), key="prototype")
    st.caption(f"F6's outputs lie in ±1.7159 (the squashing function); the nearest of the ten fixed bitmaps is digit "
               f"{nearest}, at squared distance {distances[nearest]:.2f}.")
else:
    f6_col, _ = st.columns([1, 3])
    with f6_col:
        st.plotly_chart(resources.figure("bitmap", f6, f"F6 for {subject}"), key="f6")
    unit = {"relu": "ReLU", "tanh": "tanh"}.get(getattr(model, "activation", "relu"), "ReLU")
    st.caption(f"{name} has no bitmap targets: its F6 is a plain {unit} layer feeding a linear softmax head, "
               "so the 7x12 picture is just a layout of its 84 values.")

if faithful:
    heading("output", "ten RBF distances to the digit bitmaps (lower = closer)")
    st.plotly_chart(resources.figure("bars", acts["output"], f"RBF distances for {subject}", "digit", "squared distance",
                               highlight=int(np.argmin(acts["output"])), fmt=".2f"), key="output")
else:
    heading("output", "ten class scores (logits; higher = more likely)")
    st.plotly_chart(resources.figure("bars", acts["output"], f"Scores for {subject}", "digit", "score",
                               highlight=int(np.argmax(acts["output"])), fmt=".3f"), key="output")
first = int(np.argmax(result.scores))
st.markdown(f"Prediction for {subject}: **{first}** (probability {result.probabilities[first]:.1%}, softmax of the scores).")
