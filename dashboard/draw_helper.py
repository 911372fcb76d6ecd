"""The Draw page's browser-side helpers: the drawing canvas with its toolbar off the drawing area, and uploads the
file uploader refuses before the app sees them.

streamlit-drawable-canvas 0.13 lays its toolbar (undo, redo, edit, reset) over the canvas's top-right corner, invisible
until the pointer has rested on the canvas for a moment, so a stroke that starts there is swallowed; it has no option
to hide or move the toolbar, and its styles live in a shadow root. ``page_helper`` mounts a script-only component that
adds one rule to every component shadow root on the page: the toolbar sits above the canvas instead of on it. The
same script watches the file uploader for a refused file (over the size limit, or of a type it does not take), which
never reaches the server, and reports its name and Streamlit's reason, so the page can say it in words.
"""

from __future__ import annotations

import json

import streamlit as st

TOOLBAR_CSS = ".dc-toolbar { top: auto !important; bottom: 100%; padding: 0 0 0.25rem 0.5rem !important; }"
_SCRIPT = """
export default function (component) {
  const { setTriggerValue } = component;
  const css = %s;
  const reported = new Set();
  const tick = () => {
    document.querySelectorAll('[data-testid="stBidiComponentIsolated"]').forEach((host) => {
      const root = host.shadowRoot;
      if (root && !root.querySelector("style[data-convnet-lab]")) {
        const style = document.createElement("style");
        style.dataset.convnetLab = "toolbar";
        style.textContent = css;
        root.appendChild(style);
      }
    });
    document.querySelectorAll('[data-testid="stFileChip"][aria-invalid="true"]').forEach((chip) => {
      const name = chip.querySelector('[data-testid="stFileChipName"]');
      const tip = document.getElementById(chip.getAttribute("aria-describedby") || "");
      const refusal = JSON.stringify({ name: name ? name.title || name.textContent : "",
                                       label: chip.getAttribute("aria-label") || "", reason: tip ? tip.textContent : "" });
      if (!reported.has(refusal)) {
        reported.add(refusal);
        setTriggerValue("refused", refusal);
      }
    });
  };
  tick();
  const timer = setInterval(tick, 400);
  return () => clearInterval(timer);
}
"""
_helper = st.components.v2.component("convnet-lab.draw-page-helper", js=_SCRIPT % json.dumps(TOOLBAR_CSS),
                                     isolate_styles=False)


def page_helper(key: str = "draw_page_helper") -> dict | None:
    """Mount the helper; returns the file the uploader refused since the last run, as ``{"name", "label", "reason"}``
    (``label`` is the uploader's "NAME, SIZE"; ``reason`` its tooltip text, empty when the browser had not built it)."""
    result = _helper(key=key, on_refused_change=lambda: None, width="content", height="content")
    try:
        refused = json.loads(getattr(result, "refused", None) or "null")
    except json.JSONDecodeError:
        return None
    return refused if isinstance(refused, dict) and refused.get("name") else None
