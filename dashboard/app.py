"""convnet lab: draw a digit and watch LeNet-5 think.

Start from the repository root (so .streamlit/config.toml applies)::

    streamlit run dashboard/app.py
"""

from __future__ import annotations

import plots
import resources
import state
import streamlit as st
import torch

# One thread: an interaction is one small forward pass, where a second thread only adds hand-off cost on a small,
# busy CPU (bench/dashboard.py --threads 1 vs 2); background training runs in its own process with its own threads.
torch.set_num_threads(1)

st.set_page_config(page_title="convnet lab", page_icon="🔢", layout="wide")
# Streamlit fetches plotly.js (a few MB, about a second to parse here) only when a page first shows a chart; an
# invisible one as the very first element lets the browser fetch and parse it while the server computes the page
# (the first chart after a fresh start: bench/dashboard.py)
preload = st.empty()
if "plotly_preloaded" not in st.session_state:
    st.session_state["plotly_preloaded"] = True
    preload.plotly_chart(plots.invisible(), config={"displayModeBar": False, "staticPlot": True}, key="plotly_preload")

pages = {  # sections of the sidebar (not named like a page: the browser check finds pages by their text), every page listed
    "Your digit": [
        st.Page("views/draw.py", title="Draw & predict", icon=":material/draw:", default=True),
        st.Page("views/filters.py", title="Filters", icon=":material/grid_on:"),
        st.Page("views/feature_maps.py", title="Feature maps", icon=":material/layers:"),
        st.Page("views/unit.py", title="Unit page", icon=":material/center_focus_strong:"),
        st.Page("views/attribution.py", title="Why this answer", icon=":material/lightbulb:"),
        st.Page("views/invariance.py", title="Invariance lab", icon=":material/rotate_right:"),
        st.Page("views/adversarial.py", title="Adversarial digits", icon=":material/bug_report:"),
        st.Page("views/misclassified.py", title="Misclassified", icon=":material/error:"),
        st.Page("views/similarity.py", title="Similarity", icon=":material/join_inner:"),
        st.Page("views/unusual.py", title="Unusual patterns", icon=":material/psychology_alt:"),
        st.Page("views/architecture.py", title="Architecture", icon=":material/account_tree:"),
    ],
    "Runs and experiments": [
        st.Page("views/train_runs.py", title="Training", icon=":material/model_training:", url_path="training"),
        st.Page("views/experiments.py", title="Paper experiments", icon=":material/science:"),
    ],
    "Colour images": [
        st.Page("views/alexnet.py", title="AlexNet", icon=":material/photo_camera:"),
    ],
}
page = st.navigation(pages, expanded=True)
with st.sidebar:
    runs = resources.finished_runs()
    choices = resources.model_choices(runs)
    if state.MODEL_KEY not in st.session_state and st.query_params.get("model") in choices:  # a shared Unit page address
        st.session_state[state.MODEL_KEY] = st.query_params["model"]
    if st.session_state.get(state.MODEL_KEY) not in choices:  # a picked run whose checkpoint is gone
        st.session_state[state.MODEL_KEY] = resources.MODEL_NAMES[0]
    st.selectbox("Model", list(choices), key=state.MODEL_KEY, format_func=choices.get,
                 help="Shipped weights, or a finished run of the Training page; every page shows this model.")
    if runs.skipped:  # each reason in sight, not on hover: at most three, then a count
        reasons = [f"run {k}: {why}" for k, why in list(runs.skipped.items())[:3]]
        more = f"; and {len(runs.skipped) - 3} more" if len(runs.skipped) > 3 else ""
        st.caption(f"Skipped {len(runs.skipped)} finished run(s) that cannot be used — " + "; ".join(reasons) + more)
    if runs.problem:
        st.caption(f"Finished runs not listed: {runs.problem}")
    _, card = resources.load_model(state.model_name())
    st.caption(f"Test error **{card['test_error']:.2f} %**, {resources.measured_on(card)}. "
               f"Trained on {resources.without_paths(card['data']['description'])}.")

page.run()
preload.empty()

with st.sidebar:  # after the page, which may have just changed the current image
    current = state.current_digit()
    st.image(plots.thumbnail(current["image"], 96), width=96)
    st.caption(f"Current image: {current['source']}")
