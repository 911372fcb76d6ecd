"""Unit page: one unit of the sidebar's digit model from every side -- its kernels and the weighted sum it computes on
the current image, its receptive field, the nine test digits that excite it most, and an input made to excite it.
The unit is in the address (``?model=lenet5&layer=C3&unit=5``), so a unit can be shared. The computation is
convnets.units; this page lays it out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plots
import resources
import state
import streamlit as st

from convnets import units as U
from convnets.lenet import C3_TABLE

ss = st.session_state
LAYER_KEY, UNIT_KEY, OBJECTIVE_KEY = "unit_layer", "unit_index", "unit_objective"
ADDRESS_KEY = "unit_address"  # the (layer, unit) this page last wrote into the URL
OBJECTIVES = {"centre": "the unit at the centre of its map", "map": "the whole map (its mean)"}
FRAME = (230, 40, 40)


def follow_address(name: str, layers: dict[str, int]) -> None:
    """Show the unit the URL names when this page did not write it (a shared address, the Feature maps button); a
    unit or model that does not exist gets one message and the pickers keep a unit that does."""
    asked_model, layer, unit = (st.query_params.get(key) for key in ("model", "layer", "unit"))
    if asked_model and asked_model != name and (layer, unit) != ss.get(ADDRESS_KEY):
        where = ("pick it in the sidebar to see this unit there" if asked_model in resources.model_choices()
                 else "it is not here (shipped: lenet5, lenet5-modern, or a finished run of the Training page)")
        st.warning(f"The address names the model '{asked_model}', but this page shows the sidebar's '{name}': {where}.",
                   icon=":material/warning:")
    if (layer is None and unit is None) or (layer, unit) == ss.get(ADDRESS_KEY):
        return
    try:
        ss[LAYER_KEY], ss[UNIT_KEY] = U.resolve_unit(layers, layer, "0" if unit is None else unit, name)
    except ValueError as exc:
        shown = ss.get(LAYER_KEY) if ss.get(LAYER_KEY) in layers else next(iter(layers))
        st.error(f"This address asks for a unit that does not exist: {exc}. Showing {shown} unit "
                 f"{min(ss.get(UNIT_KEY, 0), layers[shown] - 1)} instead; pick another below.", icon=":material/error:")


def pick_unit(name: str, layers: dict[str, int], maps: dict[str, np.ndarray]) -> tuple[str, int]:
    """The layer and unit pickers; the pick goes into the URL."""
    if ss.get(LAYER_KEY) not in layers:
        ss[LAYER_KEY] = next(iter(layers))
    layer_col, unit_col, address_col = st.columns([1, 1, 3], vertical_alignment="bottom")
    layer = layer_col.selectbox(
        "Layer", list(layers), key=LAYER_KEY,
        format_func=lambda n: f"{n} · {layers[n]} {'maps' if maps[n].ndim == 3 else 'units'}")
    count = layers[layer]
    ss[UNIT_KEY] = min(max(int(ss.get(UNIT_KEY, 0)), 0), count - 1)
    unit = int(unit_col.number_input(f"Unit (0–{count - 1})", 0, count - 1, step=1, key=UNIT_KEY))
    st.query_params.from_dict({"model": name, "layer": layer, "unit": str(unit)})
    ss[ADDRESS_KEY] = (layer, str(unit))
    address_col.markdown(f"Address of this unit: `unit?model={name}&layer={layer}&unit={unit}` — open it in another tab "
                         "or share it.")
    return layer, unit


def boxed(image: np.ndarray, box: tuple[int, int, int, int], scale: int = 8) -> np.ndarray:
    """The image scaled up as RGB with a red frame around ``box`` (top, left, bottom, right), bottom/right exclusive."""
    big = np.kron(np.clip(image, 0, 1), np.ones((scale, scale)))
    rgb = np.repeat((big * 255).round().astype(np.uint8)[..., None], 3, axis=2)
    top, left, bottom, right = (v * scale for v in box)
    width = max(2, scale // 3)
    rgb[top:top + width, left:right] = rgb[bottom - width:bottom, left:right] = FRAME
    rgb[top:bottom, left:left + width] = rgb[top:bottom, right - width:right] = FRAME
    return rgb


def weighted_sum_table(ws: U.WeightedSum, top: int | None = None) -> pd.DataFrame:
    """The sum term by term: each input map's kernel x window, the bias, the pre-activation, then the rest."""
    order = np.argsort(-np.abs(ws.contributions))[:top] if top else range(len(ws.inputs))
    what = "Σ kernel × window" if ws.windows.shape[-1] > 1 else "weight × input"
    rows = [(f"{ws.input_layer} {'map' if ws.windows.shape[-1] > 1 else 'unit'} {ws.inputs[i]}", what,
             float(ws.contributions[i])) for i in order]
    if top and top < len(ws.inputs):
        rest = float(ws.contributions.sum() - ws.contributions[list(order)].sum())
        rows.append((f"the other {len(ws.inputs) - top} inputs", what, rest))
    total = "pre-activation" if len(ws.after) == 1 else "weighted sum"  # batch norm between it and the activation
    rows += [("bias", "", ws.bias), (total, "sum of the above", ws.pre_activation)]
    rows += [(step, {"Squash": "1.7159 tanh(2a/3) of the pre-activation"}.get(step, "applied to the row above"), value)
             for step, value in ws.after]
    rows.append(("value", "what Feature maps shows", ws.value))
    return pd.DataFrame(rows, columns=["term", "how", "value"])


def computes(ws: U.WeightedSum, faithful: bool, subject: str) -> None:
    """The unit's kernels and the weighted sum they make on the current image."""
    maps = ws.windows.shape[-1] > 1
    if maps:
        source = (f"Table I: S2 maps {', '.join(map(str, sorted(C3_TABLE[ws.unit])))} feed C3 map {ws.unit}"
                  if faithful and ws.layer == "C3" else f"Every {ws.input_layer} map feeds it")
        st.caption(f"{source}. Left: its {len(ws.inputs)} kernel(s), one per input map. Right: what they lie on at its "
                   f"most active position (row {ws.row}, col {ws.col}) for {subject}. Hover for the values.")
        columns = min(len(ws.inputs), 8)
        height = 130 + 110 * -(-len(ws.inputs) // columns)
        on = f"{ws.input_layer} map{'s' if len(ws.inputs) > 1 else ''} " + (", ".join(map(str, ws.inputs))
                                                                            if len(ws.inputs) < 8 else
                                                                            f"{ws.inputs[0]}–{ws.inputs[-1]}")
        kernel_col, window_col = st.columns(2)
        kernel_col.plotly_chart(plots.feature_maps(ws.kernels, f"Kernels of {ws.layer} map {ws.unit} on {on}", columns,
                                                   label="kernel", height=height), key="unit_kernels")
        window_col.plotly_chart(plots.feature_maps(ws.windows, f"The windows of {on} at ({ws.row}, {ws.col})",
                                                   columns, label="window", height=height), key="unit_windows")
    else:
        st.caption(f"{ws.layer} unit {ws.unit} is fully connected: one weight per {ws.input_layer} unit "
                   f"({len(ws.inputs)}). Bars: weight × input on {subject}.")
        st.plotly_chart(plots.bars(ws.contributions, f"{ws.layer} unit {ws.unit}: weight × {ws.input_layer} value",
                                   f"{ws.input_layer} unit", "weight × input", height=260), key="unit_terms")
    table = weighted_sum_table(ws, top=None if maps else 8)
    st.dataframe(table, hide_index=True, height=35 * (len(table) + 1) + 3,
                 column_config={"value": st.column_config.NumberColumn(format="%.4f")})
    gap = ws.contributions.sum() + ws.bias - ws.pre_activation
    st.caption(f"The terms add up to the convolution's own output (difference {gap:.1e}, float32 rounding); "
               f"{' then '.join(step for step, _ in ws.after) or 'nothing'} turns it into {ws.value:.4f}, the value the "
               "Feature maps page shows for this unit at this position.")


def looks(ws: U.WeightedSum, field: U.ReceptiveField, image: np.ndarray, unit_map: np.ndarray | None,
          subject: str) -> None:
    """The receptive field on the current image at the unit's most active position, and the unit's map."""
    box = field.visible(ws.row, ws.col)
    side = box[2] - box[0]
    image_col, map_col, _ = st.columns([1, 1, 1])
    image_col.image(boxed(image, box), width=224, caption=f"{subject}: what {ws.layer} unit {ws.unit} sees"
                                                           + (f" at ({ws.row}, {ws.col})" if unit_map is not None else ""))
    if unit_map is not None:
        map_col.plotly_chart(plots.feature_maps(unit_map[None], f"{ws.layer} map {ws.unit} for this image", 1,
                                                height=260), key="unit_map")
    padded = f" ({field.size}x{field.size} with LeNet-5's padding)" if side != field.size else ""
    where = (f"neighbouring units' fields are {field.jump} px apart ({field.positions[0]}x{field.positions[1]} "
             f"positions). The frame marks the field of the most active position, where the unit gives {ws.value:.4f}."
             if field.positions != (1, 1) else f"one position, so the unit sees the whole image; here it gives "
                                                f"{ws.value:.4f}.")
    st.caption(f"Receptive field of {ws.layer}: {side}x{side} input pixels{padded}; {where}")


def top_nine(name: str, layer: str, unit: int) -> float:
    """The nine test digits that excite the unit most, as receptive-field crops; returns the best activation."""
    found = resources.unit_patches(name)
    top = found.patches[layer]
    images, labels, _ = resources.held_out_digits()
    crops = top.crops(images.astype(np.float32) / 255, unit)
    for column, crop, index, value in zip(st.columns(len(crops)), crops, top.images[unit], top.values[unit], strict=True):
        column.image(plots.thumbnail(crop, 96), width=96, caption=f"#{index} ({labels[index]}) · {value:.3f}")
    how = "read from the disk cache" if found.seconds == 0 else f"{found.seconds:.1f} s"
    st.caption(f"The receptive-field crops ({top.field.size}x{top.field.size} px; outside the 28x28 digit: background) "
               f"of the 9 digits of **{found.description}** that excite {layer} unit {unit} most, each at its most active "
               f"position; caption: digit # (label) · activation. Ranked by pre-activation, which breaks the ties of a "
               f"saturated unit. Found once for every unit of {', '.join(found.patches)} over {found.digits:,} digits in "
               f"batched passes ({how}); kept in {found.cache}.")
    return float(top.values[unit, 0])


def visualisation(name: str, version: float, layer: str, unit: int, field: U.ReceptiveField, best: float) -> None:
    """Activation maximisation from seeded noise, with the activation reached beside it."""
    spatial = field.positions != (1, 1)
    objective = st.radio("Excite", list(OBJECTIVES), format_func=OBJECTIVES.get, horizontal=True, key=OBJECTIVE_KEY,
                         help="Centre: one unit, so only its receptive field matters. Whole map: every position at once.") \
        if spatial else "centre"
    vis = resources.unit_visualisation(name, version, layer, unit, objective)
    rows, cols = field.positions
    shown = boxed(vis.image, field.visible(rows // 2, cols // 2)) if spatial and objective == "centre" else \
        plots.thumbnail(vis.image, 224)
    picture_col, numbers_col, curve_col = st.columns([1, 1, 2])
    picture_col.image(shown, width=224, caption=f"made to excite {layer} unit {unit}"
                                                + (" (its field framed)" if spatial and objective == "centre" else ""))
    numbers_col.metric("Activation reached", f"{vis.activation:.3f}", f"{vis.activation - vis.start_activation:+.3f} "
                       "vs the noise", help="The unit's output on the picture (for a map: its centre or its mean).")
    numbers_col.metric("On the starting noise", f"{vis.start_activation:.3f}")
    numbers_col.metric("Best test digit", f"{best:.3f}", help="The top patch's activation (at its most active position).")
    curve_col.plotly_chart(plots.curves([{"name": "input of the activation", "x": np.arange(1, len(vis.curve) + 1),
                                          "y": vis.curve}], "The climb", "step", "activation's input", height=260),
                           key="unit_climb")
    st.caption(f"Regularisation: {vis.note}. The ascent climbs the input of the unit's activation function "
               f"({vis.start_pre_activation:.3f} → {vis.pre_activation:.3f}), which still has a gradient where its ReLU is "
               "off or its squashing function is flat; fixed seed, so the same picture every time.")


st.title("Unit page")
st.caption("One unit of the sidebar's model from every side: the kernels and the weighted sum it computes on the "
           "current image, its receptive field, the nine test digits that excite it most, and a picture made to excite "
           "it. The unit is in the address, so it can be shared.")
name = state.model_name()
model, _ = resources.load_model(name)
version = resources.weights_version(name)
layers = resources.unit_layer_sizes(name)
current = state.current_digit()
image = np.asarray(current["image"], dtype=np.float32)
acts = resources.probe(name, image).activations
follow_address(name, layers)
layer, unit = pick_unit(name, layers, acts)
field = U.receptive_field(model, layer)
subject = current["source"]
ws = resources.unit_weighted_sum(name, image, layer, unit)

st.subheader(f"What {layer} unit {unit} computes on the current image")
computes(ws, model.head == "rbf", subject)
st.subheader("Where it looks")
looks(ws, field, image, acts[layer][unit] if field.positions != (1, 1) else None, subject)
st.subheader("Top-9 patches: the test digits that excite it most")
best = top_nine(name, layer, unit)
st.subheader("Feature visualisation: a picture made to excite it")
visualisation(name, version, layer, unit, field, best)
