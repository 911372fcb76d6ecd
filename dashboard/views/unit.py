"""Unit page: one unit of a digit model (the sidebar's) or a colour model (AlexNet's) from every side -- its kernels
and the weighted sum it computes on the current image, its receptive field, the nine test images that excite it most,
and an input made to excite it. The unit is in the address (``?model=lenet5&layer=C3&unit=5``,
``?model=alexnet-cifar&layer=conv3&unit=17``), so a unit can be shared. The computation is convnets.units; this page
lays it out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plots
import resources
import state
import streamlit as st
from torch import nn

from convnets import units as U
from convnets.lenet import C3_TABLE
from convnets.probes import named_layers

ss = st.session_state
LAYER_KEY, UNIT_KEY, OBJECTIVE_KEY = "unit_layer", "unit_index", "unit_objective"
FAMILY_KEY, IMAGE_MODEL_KEY = "unit_family", "unit_image_model"
ADDRESS_KEY = "unit_address"  # the (model, layer, unit) this page last wrote into the URL
PICTURE_KEY, ALEXNET_MODEL_KEY = "alexnet_picture", "alexnet_model"  # the AlexNet page's current picture and model
FAMILIES = {"digits": "a digit model (the sidebar's)", "colour": "a colour model (the AlexNet page's)"}
OBJECTIVES = {"centre": "the unit at the centre of its map", "map": "the whole map (its mean)"}
FRAME = (230, 40, 40)
TOP_INPUTS = 8  # input maps shown (kernels, windows, table rows) when a unit has more


def own_address() -> bool:
    """Whether the URL's unit is the one this page wrote (not a shared address or another page's button)."""
    return tuple(st.query_params.get(key) for key in ("model", "layer", "unit")) == ss.get(ADDRESS_KEY)


def choose_model(digit_name: str, image_choices: dict[str, str]) -> tuple[str, bool]:
    """(model name, whether it is a colour model): the address's model when this page did not write it, else the
    family switch -- the sidebar's digit model, or a colour model (the AlexNet page's by default)."""
    asked = st.query_params.get("model")
    if asked and not own_address():
        if asked in image_choices:
            ss[FAMILY_KEY], ss[IMAGE_MODEL_KEY] = "colour", asked
        else:
            ss[FAMILY_KEY] = "digits"
            if asked != digit_name:
                where = ("pick it in the sidebar to see this unit there" if asked in resources.model_choices() else
                         "it is not here (shipped: lenet5, lenet5-modern, alexnet-cifar, alexnet-cifar-columns, or a "
                         "finished run of the Training page)")
                st.warning(f"The address names the model '{asked}', but this page shows the sidebar's '{digit_name}': "
                           f"{where}.", icon=":material/warning:")
    if not image_choices:
        ss[FAMILY_KEY] = "digits"
    family_col, model_col = st.columns([2, 3], vertical_alignment="bottom")
    family = family_col.radio("Look at a unit of", list(FAMILIES), format_func=FAMILIES.get, horizontal=True,
                              key=FAMILY_KEY, disabled=not image_choices,
                              help="Colour models: the shipped alexnet-cifar (one column and two), finished image runs, "
                                   "torchvision's AlexNet when its weights are on disk.")
    if family == "digits":
        model_col.markdown(f"Digit model **{digit_name}** — change it in the sidebar.")
        return digit_name, False
    if ss.get(IMAGE_MODEL_KEY) not in image_choices:
        ss[IMAGE_MODEL_KEY] = ss.get(ALEXNET_MODEL_KEY) if ss.get(ALEXNET_MODEL_KEY) in image_choices \
            else next(iter(image_choices))
    return model_col.selectbox("Colour model", list(image_choices), format_func=image_choices.get,
                               key=IMAGE_MODEL_KEY), True


def colour_picture(name: str) -> tuple[np.ndarray, str, dict[str, np.ndarray]]:
    """The AlexNet page's current picture as the model sees it (3, S, S), where it came from, and its activations."""
    current = ss.get(PICTURE_KEY)
    if current is None:
        pictures = resources.pictures()
        current = {"image": pictures.test_x[0].astype(np.float32) / 255,
                   "source": f"test image #0 of {pictures.name} (the AlexNet page's default picture)"}
    probe = resources.image_probe(name, current["image"])
    return np.ascontiguousarray(probe.image.transpose(2, 0, 1)), current["source"], probe.activations


def follow_address(name: str, layers: dict[str, int]) -> None:
    """Show the unit the URL names when this page did not write it (a shared address, the Feature maps or AlexNet
    button); a unit that does not exist gets one message and the pickers keep a unit that does."""
    layer, unit = st.query_params.get("layer"), st.query_params.get("unit")
    if (layer is None and unit is None) or own_address():
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
    ss[ADDRESS_KEY] = (name, layer, str(unit))
    address_col.markdown(f"Address of this unit: `unit?model={name}&layer={layer}&unit={unit}` — open it in another tab "
                         "or share it.")
    return layer, unit


def boxed(image: np.ndarray, box: tuple[int, int, int, int], scale: int = 8) -> np.ndarray:
    """The image ((H, W) grey, (3, H, W) or (H, W, 3) colour, in [0, 1]) scaled up as RGB with a red frame around
    ``box`` (top, left, bottom, right), bottom/right exclusive."""
    pixels = np.clip(np.asarray(image, dtype=np.float32), 0, 1)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    elif pixels.shape[0] == 3 and pixels.shape[-1] != 3:
        pixels = pixels.transpose(1, 2, 0)
    rgb = (pixels.repeat(scale, axis=0).repeat(scale, axis=1) * 255).round().astype(np.uint8)
    top, left, bottom, right = (v * scale for v in box)
    width = max(2, scale // 3)
    rgb[top:top + width, left:right] = rgb[bottom - width:bottom, left:right] = FRAME
    rgb[top:bottom, left:left + width] = rgb[top:bottom, right - width:right] = FRAME
    return rgb


def scale_for(image: np.ndarray) -> int:
    """Pixels per image pixel for a picture about 256 px across (8 for 28x28 and 32x32, 1 for 224x224)."""
    side = image.shape[0] if image.ndim == 2 or image.shape[-1] == 3 else image.shape[1]
    return max(1, 256 // side)


def input_name(ws: U.WeightedSum, i: int) -> str:
    """What the i-th input of the sum is: 'S2 map 3', 'F6 unit 7', 'input channel G'."""
    if ws.input_layer == "input" and len(ws.inputs) == 3:
        return f"input channel {'RGB'[ws.inputs[i]]}"
    return f"{ws.input_layer} {'map' if ws.windows.shape[-1] > 1 else 'unit'} {ws.inputs[i]}"


def weighted_sum_table(ws: U.WeightedSum, top: int | None = None, value_note: str = "what Feature maps shows"
                       ) -> pd.DataFrame:
    """The sum term by term: each input map's kernel x window (the ``top`` largest by size, then the rest as one
    row), the bias, the pre-activation, then the rest of the layer."""
    order = np.argsort(-np.abs(ws.contributions))[:top] if top else range(len(ws.inputs))
    what = "Σ kernel × window" if ws.windows.shape[-1] > 1 else "weight × input"
    rows = [(input_name(ws, i), what, float(ws.contributions[i])) for i in order]
    if top and top < len(ws.inputs):
        rest = float(ws.contributions.sum() - ws.contributions[list(order)].sum())
        rows.append((f"the other {len(ws.inputs) - top} inputs", what, rest))
    activation = ws.after and ws.after[0][0] in ("Squash", "ReLU", "Tanh")  # else batch norm comes first
    rows += [("bias", "", ws.bias), ("pre-activation" if activation else "weighted sum", "sum of the above",
                                     ws.pre_activation)]
    rows += [(step, {"Squash": "1.7159 tanh(2a/3) of the pre-activation"}.get(step, "applied to the row above"), value)
             for step, value in ws.after]
    rows.append(("value", value_note, ws.value))
    return pd.DataFrame(rows, columns=["term", "how", "value"])


def source_line(ws: U.WeightedSum, faithful: bool, layers: dict[str, int]) -> str:
    """Which input maps feed the unit: Table I for C3, its column for a grouped convolution, else all of them."""
    if faithful and ws.layer == "C3":
        return f"Table I: S2 maps {', '.join(map(str, sorted(C3_TABLE[ws.unit])))} feed C3 map {ws.unit}"
    if ws.input_layer == "input" and len(ws.inputs) == 3:
        return "The three colour channels of the input (after the model subtracts its mean colour) feed it"
    if len(ws.inputs) < layers.get(ws.input_layer, len(ws.inputs)):
        return (f"A grouped convolution (the paper's two GPU columns): {ws.layer} unit {ws.unit} sees {ws.input_layer} "
                f"maps {ws.inputs[0]}–{ws.inputs[-1]} only, {len(ws.inputs)} of {layers[ws.input_layer]}")
    return f"Every {ws.input_layer} map feeds it"


def computes(ws: U.WeightedSum, faithful: bool, subject: str, layers: dict[str, int], value_note: str) -> None:
    """The unit's kernels and the weighted sum they make on the current image (the strongest inputs of many)."""
    maps = ws.windows.shape[-1] > 1
    if maps:
        shown = np.argsort(-np.abs(ws.contributions))[:TOP_INPUTS] if len(ws.inputs) > TOP_INPUTS else \
            np.arange(len(ws.inputs))
        strongest = (f" Shown: the {len(shown)} of {len(ws.inputs)} whose kernel × window adds most (by size), "
                     "strongest first." if len(shown) < len(ws.inputs) else "")
        st.caption(f"{source_line(ws, faithful, layers)}. Left: its kernel(s), one per input map. Right: what they lie "
                   f"on at its most active position (row {ws.row}, col {ws.col}) for {subject}.{strongest} Hover for "
                   "the values.")
        if ws.input_layer == "input" and len(ws.inputs) == 3:
            colour = 0.5 + ws.kernels / (2 * max(float(np.abs(ws.kernels).max()), 1e-12))
            st.image(plots.kernel_mosaic(colour.transpose(1, 2, 0)[None], 1, pixel=max(4, 96 // ws.kernels.shape[-1])),
                     width=120, caption="the kernel in colour (zero weight = mid-grey; its largest weight at the ends)")
        columns = min(len(shown), 8)
        height = 130 + 110 * -(-len(shown) // columns)
        names = [input_name(ws, i).rsplit(" ", 1)[-1] for i in shown]
        on = f"{ws.input_layer} map{'s' if len(shown) > 1 else ''} {', '.join(names)}"
        kernel_col, window_col = st.columns(2)
        kernel_col.plotly_chart(resources.figure("feature_maps", ws.kernels[shown], f"Kernels of {ws.layer} map {ws.unit} on {on}",
                                                   columns, label="kernel", height=height), key="unit_kernels")
        window_col.plotly_chart(resources.figure("feature_maps", ws.windows[shown], f"The windows of {on} at ({ws.row}, {ws.col})",
                                                   columns, label="window", height=height), key="unit_windows")
    else:
        st.caption(f"{ws.layer} unit {ws.unit} is fully connected: one weight per {ws.input_layer} unit "
                   f"({len(ws.inputs)}). Bars: weight × input on {subject}.")
        st.plotly_chart(resources.figure("bars", ws.contributions, f"{ws.layer} unit {ws.unit}: weight × {ws.input_layer} value",
                                   f"{ws.input_layer} unit", "weight × input", height=260), key="unit_terms")
    table = weighted_sum_table(ws, top=TOP_INPUTS if len(ws.inputs) > TOP_INPUTS else None, value_note=value_note)
    st.dataframe(table, hide_index=True, height=35 * (len(table) + 1) + 3,
                 column_config={"value": st.column_config.NumberColumn(format="%.4f")})
    gap = ws.contributions.sum() + ws.bias - ws.pre_activation
    st.caption(f"The terms add up to the {'convolution' if maps else 'linear map'}'s own output (difference "
               f"{gap:.1e}, float32 rounding); {' then '.join(step for step, _ in ws.after) or 'nothing'} turns it into "
               f"{ws.value:.4f}: {value_note}.")


def looks(ws: U.WeightedSum, field: U.ReceptiveField, image: np.ndarray, subject: str, padding: str) -> None:
    """The receptive field on the current image at the unit's most active position, and the unit's map."""
    box = field.visible(ws.row, ws.col)
    side = box[2] - box[0]
    image_col, map_col, _ = st.columns([1, 1, 1])
    image_col.image(boxed(image, box, scale_for(image)), width=224,
                    caption=f"{subject}: what {ws.layer} unit {ws.unit} sees"
                            + (f" at ({ws.row}, {ws.col})" if ws.output_map is not None else ""))
    if ws.output_map is not None:
        map_col.plotly_chart(resources.figure("feature_maps", ws.output_map[None], f"{ws.layer} map {ws.unit} for this image", 1,
                                                height=260), key="unit_map")
    padded = f" ({field.size}x{field.size} with {padding})" if side != field.size else ""
    where = (f"neighbouring units' fields are {field.jump} px apart ({field.positions[0]}x{field.positions[1]} "
             f"positions). The frame marks the field of the most active position, where the unit gives {ws.value:.4f}."
             if field.positions != (1, 1) else f"one position, so the unit sees the whole image; here it gives "
                                                f"{ws.value:.4f}.")
    st.caption(f"Receptive field of {ws.layer}: {side}x{side} input pixels{padded}; {where}")


def top_nine(name: str, layer: str, unit: int, images: bool, input_side: int) -> float | None:
    """The nine test images that excite the unit most, as receptive-field crops; returns the best activation."""
    if images:
        pictures = resources.pictures()
        data, labels, kind = pictures.test_x, [pictures.classes[i] for i in pictures.test_y], "pictures"
        if data.shape[-1] != input_side:
            st.info(f"Top-9 patches are found over {pictures.test_description}, 32x32; {name} takes {input_side}x"
                    f"{input_side} pictures, so they are not shown for it.", icon=":material/info:")
            return None
    else:
        data, labels, _ = resources.held_out_digits()
        kind = "digits"
    found = resources.unit_patches(name, images)
    top = found.patches[layer]
    crops = top.crops(data, unit).astype(np.float32) / 255
    for column, crop, index, value in zip(st.columns(len(crops)), crops, top.images[unit], top.values[unit], strict=True):
        column.image(plots.rgb_picture(crop, 96) if images else plots.thumbnail(crop, 96), width=96,
                     caption=f"#{index} ({labels[index]}) · {value:.3f}")
    how = "read from the disk cache" if found.seconds == 0 else f"{found.seconds:.1f} s"
    side = data.shape[-1]
    st.caption(f"The receptive-field crops ({top.field.size}x{top.field.size} px; outside the {side}x{side} image: "
               f"black) of the 9 {kind} of **{found.description}** that excite {layer} unit {unit} most, each at its most "
               f"active position; caption: {kind[:-1]} # ({'class' if images else 'label'}) · activation. Ranked by the "
               f"activation's input, which breaks the ties of a saturated unit. Found once for every unit of "
               f"{', '.join(found.patches)} over {found.count:,} {kind} in batched passes ({how}); kept in {found.cache}.")
    return float(top.values[unit, 0])


def visualisation(name: str, version: float, layer: str, unit: int, field: U.ReceptiveField, best: float | None,
                  images: bool) -> None:
    """Activation maximisation from seeded noise, with the activation reached beside it."""
    spatial = field.positions != (1, 1)
    objective = st.radio("Excite", list(OBJECTIVES), format_func=OBJECTIVES.get, horizontal=True, key=OBJECTIVE_KEY,
                         help="Centre: one unit, so only its receptive field matters. Whole map: every position at once.") \
        if spatial else "centre"
    vis = resources.unit_visualisation(name, version, layer, unit, objective, images)
    rows, cols = field.positions
    framed = spatial and objective == "centre"
    shown = boxed(vis.image, field.visible(rows // 2, cols // 2), scale_for(vis.image)) if framed else \
        (plots.rgb_picture(vis.image, 224) if images else plots.thumbnail(vis.image, 224))
    picture_col, numbers_col, curve_col = st.columns([1, 1, 2])
    picture_col.image(shown, width=224, caption=f"made to excite {layer} unit {unit}" + (" (its field framed)" if framed
                                                                                           else ""))
    numbers_col.metric("Activation reached", f"{vis.activation:.3f}", f"{vis.activation - vis.start_activation:+.3f} "
                       "vs the noise", help="The unit's output on the picture (for a map: its centre or its mean).")
    numbers_col.metric("On the starting noise", f"{vis.start_activation:.3f}")
    if best is not None:
        numbers_col.metric(f"Best test {'picture' if images else 'digit'}", f"{best:.3f}",
                           help="The top patch's activation (at its most active position).")
    curve_col.plotly_chart(resources.figure("curves", [{"name": "input of the activation", "x": np.arange(1, len(vis.curve) + 1),
                                          "y": vis.curve}], "The climb", "step", "activation's input", height=260),
                           key="unit_climb")
    st.caption(f"Regularisation: {vis.note}{' (each colour channel blurred on its own)' if images else ''}. The ascent "
               f"climbs the input of the unit's activation function ({vis.start_pre_activation:.3f} → "
               f"{vis.pre_activation:.3f}), which still has a gradient where its ReLU is off or its squashing function "
               "is flat; fixed seed, so the same picture every time.")


def pooling_note(model: nn.Module, layer: str, field: U.ReceptiveField) -> str:
    """'before its 3x3 max-pooling (stride 2)' when the layer pools after its ReLU (AlexNet), else ''."""
    pool = next((m for m in dict(named_layers(model))[layer].modules() if isinstance(m, nn.MaxPool2d)), None)
    if pool is None:
        return ""
    return (f"before the layer's {pool.kernel_size}x{pool.kernel_size} max-pooling (stride {pool.stride}), at a "
            f"position of its {field.positions[0]}x{field.positions[1]} map; the AlexNet page shows the pooled maps")


st.title("Unit page")
st.caption("One unit of a digit or a colour model from every side: the kernels and the weighted sum it computes on "
           "the current image, its receptive field, the nine test images that excite it most, and a picture made to "
           "excite it. The unit is in the address, so it can be shared.")
name, images = choose_model(state.model_name(), resources.image_model_choices())
if images:
    model, _ = resources.load_image_model(name)
    image, subject, acts = colour_picture(name)
else:
    model, _ = resources.load_model(name)
    current = state.current_digit()
    image, subject = np.asarray(current["image"], dtype=np.float32), current["source"]
    acts = resources.probe(name, image).activations
version = resources.weights_version(name)
layers = resources.unit_layer_sizes(name, images)
follow_address(name, layers)
layer, unit = pick_unit(name, layers, acts)
field = U.receptive_field(model, layer)
ws = resources.unit_weighted_sum(name, image, layer, unit, images)
at = U.receptive_field(model, layer, pooled=False)

st.subheader(f"What {layer} unit {unit} computes on the current image")
pooling = pooling_note(model, layer, at)
computes(ws, getattr(model, "head", None) == "rbf", subject, layers,
         f"the unit after its ReLU, {pooling}" if pooling else "the unit's output, as the AlexNet page's layers hold it"
         if images else "what Feature maps shows for this unit at this position")
st.subheader("Where it looks")
looks(ws, at, image, subject, "the model's zero padding" if images else "LeNet-5's padding")
st.subheader(f"Top-9 patches: the test {'pictures' if images else 'digits'} that excite it most")
best = top_nine(name, layer, unit, images, model.input_shape[-1] if images else 28)
st.subheader("Feature visualisation: a picture made to excite it")
visualisation(name, version, layer, unit, field, best, images)
