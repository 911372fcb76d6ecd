"""Unusual patterns: odd inputs in the spirit of LeCun et al.'s "weirdos", the model's answers, and your own images."""

from __future__ import annotations

import numpy as np
import plots
import resources
import state
import streamlit as st

COLUMNS = 5
PERCENTILE = 99.0  # of the held-out digits' oddness: the line above which an answer is flagged
OWN_KEY = "unusual_own"
MAX_OWN = 20
ss = st.session_state
ss.setdefault(OWN_KEY, [])

name = state.model_name()
model, _ = resources.load_model(name)
version = resources.weights_version(name)
patterns = resources.weirdo_set()
_, _, held_out_description = resources.held_out_digits()


def add_current() -> None:
    current = state.current_digit()
    ss[OWN_KEY] = [*ss[OWN_KEY], {"image": np.array(current["image"], dtype=np.float32), "source": current["source"],
                                  "label": current.get("label")}][-MAX_OWN:]


def clear_own() -> None:
    ss[OWN_KEY] = []


items = [{"name": w.name, "image": w.image, "reads": w.reads,
          "note": ("no single digit" if w.reads is None else f"a person reads {w.reads}") + f". {w.description}"}
         for w in patterns]
items += [{"name": f"yours #{i}", "image": own["image"], "reads": own["label"],
           "note": own["source"] + (f", labelled {own['label']}" if own["label"] is not None else "")}
          for i, own in enumerate(ss[OWN_KEY], start=1)]
result = resources.answers(name, np.stack([item["image"] for item in items]))
held = resources.held_out_answers(name, version)
threshold = float(np.percentile(held.oddness, PERCENTILE))
flagged = result.oddness > threshold
held_flagged = int((held.oddness > threshold).sum())
rbf = result.rbf

st.title("Unusual patterns")
st.caption(f"Model: **{name}**. Inputs no digit classifier was trained for, after the \"weirdos\" of LeCun et al. (1998): "
           "broken, thick and thin strokes, two digits at once, noise, a blank, shapes that are not digits. They are made "
           f"in code (convnets.weirdos) from the most typical digit of each class among the offline sample's 1,000 held-out "
           "digits. Answers come from one batched "
           f"forward pass; *a person reads* is what the pattern shows, where it shows one digit.")

if rbf:
    flag_name = "rejected"
    st.markdown(f"The faithful LeNet-5 answers with RBF distances: the squared distance from F6's 84 outputs to each "
                "digit's 7x12 bitmap, the winner being the closest. The paper notes that such outputs, unlike sigmoid "
                "scores, can reject non-digits: an input far from every bitmap is no digit. Here an answer is "
                f":red-badge[rejected] when the winner's distance exceeds **{threshold:.2f}**, the {PERCENTILE:g}th "
                f"percentile of the winner's distance over {held_out_description} ({held_flagged} of them are over it).")
else:
    flag_name = "low confidence"
    st.markdown(f"This model's output is a softmax. An answer is :orange-badge[low confidence] when its confidence is "
                f"below **{1 - threshold:.1%}**, the {100 - PERCENTILE:g}st percentile of the model's confidence over "
                f"{held_out_description} ({held_flagged} of them are below it).")

readable = [i for i, item in enumerate(items) if item["reads"] is not None]
right = sum(int(result.predictions[i]) == items[i]["reads"] for i in readable)
flag_col, right_col, held_col = st.columns(3)
flag_col.metric(f"Flagged {flag_name}", f"{int(flagged.sum())} of {len(items)}")
right_col.metric("Right where a person reads a digit", f"{right} of {len(readable)}",
                 help="Counting yours that carry a label (held-out digits)")
held_col.metric(f"Held-out digits {flag_name}", f"{held_flagged} of {len(held.scores):,}",
                help=f"By construction about {100 - PERCENTILE:g} % of {held_out_description}")

add_col, clear_col, note_col = st.columns([1, 1, 3], vertical_alignment="center")
add_col.button("Add the current image", icon=":material/add_photo_alternate:", on_click=add_current,
               disabled=len(ss[OWN_KEY]) >= MAX_OWN, help=f"Up to {MAX_OWN}; draw or pick one on Draw & predict")
clear_col.button("Clear yours", icon=":material/delete:", on_click=clear_own, disabled=not ss[OWN_KEY])
note_col.caption(f"Current image: {state.current_digit()['source']}. Yours join the grid after the "
                 f"{len(patterns)} patterns ({len(ss[OWN_KEY])} so far).")

for start in range(0, len(items), COLUMNS):
    for column, i in zip(st.columns(COLUMNS), range(start, min(start + COLUMNS, len(items))), strict=False):
        item, answer = items[i], int(result.predictions[i])
        with column.container(border=True):
            st.markdown(f"**{item['name']}**")
            st.image(plots.thumbnail(item["image"], 112), width=112)
            line = f"→ **{answer}** · {result.confidences[i]:.1%}"
            if rbf:
                line += f" · distance {-result.scores[i, answer]:.2f}"
            if flagged[i]:
                line += f" :{'red' if rbf else 'orange'}-badge[{flag_name}]"
            st.markdown(line)
            st.caption(item["note"])

st.caption("→ the model's answer · its softmax confidence"
           + (" · the winner's RBF distance (lower = closer to that digit's bitmap). The softmax of negated distances "
              "saturates, so confidence stays near 100 % even for nonsense: the distance is the honest signal."
              if rbf else "."))
