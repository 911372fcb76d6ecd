"""convnets: LeNet-5 and friends, and the probes that read them.

Public API::

    get_model(name, **options) -> nn.Module        # fresh model
    load_pretrained(name) -> (nn.Module, card)      # shipped or downloaded weights, eval mode
    layer_table(model) -> list[LayerRow]            # params, connections per layer
    activations(model, x) -> {layer name: tensor}   # every layer's output
    embed(model, x) -> (N, D)                       # last hidden layer, for retrieval
    nearest(query, bank, k) -> (distances, indices) # brute-force Euclidean neighbours
    paper_comparison() -> dict                      # AlexNet's counts beside the paper's
"""

from .alexnet import PAPER_ALEXNET, WeightsError, imagenet_categories, paper_comparison, prepare_images, top_classes
from .checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from .models import get_model, load_pretrained, model_from_checkpoint, model_names
from .probes import LayerRow, activations, layer_table, named_layers
from .retrieval import embed, embedding_layer, nearest

__version__ = "0.1.0"

__all__ = [
    "PAPER_ALEXNET",
    "CheckpointError",
    "LayerRow",
    "WeightsError",
    "activations",
    "embed",
    "embedding_layer",
    "get_model",
    "imagenet_categories",
    "layer_table",
    "load_pretrained",
    "model_from_checkpoint",
    "model_names",
    "named_layers",
    "nearest",
    "paper_comparison",
    "prepare_images",
    "read_checkpoint",
    "save_checkpoint",
    "top_classes",
]
