"""Serve the dashboard: ``python -m training.serve run APP [streamlit flags]`` (what ``convnet-lab app`` runs).

Streamlit imports the app's modules on the first page request; importing the heavy ones (torch ~3 s, pandas and
Streamlit's emoji table another 0.8 s of the first page's 1.6 s of server work) and parsing the offline digits
before the server starts keeps that first page fast. Then it is plain ``streamlit run``.
"""

from __future__ import annotations

import gc


def warm_up() -> None:
    """Import what the first page needs and read the offline digits; a warm-up only, so failures are reported, not raised."""
    try:
        import pandas  # noqa: F401
        import plotly.graph_objects  # noqa: F401
        import streamlit.emojis  # noqa: F401 - compiles one large pattern, for the page icon of st.set_page_config
        import torch  # noqa: F401

        import convnets  # noqa: F401
        import training.data

        training.data.load_sample()
    except Exception as exc:  # the pages report real problems themselves
        print(f"convnet lab: warm-up skipped ({exc})", flush=True)
    # Streamlit collects garbage after every script run (runner.postScriptGC); the first collection walked every
    # object torch and friends just made (0.2 s). Frozen, they are never walked again; the pages' garbage still is.
    gc.freeze()


def main() -> None:
    warm_up()
    from streamlit.web.cli import main as streamlit_main

    streamlit_main(prog_name="streamlit")


if __name__ == "__main__":
    main()
