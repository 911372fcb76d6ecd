"""convnets: LeNet-5 and friends, and the probes that read them.

Public API::

    get_model(name, **options) -> nn.Module        # fresh model
    load_pretrained(name) -> (nn.Module, card)      # shipped or downloaded weights, eval mode
    layer_table(model) -> list[LayerRow]            # params, connections per layer
    activations(model, x) -> {layer name: tensor}   # every layer's output
    activations_and_scores(model, x)                # the same and the class scores, one forward pass
    embed(model, x) -> (N, D)                       # last hidden layer, for retrieval
    nearest(query, bank, k) -> (distances, indices) # brute-force Euclidean neighbours
    pca_2d(bank) -> (coords, mean, components)      # 2-D map of embeddings; project() adds more
    paper_comparison() -> dict                      # AlexNet's counts beside the paper's
    kernel_colour(model_or_weights) -> list[dict]   # colour-specificity of conv1's kernels per GPU column
    transform(images, kind, levels) -> images       # shift, rotate, scale, squeeze, stroke, noise (TRANSFORMS)
    sweep(model, image, kind, levels) -> Sweep      # one image at every level, one forward batch
    robustness(model, images, labels, kind) -> acc  # accuracy per level over a test set
"""

from .checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from .invariance import TRANSFORMS, Sweep, robustness, sweep, transform
from .kernels import GREY_CHROMA, kernel_chroma, kernel_colour
from .models import get_model, load_pretrained, model_from_checkpoint, model_names
from .paper import PAPER_ALEXNET
from .paper_counts import paper_comparison
from .pictures import prepare_images
from .probes import LayerRow, activations, activations_and_scores, layer_table, named_layers
from .retrieval import embed, embedding_layer, nearest, pca_2d, project
from .torchvision_alexnet import WeightsError, imagenet_categories, top_classes

__version__ = "0.1.0"

__all__ = [
    "GREY_CHROMA",
    "PAPER_ALEXNET",
    "TRANSFORMS",
    "CheckpointError",
    "LayerRow",
    "Sweep",
    "WeightsError",
    "activations",
    "activations_and_scores",
    "embed",
    "embedding_layer",
    "get_model",
    "imagenet_categories",
    "kernel_chroma",
    "kernel_colour",
    "layer_table",
    "load_pretrained",
    "model_from_checkpoint",
    "model_names",
    "named_layers",
    "nearest",
    "paper_comparison",
    "pca_2d",
    "prepare_images",
    "project",
    "read_checkpoint",
    "robustness",
    "save_checkpoint",
    "sweep",
    "top_classes",
    "transform",
]
