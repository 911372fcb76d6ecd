"""Architecture: the chosen model's layer table beside the paper's numbers, and its model card."""

from __future__ import annotations

import pandas as pd
import plots
import resources
import state
import streamlit as st

from convnets.paper import PAPER_LENET5_LAYERS as PAPER  # Section II-B: params and connections per layer

name = state.model_name()
model, card = resources.load_model(name)
rows = resources.layer_rows(name, resources.weights_version(name))

st.title("Architecture")
st.caption(f"Model: **{name}** ({type(model).__name__}). Parameters and connections are counted by convnets.layer_table "
           "on the model itself; connections are multiply-adds plus biases for one 28x28 image, as in the paper.")


def paper(layer: str, column: int) -> str:
    return f"{PAPER[layer][column]:,}" if layer in PAPER else "—"


def matches(row: dict) -> str:
    if row["name"] not in PAPER:
        return "—"
    return "yes" if (row["params"], row["connections"]) == PAPER[row["name"]] else "no"


st.plotly_chart(plots.layer_diagram(rows, f"{name}, input to output (hover a block for its counts)"), key="diagram")
st.caption("Each blue stack is a layer of feature maps (up to six squares drawn; side in proportion to the map size; grey "
           "when the layer has no trainable weights); each orange bar is a vector layer (height grows with its units).")

table = pd.DataFrame([{
    "layer": r["name"],
    "kind": r["kind"],
    "output": "x".join(map(str, r["output_shape"])),
    "neurons": r["neurons"],
    "params": r["params"],
    "connections": r["connections"],
    "paper params": paper(r["name"], 0),
    "paper connections": paper(r["name"], 1),
    "matches paper": matches(r),
} for r in rows])
st.dataframe(table, hide_index=True, column_config={
    "neurons": st.column_config.NumberColumn(format="localized"),
    "params": st.column_config.NumberColumn(format="localized"),
    "connections": st.column_config.NumberColumn(format="localized"),
    "paper params": st.column_config.TextColumn(help="LeCun et al. (1998), Section II-B"),
    "paper connections": st.column_config.TextColumn(help="LeCun et al. (1998), Section II-B"),
})
total = int(table["params"].sum())
matched = int((table["matches paper"] == "yes").sum())
note = " (the output layer's 840 RBF weights are the fixed digit bitmaps, not trained)" if model.head == "rbf" else ""
st.markdown(f"**{total:,}** trainable parameters in all; **{matched} of {len(PAPER)}** layers match the paper's counts{note}.")
if model.head != "rbf":
    st.caption(f"{name} is LeNet-5's shape with today's choices, so its counts differ by design: C3 is fully connected "
               "(96 kernels, not Table I's 60), pooling has no weights, and batch norm replaces each bias with a scale "
               "and a shift.")

st.header("Model card")
data = card.get("data", {})
test_col, data_col = st.columns(2)
with test_col:
    st.metric("Test error", f"{card['test_error']:.2f} %", help="Fraction of test digits misclassified")
    where = resources.measured_on(card)
    st.caption(f"{where[0].upper()}{where[1:]}, after the last epoch.")
with data_col:
    st.markdown(f"**Trained on:** {data.get('description', data.get('name', 'unknown'))}")
    if "train_size" in data:
        st.caption(f"{data['train_size']:,} training digits, {data.get('test_size', 0):,} test digits.")
st.markdown("**Recipe**")
st.code(str(card.get("recipe", "not recorded")), language="bash", wrap_lines=True)

epochs = card.get("epochs") or []
if epochs:
    st.subheader("Error per epoch")
    train_label = f"train error (running, on the {data.get('train_size', 0):,} training digits)"
    test_label = f"test error ({resources.measured_on(card)})"
    st.plotly_chart(plots.error_curves(epochs, train_label, test_label), key="epochs")
    st.caption(f"{len(epochs)} epoch{'s' if len(epochs) > 1 else ''}; train error is measured during training "
               "(with distortions, when the recipe uses them); test error on the test set after each epoch.")
with st.expander("Full training configuration"):
    st.json({k: card[k] for k in ("model", "options", "config") if k in card})
