"""AlexNet: the first layer's learned kernels (Figure 3), a picture through the network with its nearest training
images (Figure 4), and the paper's counts. Works offline on the CIFAR-10 sample shipped with convnet-lab."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plots
import resources
import streamlit as st
from PIL import Image, UnidentifiedImageError

import convnets
from convnets.kernels import GREY_CHROMA
from convnets.pictures import picture_to_rgb

MAX_UPLOAD_MB = 2
UPLOAD_SIDE = 256  # an upload is kept as its central square at this size: enough for a 224x224 model
GALLERY = 12  # test images per gallery page
PER_ROW = 6
PICTURE_KEY = "alexnet_picture"  # {"image": (3, H, W) float32 in [0, 1], "source": str, "label": str | None}
SCALINGS = {"each": "each kernel on its own (Figure 3)", "one": "one scale for all kernels"}
EVERY_CLASS = "every class"
ss = st.session_state


def test_picture(pictures: resources.Pictures, index: int) -> dict:
    """Test image ``index`` of the page's CIFAR-10 images as the current picture."""
    return {"image": pictures.test_x[index].astype(np.float32) / 255, "label": pictures.classes[pictures.test_y[index]],
            "source": f"test image #{index} of {pictures.name}"}


st.title("AlexNet")
st.caption("Krizhevsky, Sutskever & Hinton (2012): ReLU, LRN, overlapping pooling, dropout, two GPU columns, and colour "
           "kernels in the first layer. Pick a CIFAR-10 test image or upload any picture.")

runs = resources.finished_runs(images=True)
choices = resources.image_model_choices(runs)
if not choices:
    st.info("No AlexNet weights here yet: `convnets/weights/alexnet-cifar.pt` ships with the source tree, finished "
            "`alexnet-cifar` runs of the Training page appear here, and torchvision's ImageNet weights once downloaded "
            "(`convnet-lab experiment evaluate alexnet-torchvision --data imagenette`). The counts below need no weights.",
            icon=":material/info:")
else:
    if ss.get("alexnet_model") not in choices:  # a run whose checkpoint is gone, or a fresh session
        ss["alexnet_model"] = next(iter(choices))
    name = st.selectbox("Model", list(choices), format_func=choices.get, key="alexnet_model",
                        help="The shipped weights, and every finished run of an image model (alexnet-cifar, cnn4-cifar) "
                             "of the Training page.")
    if runs.skipped:
        st.caption(f"Skipped {len(runs.skipped)} finished image run(s) that cannot be used — "
                   + "; ".join(f"run {k}: {why}" for k, why in list(runs.skipped.items())[:3]))
    if runs.problem:
        st.caption(f"Finished runs not listed: {runs.problem}")
    model, card = resources.load_image_model(name)
    version = resources.weights_version(name)
    size = model.input_shape[-1]
    st.caption(resources.image_card_summary(card))

    # ------------------------------------------------------------------ first-layer kernels (Figure 3)
    groups = resources.kernel_pictures(name, version, False)
    count, k = sum(len(g) for g in groups), groups[0].shape[1]
    st.subheader(f"conv1: {count} learned kernels of {k}x{k}x3"
                 + (f", in {len(groups)} columns (GPUs)" if len(groups) > 1 else ""))
    scaling = st.radio("Kernel scaling", list(SCALINGS), format_func=SCALINGS.get, horizontal=True,
                       key="alexnet_kernel_scaling",
                       help="Each kernel stretched to the full range on its own shows every kernel's pattern, as "
                            "cuda-convnet and the paper's Figure 3 do; one scale for all (zero = mid-grey) shows which "
                            "kernels are strong and which weak.")
    if scaling == "one":
        groups = resources.kernel_pictures(name, version, True)
    colours = resources.kernel_colours(name, version)
    pixel = max(2, round(45 / k))  # nearest-neighbour squares: a 5x5 kernel is 45 px across
    per_row = 8 if len(groups) > 1 else (12 if count <= 48 else 16)
    for g, (column, kernels, colour) in enumerate(zip(st.columns(len(groups), gap="large"), groups, colours, strict=True)):
        with column:
            first = g * len(kernels)
            st.markdown(f"**column {g + 1} (GPU {g + 1})**" if len(groups) > 1 else "**one column**")
            st.image(plots.kernel_mosaic(kernels, per_row, pixel), caption=f"kernels {first}–{first + len(kernels) - 1}")
            chroma_col, grey_col = st.columns(2)
            chroma_col.metric(f"mean chroma, column {g + 1}" if len(groups) > 1 else "mean chroma",
                              f"{colour['mean_chroma']:.2f}",
                              help="Share of a kernel's energy that is colour-opponent (convnets.kernel_colour): 0 for a "
                                   "grey kernel (R = G = B), 1 for pure opponent colour; random kernels give about 0.67.")
            grey = round(colour["grey_fraction"] * colour["kernels"])
            grey_col.metric(f"grey kernels, column {g + 1}" if len(groups) > 1 else "grey kernels",
                            f"{colour['grey_fraction']:.0%}", help=f"{grey} of {colour['kernels']} kernels have a "
                                                                    f"chroma under {GREY_CHROMA}.")
    st.caption(
        ("Each kernel min-max scaled on its own, as in the paper's Figure 3. " if scaling == "each" else
         "One scale for the whole layer: zero weight is mid-grey, the largest weight in the layer full colour. ")
        + "In the paper the two GPUs' 48 kernels each differ: GPU 1's are largely colour-agnostic, GPU 2's largely "
          f"colour-specific. Kernels of random weights measure a mean chroma near 0.67 and almost no grey kernels "
          f"(chroma under {GREY_CHROMA}). "
        + ("Here the numbers under each column measure that." if len(groups) > 1 else
           "This model has one column; pick the shipped *alexnet-cifar, two columns* above to see the paper's two "
           "groups side by side."))

    # ------------------------------------------------------------------ the current picture
    st.subheader("A picture through the network")
    pictures = resources.pictures()
    if pictures.note:
        st.warning(f"Using the CIFAR-10 sample instead: {pictures.note}.", icon=":material/warning:")
    gallery_col, upload_col = st.columns([3, 1], gap="large")
    with gallery_col:
        class_col, page_col, random_col = st.columns([2, 2, 1], vertical_alignment="bottom")
        chosen = class_col.selectbox(f"Test images of {pictures.name}", [EVERY_CLASS, *pictures.classes],
                                     key="alexnet_class", help=pictures.test_description)
        indices = (np.arange(len(pictures.test_y)) if chosen == EVERY_CLASS
                   else np.flatnonzero(pictures.test_y == pictures.classes.index(chosen)))
        pages = max(1, -(-len(indices) // GALLERY))
        if ss.get("alexnet_gallery_page", 1) > pages:  # fewer pages after a class was chosen
            ss["alexnet_gallery_page"] = pages
        page = page_col.number_input(f"Page (of {pages:,})", min_value=1, max_value=pages, step=1,
                                     key="alexnet_gallery_page")
        if random_col.button("Random", icon=":material/casino:", key="alexnet_random"):
            ss[PICTURE_KEY] = test_picture(pictures, int(np.random.default_rng().choice(indices)))
        shown = indices[(page - 1) * GALLERY:page * GALLERY].tolist()
        for row in range(0, len(shown), PER_ROW):
            for column, index in zip(st.columns(PER_ROW), shown[row:row + PER_ROW], strict=False):
                with column:
                    st.image(plots.rgb_picture(pictures.test_x[index], 96), width="stretch",  # column, not caption
                             caption=f"#{index} · {pictures.classes[pictures.test_y[index]]}")
                    if st.button("Use", key=f"alexnet_use_{index}"):
                        ss[PICTURE_KEY] = test_picture(pictures, index)
    with upload_col:
        upload = st.file_uploader(f"…or your own picture (PNG, JPEG, GIF, WebP; up to {MAX_UPLOAD_MB} MB)",
                                  type=["png", "jpg", "jpeg", "bmp", "gif", "webp"], max_upload_size=MAX_UPLOAD_MB,
                                  key="alexnet_upload")
    if upload is not None and ss.get("alexnet_upload_seen") != upload.file_id:
        try:
            with Image.open(upload) as opened:
                x = picture_to_rgb(opened)
            if min(x.shape[1:]) > UPLOAD_SIDE:  # the models take the central square: keep that, at a useful size
                x = convnets.prepare_images(x, UPLOAD_SIDE)[0]
            ss[PICTURE_KEY] = {"image": x.numpy(), "source": f"your upload {upload.name!r}", "label": None}
            ss["alexnet_upload_seen"] = upload.file_id
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as exc:
            st.warning(f"could not read {upload.name!r} as an image ({type(exc).__name__}); upload a PNG or JPEG",
                       icon=":material/error:")
        except ValueError as exc:
            st.warning(str(exc), icon=":material/error:")

    current = ss.get(PICTURE_KEY)
    if current is None:
        current = test_picture(pictures, 0)
        current["source"] += " (the default until you pick or upload one)"
    probe = resources.image_probe(name, current["image"])
    st.subheader(f"Current picture: {current['source']}")
    seen_col, top_col = st.columns([1, 2.5], vertical_alignment="center")
    with seen_col:
        st.image(plots.rgb_picture(probe.image, 192), width=192, caption=f"what the model sees: {size}x{size}")
        if current.get("label") and current["label"] in getattr(model, "classes", []):
            verdict = "right" if probe.top[0][0] == current["label"] else "wrong"
            st.markdown(f"True class: **{current['label']}**; the first guess is **{verdict}**.")
        elif current.get("label"):
            st.markdown(f"True class: **{current['label']}**, not one of this model's classes.")
    with top_col:
        st.plotly_chart(resources.figure("top_classes", probe.top, "Five most probable classes"), key="alexnet_top")

    layer = convnets.embedding_layer(model)
    if size == 32 and list(getattr(model, "classes", [])) == list(pictures.classes):
        distances, nearest, dim = resources.nearest_training_images(name, probe)
        st.markdown(f"**Six nearest training images by {layer} distance**")
        st.caption(f"Euclidean distance between {dim}-d {layer} vectors (the paper's Figure 4, right) over "
                   f"{pictures.bank_description}. Neighbours need not look alike pixel by pixel: the network's "
                   "last hidden layer puts them together.")
        for column, distance, index in zip(st.columns(6), distances, nearest, strict=True):
            column.image(plots.rgb_picture(pictures.train_x[index], 160), width="stretch",  # one size for all six
                         caption=f"{pictures.classes[pictures.train_y[index]]} · distance {distance:.1f}")
    else:
        st.caption(f"Nearest training images: the bank is CIFAR-10 ({pictures.bank_description}), so they are shown "
                   "for models trained on CIFAR-10's 32x32 images only.")

    convs = [key for key in probe.activations if key.startswith("conv")]
    for column, key in zip(st.columns(2, gap="medium"), (convs[0], convs[-1]), strict=True):
        maps = probe.activations[key]
        per_line = 8 if maps.shape[0] <= 64 else 16
        rows, (h, w) = -(-maps.shape[0] // per_line), maps.shape[1:]
        height = int(430 * (rows * (h + 1)) / (per_line * (w + 1))) + 80  # the grid's shape in a half-width column
        with column:
            st.plotly_chart(resources.figure("feature_maps", maps, f"{key}: {maps.shape[0]} maps of {h}x{w}", per_line,
                                               height=min(max(height, 220), 640)), key=f"alexnet_{key}_maps")
    st.caption(f"{convs[0]} and {convs[-1]}, the first and the last convolutional block, for the current picture: "
               "each map after its ReLU, normalisation and pooling; hover for a value.")
    sizes = resources.unit_layer_sizes(name, images=True)  # one channel on the Unit page, on this picture
    layer_col, unit_col, open_col = st.columns([1, 1, 3], vertical_alignment="bottom")
    unit_layer = layer_col.selectbox("Look at one unit of", list(sizes), key="alexnet_unit_layer")
    ss["alexnet_unit"] = min(ss.get("alexnet_unit", 0), sizes[unit_layer] - 1)
    unit = unit_col.number_input(f"unit (0–{sizes[unit_layer] - 1})", 0, sizes[unit_layer] - 1, key="alexnet_unit")
    if open_col.button("Open the unit page", icon=":material/center_focus_strong:", key="alexnet_open_unit",
                       help="Its kernels and weighted sum on the current picture, its receptive field, its top-9 test "
                            "patches and a picture made to excite it."):
        ss[PICTURE_KEY] = current  # the Unit page works on this picture
        st.switch_page("views/unit.py", query_params={"model": name, "layer": unit_layer, "unit": str(unit)})

# ---------------------------------------------------------------------- counts beside the paper
st.subheader("The paper's network: counts beside the paper")
comparison = resources.paper_counts()
st.dataframe(pd.DataFrame([{"quantity": key, "computed here": comparison[key]["computed"], "paper": comparison[key]["paper"],
                            "ratio": round(comparison[key]["ratio"], 3)} for key in ("params", "neurons", "connections")]),
             hide_index=True, column_config={"computed here": st.column_config.NumberColumn(format="localized"),
                                             "paper": st.column_config.NumberColumn(format="localized")})
explanation = comparison["explanation"].replace("*", "\\*")  # '55*55*96' is arithmetic, not markdown emphasis
st.caption(f"Computed by `convnets.layer_table` on `get_model('alexnet')` (two-GPU layout, 224x224x3 input). {explanation}")
