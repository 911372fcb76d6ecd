"""Similarity: the six training digits nearest to an image in the model's last hidden layer, and a 2-D map of them all."""

from __future__ import annotations

import time

import numpy as np
import plots
import resources
import state
import streamlit as st

import convnets

K = 6
CURRENT, HELD_OUT = "The current image", "A held-out digit"
QUERY_KEY, INDEX_KEY = "similarity_query", "similarity_held_out"
ss = st.session_state
ss.setdefault(QUERY_KEY, CURRENT)
ss.setdefault(INDEX_KEY, 0)

name = state.model_name()
model, card = resources.load_model(name)
bank = resources.embedding_bank(name, resources.weights_version(name))
held_out_images, _, held_out_description = resources.held_out_digits()
dims = bank.vectors.shape[1]


def trained_on(data: dict) -> str:
    """How the bank's digits relate to the model's own training digits, from its card."""
    if data.get("name") == "sample":
        return "These are the digits this model was trained on."
    if str(data.get("name", "")).endswith("-minus-sample"):
        return (f"The model never saw them in training: it was trained on the other {data.get('train_size', 0):,} digits "
                f"({data['description']}), which the dashboard does not ship.")
    return f"The model was trained on {data.get('description', 'an unrecorded data set')}."


st.title("Similarity")
st.caption(f"Model: **{name}**. Like Figure 4 of the AlexNet paper: an image is described by the {dims} values of the "
           f"model's last hidden layer (**{bank.layer}**), and the training images whose {bank.layer} vectors lie closest "
           f"(Euclidean distance) are its neighbours. The bank searched is {bank.description}. {trained_on(card['data'])}")

pick_col, query_col, answer_col = st.columns([1.4, 0.8, 1.6], gap="medium", vertical_alignment="top")
with pick_col:
    st.radio("Query", [CURRENT, HELD_OUT], key=QUERY_KEY, horizontal=True,
             help="The current image comes from Draw & predict (or Misclassified's Use).")
    if ss[QUERY_KEY] == HELD_OUT:
        st.number_input(f"Index among {held_out_description}", min_value=0, max_value=len(held_out_images) - 1, step=1,
                        key=INDEX_KEY)
query = state.current_digit() if ss[QUERY_KEY] == CURRENT else state.held_out(ss[INDEX_KEY])

vector = resources.embedding(name, query["image"])
start = time.perf_counter()
distances, indices = convnets.nearest(vector, bank.vectors, K, bank_sq_norms=bank.sq_norms)
elapsed_ms = 1000 * (time.perf_counter() - start)
distances, indices = distances.numpy(), indices.numpy()
neighbour_labels = bank.labels[indices]
votes = np.bincount(neighbour_labels, minlength=10)
vote = int(votes.argmax())
predicted = int(resources.answers(name, query["image"][None]).predictions[0])
truth = query.get("label")

with query_col:
    st.image(plots.thumbnail(query["image"], 112), width=112, caption=query["source"])
with answer_col:
    st.markdown(f"The model says **{predicted}**" + (f"; the true label is **{truth}**." if truth is not None else "."))
    st.markdown(f"The {K} nearest training digits vote **{vote}** ({votes[vote]} of {K})"
                + (", agreeing with the model." if vote == predicted else f", not **{predicted}** as the model says.")
                + " A k-nearest-neighbour classifier on these vectors would answer the vote.")

st.subheader(f"The {K} nearest training digits in {bank.layer}")
for rank, (column, index, distance) in enumerate(zip(st.columns(K), indices, distances, strict=True), start=1):
    tile = plots.thumbnail(bank.images[index].astype(np.float32) / 255.0, 112)
    column.image(tile, width=tile.shape[1],
                 caption=f"{rank}. label {bank.labels[index]} · distance {distance:.3f} · training digit #{index}")
st.caption(f"Euclidean distance between {bank.layer} vectors ({dims} values), nearest first, from convnets.nearest "
           f"(brute force over all {len(bank.labels):,} bank vectors: {elapsed_ms:.1f} ms here; "
           "`convnet-lab experiment time-retrieval` times a 60,000-vector bank).")

st.subheader(f"Map of the bank: {bank.layer} vectors in two dimensions")
query_xy = convnets.project(vector, bank.mean, bank.components).numpy()
st.plotly_chart(plots.embedding_map(bank.coords, bank.labels, f"{bank.layer} of {len(bank.labels):,} training digits, "
                                    f"{name}: first two principal components", query=query_xy, neighbours=indices,
                                    distances=distances, explained=bank.explained, query_name=query["source"]),
                key="similarity_map")
st.caption(f"Each dot is one bank digit placed by the first two principal components (PCA, convnets.pca_2d) of the "
           f"{bank.layer} vectors, coloured by its true label; together the two axes keep {bank.explained.sum():.0%} of "
           f"the variance. The star is the query, projected onto the same axes; the black-ringed dots are its {K} nearest "
           f"neighbours, nearest in all {dims} dimensions, so they need not look nearest here. Hover for index, label and "
           "rank; click a class in the legend to hide it, double-click to show it alone.")
