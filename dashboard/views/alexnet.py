"""AlexNet: its first-layer colour kernels, a picture through the network, the nearest training images, the counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plots
import resources
import streamlit as st
from PIL import Image, UnidentifiedImageError

import convnets
from convnets.alexnet import first_layer_kernels, picture_to_rgb
from training.images import cifar_source

MAX_UPLOAD_MB = 2
IMAGE_KEY = "alexnet_image"  # {"image": (3, H, W) float in [0, 1], "source": str, "label": str | None}
ss = st.session_state

st.title("AlexNet")
st.caption("Krizhevsky, Sutskever & Hinton (2012): ReLU, LRN, overlapping pooling, dropout, and 96 colour kernels in the "
           "first layer. Upload any picture; the model resizes its shorter side and takes the central square.")

names = resources.image_model_names()
source = cifar_source()
if not names:
    st.info("No AlexNet weights here yet: `convnets/weights/alexnet-cifar.pt` ships with the source tree, and "
            "torchvision's ImageNet weights appear once downloaded (`convnet-lab experiment evaluate alexnet-torchvision "
            "--data imagenette`). The counts below need no weights.", icon=":material/info:")
else:
    name = st.radio("Model", names, format_func=resources.IMAGE_MODEL_LABELS.get, horizontal=True, key="alexnet_model")
    model, card = resources.load_image_model(name)
    size = model.input_shape[-1]
    if name == "alexnet-torchvision":
        st.caption(f"torchvision's IMAGENET1K_V1 weights: top-1 error **{card['test_error']:.2f} %**, top-5 "
                   f"**{card['top5_error']:.2f} %** on {card['test_set']}. Widths: {card['widths']}.")
    else:
        ten = card.get("ten_patch_test_error")
        ten_text = f" ({ten:.2f} % averaging the paper's ten patches)" if ten is not None else ""
        st.caption(f"Test error **{card['test_error']:.2f} %**{ten_text}, measured on {card['test_set']}. "
                   f"Trained on {card['data']['description']}: {card['recipe']['epochs']} epochs, SGD with momentum, "
                   f"augmentation {'on' if card['recipe'].get('augmentation') else 'off'}, dropout "
                   f"{model.options.get('dropout', 0.5)}; `{card.get('command', '')}`.")

    # ------------------------------------------------------------------ the current picture
    upload_col, pick_col = st.columns(2, gap="medium")
    with upload_col:
        upload = st.file_uploader(f"A picture (PNG, JPEG, GIF, WebP; up to {MAX_UPLOAD_MB} MB)",
                                  type=["png", "jpg", "jpeg", "bmp", "gif", "webp"], max_upload_size=MAX_UPLOAD_MB,
                                  key="alexnet_upload")
    cifar = None
    with pick_col:
        if source is not None and size == 32:
            cifar = resources.cifar_images(source)
            index = st.number_input(f"…or a CIFAR-10 test image ({len(cifar['test_y'])} at hand)", min_value=0,
                                    max_value=len(cifar["test_y"]) - 1, step=1, key="alexnet_test_index")
            if st.button("Use this test image", icon=":material/image:"):
                ss[IMAGE_KEY] = {"image": cifar["test_x"][index].astype(np.float32) / 255,
                                 "source": f"CIFAR-10 test image #{index}", "label": cifar["classes"][cifar["test_y"][index]]}
        elif size == 32:
            st.caption("With CIFAR-10 at hand (torchvision's download in the cache folder, or `CONVNET_LAB_CIFAR=PATH` to an "
                       "image folder or .tar.gz) you can also pick test images here and see the nearest training images.")
    if upload is not None and ss.get("alexnet_upload_seen") != upload.file_id:
        try:
            with Image.open(upload) as picture:
                ss[IMAGE_KEY] = {"image": picture_to_rgb(picture).numpy(), "source": f"your upload {upload.name!r}",
                                 "label": None}
            ss["alexnet_upload_seen"] = upload.file_id
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as exc:
            st.warning(f"could not read {upload.name!r} as an image ({type(exc).__name__}); upload a PNG or JPEG",
                       icon=":material/error:")
        except ValueError as exc:
            st.warning(str(exc), icon=":material/error:")

    current = ss.get(IMAGE_KEY)
    if current is None:
        st.info("Upload a picture (or pick a CIFAR-10 test image) to see its classes and feature maps.",
                icon=":material/upload:")
    else:
        result = resources.image_probe(name, current["image"])
        st.subheader(f"Current picture: {current['source']}")
        seen_col, top_col = st.columns([1, 2.5], vertical_alignment="center")
        with seen_col:
            shown = np.round(result.image * 255).astype(np.uint8)
            st.image(Image.fromarray(shown).resize((160, 160), Image.Resampling.NEAREST), width=160,
                     caption=f"what the model sees: {size}x{size}")
            if current.get("label"):
                verdict = "right" if result.top[0][0] == current["label"] else "wrong"
                st.markdown(f"True class: **{current['label']}**; the first guess is **{verdict}**.")
        with top_col:
            st.plotly_chart(plots.top_classes(result.top, f"Five most probable classes for {current['source']}"),
                            key="alexnet_top")
        conv1 = result.activations["conv1"]
        st.plotly_chart(plots.feature_maps(conv1, f"conv1 (after ReLU, LRN and pooling): {conv1.shape[0]} maps of "
                                                  f"{conv1.shape[1]}x{conv1.shape[2]}", 12, height=420),
                        key="alexnet_conv1_maps")

        if cifar is not None and name == "alexnet-cifar":
            vectors, norms = resources.image_bank(name, resources.weights_version(name), source)
            distances, indices = convnets.nearest(result.embedding[None], vectors, k=6, bank_sq_norms=norms)
            st.subheader("Six nearest training images by fc7 distance")
            st.caption(f"Euclidean distance between {vectors.shape[1]}-d fc7 vectors (the paper's "
                       f"Figure 4, right), over {len(vectors):,} training images of {cifar['description']}.")
            for column, distance, index in zip(st.columns(6), distances[0].tolist(), indices[0].tolist(), strict=True):
                picture = Image.fromarray(np.transpose(cifar["train_x"][index], (1, 2, 0))).resize((96, 96),
                                                                                               Image.Resampling.NEAREST)
                column.image(picture, width=96,
                             caption=f"{cifar['classes'][cifar['train_y'][index]]} · distance {distance:.1f}")

    # ------------------------------------------------------------------ first-layer kernels
    kernels, groups = first_layer_kernels(model)
    st.subheader(f"conv1: {len(kernels)} kernels of {kernels.shape[1]}x{kernels.shape[2]}x3, in colour")
    st.caption("Each kernel min-max scaled on its own, as in the paper's Figure 3. The paper's 96 kernels fall into two "
               "groups of 48, one per GPU: the first learned mostly colour-agnostic edges, the second colour blobs. "
               + ("This model has that two-GPU layout." if groups == 2 else
                  f"This model has one column of {len(kernels)} kernels (alexnet-cifar's width 1 is one GPU column "
                  "of the paper)." if name == "alexnet-cifar" else f"torchvision's model has one column of {len(kernels)}."))
    per_group = len(kernels) // groups
    for g, column in enumerate(st.columns(groups)):
        with column:
            title = f"GPU {g + 1}: kernels {g * per_group}–{(g + 1) * per_group - 1}" if groups == 2 else "conv1 kernels"
            st.plotly_chart(plots.colour_kernels(kernels[g * per_group:(g + 1) * per_group], title,
                                                 columns=8 if groups == 2 else 12), key=f"alexnet_kernels_{g}")

# ---------------------------------------------------------------------- counts beside the paper
st.subheader("The paper's network: counts beside the paper")
comparison = convnets.paper_comparison()
st.dataframe(pd.DataFrame([{"quantity": key, "computed here": comparison[key]["computed"], "paper": comparison[key]["paper"],
                            "ratio": round(comparison[key]["ratio"], 3)} for key in ("params", "neurons", "connections")]),
             hide_index=True, column_config={"computed here": st.column_config.NumberColumn(format="localized"),
                                             "paper": st.column_config.NumberColumn(format="localized")})
explanation = comparison["explanation"].replace("*", "\\*")  # '55*55*96' is arithmetic, not markdown emphasis
st.caption(f"Computed by `convnets.layer_table` on `get_model('alexnet')` (two-GPU layout, 224x224x3 input). {explanation}")
