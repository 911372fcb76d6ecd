"""AlexNet's counts -- parameters, neurons, connections -- measured on a model and set beside the paper's
(:data:`convnets.paper.PAPER_ALEXNET`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .alexnet import AlexNet
from .inference import capture, inference
from .paper import PAPER_ALEXNET
from .probes import layer_table


def _op_neurons(model: nn.Module) -> dict[str, int]:
    """Per layer: outputs of its convolution or linear map (the paper's neurons: before pooling)."""
    ops = [(name, op) for name, layer in [*model.features.named_children(), *model.classifier.named_children()]
           if (op := next((m for m in layer.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)) is not None]
    with capture(ops) as outputs:
        _probe_forward(model)
    return {name: out[0].numel() for name, out in outputs.items()}


def _unpadded_connections(model: nn.Module) -> int:
    """Connections when taps that fall on zero padding are not counted (real input -> neuron links, plus biases)."""
    total = 0
    handles = []

    def count(module: nn.Module, inputs: tuple[torch.Tensor], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += module.out_features * (module.in_features + 1)
            return
        ones = torch.ones(1, 1, *inputs[0].shape[-2:])
        taps = F.conv2d(ones, torch.ones(1, 1, *module.kernel_size), stride=module.stride, padding=module.padding)
        per_map = int(taps.sum()) * (module.in_channels // module.groups) + out[0, 0].numel()
        total += per_map * module.out_channels

    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_hook(count))
    try:
        _probe_forward(model)
    finally:
        for handle in handles:
            handle.remove()
    return total


def _probe_forward(model: nn.Module) -> None:
    with inference(model):
        model(torch.zeros(1, *model.input_shape))


def paper_comparison(model: nn.Module | None = None) -> dict:
    """Params, neurons and connections of ``model`` (default: the two-GPU ``alexnet``) beside the paper's.

    Computed with :func:`convnets.layer_table` (params; connections = multiply-adds + bias terms
    per image) and, for neurons, the outputs of every convolution and linear map before pooling,
    which is how the paper lists them. Returns ``{"params": {"computed", "paper", "ratio"}, ...,
    "neurons_per_layer": {layer: (computed, paper)}, "connections_without_padding": int,
    "explanation": str}``.
    """
    model = model if model is not None else AlexNet()
    rows = layer_table(model)
    neurons = _op_neurons(model)
    computed = {"params": sum(r.params for r in rows), "neurons": sum(neurons.values()),
                "connections": sum(r.connections for r in rows)}
    result: dict = {key: {"computed": value, "paper": PAPER_ALEXNET[key], "ratio": value / PAPER_ALEXNET[key]}
                    for key, value in computed.items()}
    result["neurons_per_layer"] = {name: (neurons.get(name), PAPER_ALEXNET["neurons_per_layer"][name])
                                   for name in PAPER_ALEXNET["neurons_per_layer"]}
    result["connections_without_padding"] = _unpadded_connections(model)
    conv_share = sum(r.connections for r in rows if r.kind == "Conv2d") / computed["connections"]
    result["explanation"] = _explain(result, conv_share)
    return result


def _explain(c: dict, conv_share: float) -> str:
    """Why the computed counts differ from the paper's, with the computed numbers filled in."""
    def pct(value: float) -> str:
        return f"{100 * (value - 1):+.1f} %"

    unpadded = c["connections_without_padding"]
    return (
        f"Parameters (weights + biases of conv1-conv5 and fc6-fc8) come to {c['params']['computed']:,} against the "
        f"paper's rounded '60 million' ({pct(c['params']['ratio'])}); the two-GPU layout has 60,965,224, the one-column "
        f"network 62,378,344. Neurons are the outputs of each convolution before pooling plus the fully connected layers, "
        f"as the paper lists them: {c['neurons']['computed']:,} against '650,000' ({pct(c['neurons']['ratio'])}); the one "
        f"layer that differs is conv1, printed as 253,440 although 55*55*96 = 290,400 (a known typo). Connections are "
        f"multiply-adds plus bias terms per image (the rule that reproduces LeNet-5's counts exactly): "
        f"{c['connections']['computed']:,} against '630 million' ({pct(c['connections']['ratio'])}). The paper does not "
        f"say how it counted; convolutions are {100 * conv_share:.0f} % of the total, and leaving out the taps that fall "
        f"on zero padding gives {unpadded:,} ({pct(unpadded / PAPER_ALEXNET['connections'])}). No simple rule we tried "
        f"gives 630 million exactly; the one-column network (no groups) needs 1,135,915,368."
    )
