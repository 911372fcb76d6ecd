"""convnets: LeNet-5 and friends, and the probes that read them.

Public API::

    get_model(name, **options) -> nn.Module        # fresh model
    load_pretrained(name) -> (nn.Module, card)      # shipped weights, eval mode
    layer_table(model) -> list[LayerRow]            # params, connections per layer
    activations(model, x) -> {layer name: tensor}   # every layer's output
"""

from .checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from .models import get_model, load_pretrained, model_from_checkpoint, model_names
from .probes import LayerRow, activations, layer_table, named_layers

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "LayerRow",
    "activations",
    "get_model",
    "layer_table",
    "load_pretrained",
    "model_from_checkpoint",
    "model_names",
    "named_layers",
    "read_checkpoint",
    "save_checkpoint",
]
