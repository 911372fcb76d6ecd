"""convnet lab: draw a digit and watch LeNet-5 think.

Start from the repository root (so .streamlit/config.toml applies)::

    streamlit run dashboard/app.py
"""

from __future__ import annotations

import plots
import resources
import state
import streamlit as st

st.set_page_config(page_title="convnet lab", page_icon="🔢", layout="wide")

pages = [
    st.Page("pages/draw.py", title="Draw & predict", icon=":material/draw:", default=True),
    st.Page("pages/filters.py", title="Filters", icon=":material/grid_on:"),
    st.Page("pages/feature_maps.py", title="Feature maps", icon=":material/layers:"),
    st.Page("pages/misclassified.py", title="Misclassified", icon=":material/error:"),
    st.Page("pages/architecture.py", title="Architecture", icon=":material/account_tree:"),
]
page = st.navigation(pages)

with st.sidebar:
    st.selectbox("Model", resources.MODEL_NAMES, key=state.MODEL_KEY, format_func=resources.MODEL_LABELS.get,
                 help="Shipped weights; every page shows this model.")
    _, card = resources.load_model(state.model_name())
    st.caption(f"Test error **{card['test_error']:.2f} %**, {resources.measured_on(card)}. "
               f"Trained on {card['data']['description']}.")

page.run()

with st.sidebar:  # after the page, which may have just changed the current image
    current = state.current_digit()
    st.image(plots.thumbnail(current["image"], 96), width=96)
    st.caption(f"Current image: {current['source']}")
