"""Probes that read a model: its layer table and every layer's activations.

A *layer* is a child of ``model.features`` or ``model.classifier`` (the
torchvision convention); its name is the child's name (``C1``, ``S2``, ...).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .inference import capture, inference
from .lenet import EuclideanRBF, SparseConv2d, Squash, Subsampling


def named_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's layers in network order: children of ``features`` then ``classifier``."""
    layers: list[tuple[str, nn.Module]] = []
    for part in ("features", "classifier"):
        block = getattr(model, part, None)
        if block is None:
            raise TypeError(f"{type(model).__name__} has no '{part}' block; probes read models from convnets.get_model")
        layers.extend(block.named_children())
    return layers


def activations(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every layer's output for the batch ``x``, keyed by layer name, in network order."""
    return activations_and_scores(model, x)[0]


def activations_and_scores(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """:func:`activations` and the model's own output (its class scores) from one forward pass, in eval mode."""
    with inference(model), capture(named_layers(model)) as outputs:
        scores = model(x)
    return outputs, scores


@dataclass(frozen=True)
class LayerRow:
    """One row of :func:`layer_table`."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    neurons: int
    params: int
    connections: int

    def as_dict(self) -> dict:
        return asdict(self)


def _connections(module: nn.Module, out: torch.Tensor) -> int:
    """Multiply-adds plus bias terms of one leaf module for one sample (the paper's 'connections')."""
    per_sample = out[0]
    if isinstance(module, nn.Conv2d):
        fan_in = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        return per_sample.numel() * (fan_in + (module.bias is not None))
    if isinstance(module, SparseConv2d):
        positions = per_sample.shape[-2] * per_sample.shape[-1]
        return int((module.fan_in_per_output() + 1).sum()) * positions
    if isinstance(module, Subsampling):
        return per_sample.numel() * (module.fan_in + 1)
    if isinstance(module, nn.Linear):
        return module.out_features * (module.in_features + (module.bias is not None))
    if isinstance(module, EuclideanRBF):
        return module.centres.numel()
    return 0


def layer_table(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> list[LayerRow]:
    """One row per layer: name, kind, output shape, neurons, trainable params, connections.

    Connections follow the paper: multiply-adds plus bias terms, per input
    sample. ``input_shape`` (without batch) defaults to ``model.input_shape``.
    """
    shape = input_shape or getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError("pass input_shape, e.g. (1, 28, 28); this model does not declare one")
    layers = named_layers(model)
    leaves = [(f"{name}/{i}", name, leaf) for name, layer in layers
              for i, leaf in enumerate(layer.modules()) if next(leaf.children(), None) is None]
    with inference(model), capture(layers) as layer_outputs, capture((key, leaf) for key, _, leaf in leaves) as leaf_outputs:
        model(torch.zeros(1, *shape, device=next(model.parameters()).device))
    leaf_connections = {name: 0 for name, _ in layers}
    for key, name, leaf in leaves:
        if key in leaf_outputs:
            leaf_connections[name] += _connections(leaf, leaf_outputs[key])
    rows = []
    for name, layer in layers:
        out = layer_outputs[name]
        main = next((m for m in layer.modules() if next(m.children(), None) is None and _is_op(m)), layer)
        rows.append(LayerRow(
            name=name,
            kind=type(main).__name__,
            output_shape=tuple(out.shape[1:]),
            neurons=out[0].numel(),
            params=sum(p.numel() for p in layer.parameters() if p.requires_grad),
            connections=leaf_connections[name],
        ))
    return rows


def _is_op(module: nn.Module) -> bool:
    """True for the module that names a layer's kind (not its activation, norm or reshaping)."""
    return not isinstance(module, (nn.Flatten, nn.ReLU, nn.Tanh, Squash, nn.Dropout, nn.BatchNorm1d, nn.BatchNorm2d))
