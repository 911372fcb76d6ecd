"""AlexNet as in Krizhevsky, Sutskever & Hinton (2012), torchvision's pretrained AlexNet, and CIFAR-sized kin.

Every model here takes RGB tensors (N, 3, S, S) with values in [0, 1] and
normalises them itself in its first layer, ``input``; a wrong channel count or
size is refused there with a ValueError that names the fix (:func:`prepare_images`).
Like LeNet-5, each child of ``features`` / ``classifier`` is one layer of the
paper: ``conv1`` .. ``conv5``, ``fc6``, ``fc7``, ``fc8``, each a block of
conv/linear + ReLU (+ LRN) (+ max-pool) (+ dropout).

The 224/227 puzzle: the paper says 224x224x3, but (224 - 11) / 4 + 1 is not an
integer; 55x55 needs 227. Here conv1 has ``padding=2`` on the 224x224 input, as
in torchvision: its 55 windows per axis start at -2, 2, ..., 214 and so cover
2 zero columns, the 224 pixels and 1 zero column -- exactly an effective 227x227
input (the 228th, padded column is never reached).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .checkpoint import CheckpointError
from .digits import _pil_to_array, _to_unit
from .probes import layer_table

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# Section 2 and 3 of the paper (the counts are stated in the abstract and Section 3.5 / Figure 2).
PAPER_ALEXNET = {
    "params": 60_000_000,
    "neurons": 650_000,
    "connections": 630_000_000,
    # "The network's input is 150,528-dimensional, and the number of neurons in the network's remaining layers is
    # given by 253,440-186,624-64,896-64,896-43,264-4096-4096-1000." (253,440 is generally read as a typo for
    # 55*55*96 = 290,400; 186,624 = 27*27*256 is conv2 before pooling.)
    "neurons_per_layer": {"conv1": 253_440, "conv2": 186_624, "conv3": 64_896, "conv4": 64_896, "conv5": 43_264,
                          "fc6": 4096, "fc7": 4096, "fc8": 1000},
    "ilsvrc2010_test": {"top1_error": 37.5, "top5_error": 17.0},
    "ilsvrc2012_val_one_cnn": {"top1_error": 40.7, "top5_error": 18.2},
}

TORCHVISION_WEIGHTS_FILE = "alexnet-owt-7be5be79.pth"


class WeightsError(CheckpointError):
    """Pretrained weights that cannot be found, fetched or used; the message names the ways to fix it."""


# --------------------------------------------------------------------------- input


def check_images(x: torch.Tensor, size: int) -> None:
    """Raise a ValueError naming the fix unless ``x`` is a float batch (N, 3, size, size)."""
    fix = f"convnets.alexnet.prepare_images(x, {size}) converts greyscale/RGBA to RGB and resizes"
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        hint = "; add the batch dimension with x.unsqueeze(0)" if isinstance(x, torch.Tensor) and x.dim() == 3 else ""
        raise ValueError(f"expected RGB images of shape (N, 3, {size}, {size}) with values in [0, 1], got {shape}{hint}")
    if not x.is_floating_point():
        raise ValueError(f"expected float images in [0, 1], got dtype {x.dtype}; convert uint8 with x.float() / 255")
    channels = x.shape[1]
    if channels != 3:
        kind = {1: "greyscale", 2: "greyscale + alpha", 4: "RGBA"}.get(channels, f"{channels}-channel")
        raise ValueError(f"expected RGB images (N, 3, {size}, {size}), got {kind} images of shape {tuple(x.shape)}; {fix}")
    if x.shape[2:] != (size, size):
        raise ValueError(f"expected RGB images of size {size}x{size}, got {x.shape[2]}x{x.shape[3]}; {fix}")


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] with C = 1, 2, 3 or 4 -> RGB: grey is repeated, alpha composited onto white."""
    channels = x.shape[1]
    if channels in (2, 4):
        colour, alpha = x[:, :-1], x[:, -1:]
        x = colour * alpha + (1 - alpha)
        channels -= 1
    if channels == 1:
        return x.expand(-1, 3, -1, -1).contiguous()
    if channels == 3:
        return x
    raise ValueError(f"cannot turn {x.shape[1]}-channel images into RGB; expected 1 (grey), 2, 3 (RGB) or 4 (RGBA) channels")


def fit_size(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the shorter side is ``size`` (bilinear, antialiased), then take the central size x size crop."""
    height, width = x.shape[-2:]
    if (height, width) != (size, size):
        scale = size / min(height, width)
        new = (max(size, round(height * scale)), max(size, round(width * scale)))
        if new != (height, width):
            x = F.interpolate(x, size=new, mode="bilinear", align_corners=False, antialias=True)
        top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
        x = x[..., top:top + size, left:left + size]
    return x


def picture_to_rgb(image: Image.Image) -> torch.Tensor:
    """A PIL picture of any mode -> (3, H, W) float RGB in [0, 1], ready for :func:`prepare_images`.

    Greyscale is repeated, alpha composited onto white, palette / CMYK / 16-bit converted; the
    camera's EXIF rotation is applied; an animation gives its first frame. Pictures over
    4096 pixels a side or under 8 are refused (ValueError naming the limit) before decoding.
    """
    array = _to_unit(_pil_to_array(image))
    x = torch.from_numpy(np.ascontiguousarray(array))
    x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
    return to_rgb(x.unsqueeze(0))[0].clamp(0, 1)


def _first_rgb_conv(model: nn.Module) -> nn.Conv2d:
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None or conv.in_channels != 3:
        raise ValueError(f"{type(model).__name__} has no RGB first conv layer")
    return conv


def kernel_groups(model: nn.Module) -> int:
    """How many groups (GPU columns) the first layer's kernels fall into: ``model.columns`` where the model has it
    (``alexnet-cifar``), 2 for the paper's two-GPU ``alexnet``, else 1. Group g is the g-th contiguous block."""
    columns = getattr(model, "columns", None)
    if isinstance(columns, int) and not isinstance(columns, bool) and columns >= 1:
        return columns
    return 2 if getattr(model, "two_gpu", False) else 1


def first_layer_kernels(model: nn.Module) -> tuple[np.ndarray, int]:
    """The first conv layer's RGB kernels as images (n, k, k, 3) in [0, 1], and how many groups they fall into.

    Each kernel is min-max scaled on its own (as cuda-convnet showed them, and the paper's Figure 3),
    so weak kernels stay visible. Groups (:func:`kernel_groups`): ``model.columns`` for
    ``alexnet-cifar`` (2 with ``columns=2``: the first n/2 kernels are column 0), 2 for the paper's
    two-GPU ``alexnet`` (48 kernels per GPU), else 1.
    """
    w = _first_rgb_conv(model).weight.detach().float().cpu()
    low = w.amin(dim=(1, 2, 3), keepdim=True)
    high = w.amax(dim=(1, 2, 3), keepdim=True)
    images = ((w - low) / (high - low).clamp_min(1e-12)).permute(0, 2, 3, 1).numpy()
    return images, kernel_groups(model)


# A kernel whose chroma (:func:`kernel_chroma`) is under this is "nearly grey": at most a fifth of its energy is
# colour-opponent, i.e. at least 80 % lies along R = G = B. Random kernels sit near 2/3, a pure-red one at 2/3 too.
GREY_CHROMA = 0.2


def kernel_chroma(weights: torch.Tensor) -> torch.Tensor:
    """Per kernel of ``weights`` (n, 3, k, k): the share of its energy that is colour-opponent, in [0, 1].

    chroma(w) = sum_p ||w_p - mean_c(w_p)||^2 / sum_p ||w_p||^2 over the pixels p, w_p being the RGB
    3-vector at p and mean_c(w_p) its channel mean repeated three times. 0 for a grey kernel (R = G = B
    at every pixel), 1 when the channels sum to zero at every pixel (red minus green, say), 2/3 for a
    pure-red kernel. The "no structure" baseline: kernels drawn i.i.d. zero-mean give about 2/3 in
    expectation (two of the three colour directions are opponent; exactly 2/3 for Gaussian weights).
    An all-zero kernel has no colour: 0. Returns float64 (n,).
    """
    w = torch.as_tensor(weights).detach().to("cpu", torch.float64)
    if w.dim() != 4 or w.shape[1] != 3:
        raise ValueError(f"expected RGB kernels of shape (n, 3, k, k), got {tuple(w.shape)}")
    opponent = (w - w.mean(dim=1, keepdim=True)).square().sum(dim=(1, 2, 3))
    energy = w.square().sum(dim=(1, 2, 3))
    return torch.where(energy > 0, opponent / energy.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(energy))


def kernel_colour(model_or_weights: nn.Module | torch.Tensor | np.ndarray, groups: int | None = None) -> list[dict]:
    """How colour-specific the first layer's kernels are, per group (GPU column): the paper's Figure 3 observation.

    ``model_or_weights``: a model (its first RGB conv; ``groups`` defaults to :func:`kernel_groups`) or
    a weight tensor (n, 3, k, k) (``groups`` defaults to 1). Group g is the g-th contiguous n / groups
    kernels. Per group: ``{"group": g, "kernels": n / groups, "mean_chroma": float, "grey_fraction":
    share of kernels with chroma < GREY_CHROMA, "chroma": [per-kernel chroma]}`` (:func:`kernel_chroma`;
    random kernels give a mean chroma near 2/3 and almost no grey kernels).
    """
    if isinstance(model_or_weights, nn.Module):
        weights = _first_rgb_conv(model_or_weights).weight
        groups = kernel_groups(model_or_weights) if groups is None else groups
    else:
        weights, groups = model_or_weights, 1 if groups is None else groups
    chroma = kernel_chroma(weights)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or len(chroma) % groups:
        raise ValueError(f"groups must be a positive integer dividing the {len(chroma)} kernels, got {groups!r}")
    per_group = len(chroma) // groups
    result = []
    for g in range(groups):
        values = chroma[g * per_group:(g + 1) * per_group]
        result.append({"group": g, "kernels": per_group, "mean_chroma": float(values.mean()),
                       "grey_fraction": float((values < GREY_CHROMA).double().mean()), "chroma": values.tolist()})
    return result


def prepare_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Any (N, C, H, W) or (C, H, W) image batch -> float RGB (N, 3, size, size) in [0, 1] (uint8 is divided by 255)."""
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if not x.is_floating_point():
        x = x.float() / 255
    return fit_size(to_rgb(x), size).clamp(0, 1)


class RGBInput(nn.Module):
    """Check (N, 3, size, size) in [0, 1], then normalise each channel: (x - mean) / std."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.size = size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, self.size)
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"size={self.size}, mean={tuple(round(v, 4) for v in self.mean.flatten().tolist())}"


# --------------------------------------------------------------------------- the paper's layers


class PaperLRN(nn.Module):
    """Local response normalisation exactly as in the paper (Section 3.3)::

        b[i] = a[i] / (k + alpha * sum_{j = max(0, i - n/2)}^{min(N - 1, i + n/2)} a[j]^2) ^ beta

    with k = 2, n = 5, alpha = 1e-4, beta = 0.75 (``alpha`` here is the paper's). PyTorch's
    ``nn.LocalResponseNorm`` divides alpha by n, so it equals this module given ``alpha = n * 1e-4``;
    this one sums the n neighbouring squares directly, which is also several times faster on a CPU.
    With ``groups = 2`` each half of the maps is normalised on its own, as on the paper's two GPUs.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0, groups: int = 1):
        super().__init__()
        self.size, self.alpha, self.beta, self.k, self.groups = size, alpha, beta, k, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, channels = x.shape[0], x.shape[1]
        squares = (x * x).reshape(n * self.groups, channels // self.groups, *x.shape[2:])
        before, after = self.size // 2, (self.size - 1) // 2
        padded = F.pad(squares, (0, 0, 0, 0, before, after))
        window = padded[:, 0:squares.shape[1]]
        for shift in range(1, self.size):
            window = window + padded[:, shift:shift + squares.shape[1]]
        return x * (self.k + self.alpha * window.reshape_as(x)).pow(-self.beta)

    def extra_repr(self) -> str:
        return f"n={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, groups={self.groups}"


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "tanh":
        return nn.Tanh()
    raise ValueError(f"unknown activation '{name}'; choose relu or tanh")


class AlexNet(nn.Module):
    """AlexNet as in the 2012 paper: 224x224 RGB in, 1000 class scores out.

    conv1 96 11x11/4 -> LRN -> max-pool 3/2; conv2 256 5x5 -> LRN -> pool; conv3 384,
    conv4 384, conv5 256 (3x3) -> pool; fc6 4096, fc7 4096 (ReLU, dropout 0.5), fc8 1000.
    ``two_gpu=True`` (default) is the paper's two-column layout: conv1's 96 kernels fall
    into two groups of 48 (one per GPU), conv2, conv4 and conv5 see only their own
    column's maps (``groups=2``), LRN works within a column, and conv3 and the fully
    connected layers see everything. ``two_gpu=False`` is the one-column network.

    The input stage subtracts the mean ImageNet colour from 0-255 pixels (the paper
    subtracts the mean image; a per-channel mean is the usual simplification).
    Initialisation as in Section 5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5,
    fc6 and fc7, 0 elsewhere. Dropout is PyTorch's inverted dropout, equivalent to the
    paper's "multiply the outputs by 0.5 at test time".

    Counts (:func:`paper_comparison`): 60,965,224 params (paper: 60 million), 659,272 neurons
    (650,000; the paper misprints conv1's 290,400 as 253,440) and 725 million connections
    (multiply-adds + biases; paper: 630 million, counting rule unstated -- 671 million without
    the taps on zero padding).
    """

    head = "softmax"
    input_shape = (3, 224, 224)
    embedding_layer = "fc7"

    def __init__(self, num_classes: int = 1000, two_gpu: bool = True, dropout: float = 0.5) -> None:
        super().__init__()
        g = 2 if two_gpu else 1
        self.two_gpu = two_gpu
        self.features = nn.Sequential(OrderedDict(
            input=RGBInput(224, IMAGENET_MEAN, (1 / 255,) * 3),
            conv1=nn.Sequential(nn.Conv2d(3, 96, 11, stride=4, padding=2), nn.ReLU(inplace=True), PaperLRN(groups=g),
                                nn.MaxPool2d(3, 2)),
            conv2=nn.Sequential(nn.Conv2d(96, 256, 5, padding=2, groups=g), nn.ReLU(inplace=True), PaperLRN(groups=g),
                                nn.MaxPool2d(3, 2)),
            conv3=nn.Sequential(nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True)),
            conv4=nn.Sequential(nn.Conv2d(384, 384, 3, padding=1, groups=g), nn.ReLU(inplace=True)),
            conv5=nn.Sequential(nn.Conv2d(384, 256, 3, padding=1, groups=g), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2)),
        ))
        self.classifier = nn.Sequential(OrderedDict(
            fc6=_fc(256 * 6 * 6, 4096, dropout, flatten=True),
            fc7=_fc(4096, 4096, dropout),
            fc8=nn.Linear(4096, num_classes),
        ))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Section 5: weights from N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6, fc7 and 0 in the rest."""
        ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}
        for name, layer in [*self.features.named_children(), *self.classifier.named_children()]:
            for module in layer.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    nn.init.normal_(module.weight, 0.0, 0.01)
                    nn.init.constant_(module.bias, 1.0 if name in ones else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _fc(n_in: int, n_out: int, dropout: float, flatten: bool = False, activation: str = "relu") -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()] if flatten else []
    layers += [nn.Linear(n_in, n_out), _activation(activation)]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- counts against the paper


def _op_neurons(model: nn.Module) -> dict[str, int]:
    """Per layer: outputs of its convolution or linear map (the paper's neurons: before pooling)."""
    counts: dict[str, int] = {}
    handles = []
    for name, layer in [*model.features.named_children(), *model.classifier.named_children()]:
        op = next((m for m in layer.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
        if op is not None:
            handles.append(op.register_forward_hook(lambda _m, _i, out, name=name: counts.__setitem__(name, out[0].numel())))
    try:
        _probe_forward(model)
    finally:
        for handle in handles:
            handle.remove()
    return counts


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
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *model.input_shape))
    finally:
        model.train(was_training)


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


# --------------------------------------------------------------------------- torchvision's pretrained AlexNet


class TorchvisionAlexNet(nn.Module):
    """torchvision's AlexNet (64-192-384-256-256 conv widths, from Krizhevsky 2014) with named blocks.

    The same modules as ``torchvision.models.alexnet()``, grouped into ``conv1`` .. ``fc8``
    behind an ``input`` stage that checks (N, 3, 224, 224) RGB in [0, 1] and applies
    ImageNet's mean/std normalisation. Load torchvision state dicts with
    :meth:`load_torchvision_state_dict`.
    """

    head = "softmax"
    input_shape = (3, 224, 224)
    embedding_layer = "fc7"

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        from torchvision.models import alexnet

        tv = alexnet(weights=None, num_classes=num_classes)
        f, c = tv.features, tv.classifier
        self.features = nn.Sequential(OrderedDict(
            input=RGBInput(224, IMAGENET_MEAN, IMAGENET_STD),
            conv1=nn.Sequential(f[0], f[1], f[2]),
            conv2=nn.Sequential(f[3], f[4], f[5]),
            conv3=nn.Sequential(f[6], f[7]),
            conv4=nn.Sequential(f[8], f[9]),
            conv5=nn.Sequential(f[10], f[11], f[12], tv.avgpool),
        ))
        self.classifier = nn.Sequential(OrderedDict(
            fc6=nn.Sequential(nn.Flatten(), c[0], c[1], c[2]),
            fc7=nn.Sequential(c[3], c[4], c[5]),
            fc8=c[6],
        ))
        names = {id(t): key for key, t in tv.state_dict(keep_vars=True).items()}
        self._torchvision_keys = {names[id(t)]: key for key, t in self.state_dict(keep_vars=True).items()}
        self._torchvision_shapes = {names[id(t)]: tuple(t.shape) for t in self.state_dict(keep_vars=True).values()}

    def load_torchvision_state_dict(self, state_dict: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Load a ``torchvision.models.alexnet`` state dict; a WeightsError when it is another network."""
        expected = self._torchvision_shapes
        missing, unexpected = sorted(set(expected) - set(state_dict)), sorted(set(state_dict) - set(expected))
        if missing or unexpected:
            raise WeightsError(f"{source} is not a torchvision AlexNet state dict (missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]}); pass the file torchvision downloads, {TORCHVISION_WEIGHTS_FILE}")
        for key, shape in expected.items():
            if tuple(state_dict[key].shape) != shape:
                raise WeightsError(
                    f"{source} holds weights of another width: {key} is {tuple(state_dict[key].shape)}, torchvision's "
                    f"AlexNet needs {shape}; this is not {TORCHVISION_WEIGHTS_FILE} (the paper's 96-256-384-384-256 "
                    "network is get_model('alexnet'), and a checkpoint of it loads with load_pretrained(name, weights_path))"
                )
        self.load_state_dict({self._torchvision_keys[k]: v for k, v in state_dict.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names in output order (shipped with torchvision; no network needed)."""
    from torchvision.models import AlexNet_Weights

    return list(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def torchvision_card(source: str) -> dict:
    """The card of torchvision's IMAGENET1K_V1 weights: its published accuracy and how it differs from the paper."""
    from torchvision.models import AlexNet_Weights

    weights = AlexNet_Weights.IMAGENET1K_V1
    metrics = weights.meta["_metrics"]["ImageNet-1K"]
    return {
        "model": "alexnet-torchvision",
        "weights": "torchvision AlexNet_Weights.IMAGENET1K_V1",
        "source": source,
        "recipe": weights.meta["recipe"],
        "data": {"name": "imagenet-1k", "description": "ImageNet-1k (ILSVRC-2012) training set, 1.28 million images"},
        "test_set": "ImageNet-1k validation set (50,000 images), as published by torchvision (not re-measured here)",
        "acc@1": metrics["acc@1"],
        "acc@5": metrics["acc@5"],
        "test_error": round(100 - metrics["acc@1"], 3),
        "top5_error": round(100 - metrics["acc@5"], 3),
        "widths": "conv 64-192-384-256-256, one column (torchvision, after Krizhevsky 2014, 'One weird trick'); "
                  "the 2012 paper has 96-256-384-384-256 split over two GPUs (get_model('alexnet'))",
        "paper": "the 2012 paper reports 40.7 % top-1 / 18.2 % top-5 error on ILSVRC-2012 validation for one CNN",
        "classes": imagenet_categories(),
        "epochs": [],
    }


def _local_torchvision_weights(weights_path: str | os.PathLike | None) -> Path | None:
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise WeightsError(f"no weights file at {path}: check weights_path")
        return path
    folder = os.environ.get("CONVNET_LAB_WEIGHTS")
    if folder:
        exact = Path(folder) / TORCHVISION_WEIGHTS_FILE
        found = [exact] if exact.is_file() else sorted(Path(folder).glob("alexnet-*.pth"))
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise WeightsError(f"several alexnet-*.pth files in $CONVNET_LAB_WEIGHTS={folder} ({names}); "
                               "keep one or pass weights_path")
        if found:
            return found[0]
    return None


def load_torchvision_alexnet(weights_path: str | os.PathLike | None = None, progress: bool = True) -> tuple[nn.Module, dict]:
    """torchvision's IMAGENET1K_V1 AlexNet in eval mode and its card.

    Looks in order at ``weights_path``, ``$CONVNET_LAB_WEIGHTS/alexnet-*.pth``, then torchvision's
    download (cached under ``torch.hub.get_dir()``). Files are read with ``weights_only=True``.
    """
    from torchvision.models import AlexNet_Weights

    path = _local_torchvision_weights(weights_path)
    if path is not None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any unreadable file gets the same clear message
            raise WeightsError(f"{path} is not a readable weights file ({type(exc).__name__}: {exc})"[:400]) from None
        source = str(path)
    else:
        url = AlexNet_Weights.IMAGENET1K_V1.url
        try:
            state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=progress, check_hash=True,
                                                       weights_only=True)
        except Exception as exc:  # offline, proxy, disk full: one message naming both ways
            raise WeightsError(
                f"could not download torchvision's AlexNet weights from {url} ({type(exc).__name__}: {exc}); either connect "
                f"to the internet, or download {TORCHVISION_WEIGHTS_FILE} elsewhere and pass weights_path=FILE "
                "(load_pretrained('alexnet-torchvision', weights_path=FILE)) or put it in the folder named by "
                "$CONVNET_LAB_WEIGHTS"
            ) from None
        source = url
    if isinstance(state, dict) and "state_dict" in state and "format" in state:
        raise WeightsError(f"{source} is a convnet-lab checkpoint, not a torchvision state dict; "
                           "load it with convnets.read_checkpoint and convnets.model_from_checkpoint")
    if not isinstance(state, dict):
        raise WeightsError(f"{source} does not hold a state dict")
    model = TorchvisionAlexNet()
    model.load_torchvision_state_dict(state, source)
    model.name, model.options = "alexnet-torchvision", {}
    model.classes = imagenet_categories()
    return model.eval(), torchvision_card(source)


@torch.no_grad()
def top_classes(model: nn.Module, x: torch.Tensor, k: int = 5,
                classes: Sequence[str] | None = None) -> list[list[tuple[str, float]]]:
    """Per image, the k most probable classes as (name, softmax probability); names from ``model.classes``."""
    was_training = model.training
    model.eval()
    scores = model(x)
    model.train(was_training)
    return top_of_scores(scores, classes or getattr(model, "classes", None), k)


def top_of_scores(scores: torch.Tensor, classes: Sequence[str] | None = None,
                  k: int = 5) -> list[list[tuple[str, float]]]:
    """:func:`top_classes` from scores already computed (N, C): per image, the k most probable (name, probability)."""
    probs = scores.softmax(dim=1)
    names = list(classes or [str(i) for i in range(probs.shape[1])])
    values, indices = probs.topk(min(k, probs.shape[1]), dim=1)
    return [[(names[i], float(v)) for v, i in zip(vs.tolist(), ix.tolist(), strict=True)]
            for vs, ix in zip(values, indices, strict=True)]


# --------------------------------------------------------------------------- CIFAR-10-sized networks


class AlexNetCifar(nn.Module):
    """AlexNet's principles on 32x32 RGB: ReLU, LRN, overlapping max-pooling, dropout, three FC layers.

    conv1 5x5 -> LRN -> pool 3/2 (32 -> 15); conv2 5x5 -> LRN -> pool (15 -> 7); conv3, conv4,
    conv5 3x3 -> pool (7 -> 3); fc6, fc7 ``hidden`` units (ReLU, dropout), fc8 10. Channel widths
    are ``width`` x (48, 128, 192, 192, 128) -- ``width=1`` is one GPU column of the paper,
    ``width=2`` the whole paper. ``fc7`` (``hidden`` wide) is the retrieval embedding.

    ``columns`` (``self.columns``): 1 (default) is one column, every layer sees all maps of the layer
    below. 2 is the paper's two-GPU layout (Figure 2) at CIFAR size: every conv layer's maps are split
    into halves, column 0 the first half and column 1 the second (with ``width=2``, conv1's 96 kernels
    are 2 x 48; conv1 itself is an ordinary conv on the 3 input channels); conv2, conv4 and conv5 see
    only their own column's maps (``groups=2``), LRN normalises within a column, and conv3 and the
    fully connected layers see both columns. Every channel count must then be even (a ValueError
    names the widths that fit). Layer names and shapes are the same for both; the two-column net has
    fewer weights in conv2, conv4 and conv5.
    """

    head = "softmax"
    input_shape = (3, 32, 32)
    embedding_layer = "fc7"
    base_channels = (48, 128, 192, 192, 128)

    def __init__(self, num_classes: int = 10, width: float = 1.0, hidden: int = 1024, dropout: float = 0.5,
                 lrn: bool = True, activation: str = "relu", columns: int = 1, conv1_std: float | None = None) -> None:
        super().__init__()
        if conv1_std is not None and not conv1_std > 0:
            raise ValueError(f"conv1_std must be positive (the paper's is 0.01) or None for He initialisation, got {conv1_std}")
        self.conv1_std = conv1_std
        if not width > 0 or hidden < 1 or not 0 <= dropout < 1:
            raise ValueError(f"need width > 0, hidden >= 1 and 0 <= dropout < 1; got width={width}, hidden={hidden}, "
                             f"dropout={dropout}")
        if isinstance(columns, bool) or columns not in (1, 2):
            raise ValueError(f"columns must be 1 (one column) or 2 (the paper's two-GPU layout), got {columns!r}; "
                             "pass columns=1 or columns=2")
        c1, c2, c3, c4, c5 = channels = tuple(max(1, round(c * width)) for c in self.base_channels)
        if columns == 2 and any(c % 2 for c in channels):
            raise ValueError(f"columns=2 splits every conv layer's maps into two halves, but width={width} gives "
                             f"{channels} channels; choose a width that makes them all even (e.g. 0.25, 0.5, 1 or 2)")
        self.columns = columns

        def block(cin: int, cout: int, k: int, norm: bool = False, pool: bool = False, groups: int = 1) -> nn.Sequential:
            layers = [nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups), _activation(activation)]
            if norm and lrn:
                layers.append(PaperLRN(groups=columns))
            if pool:
                layers.append(nn.MaxPool2d(3, 2))
            return nn.Sequential(*layers)

        self.features = nn.Sequential(OrderedDict(
            input=RGBInput(32, CIFAR10_MEAN, CIFAR10_STD),
            conv1=block(3, c1, 5, norm=True, pool=True),
            conv2=block(c1, c2, 5, norm=True, pool=True, groups=columns),
            conv3=block(c2, c3, 3),
            conv4=block(c3, c4, 3, groups=columns),
            conv5=block(c4, c5, 3, pool=True, groups=columns),
        ))
        self.classifier = nn.Sequential(OrderedDict(
            fc6=_fc(c5 * 3 * 3, hidden, dropout, flatten=True, activation=activation),
            fc7=_fc(hidden, hidden, dropout, activation=activation),
            fc8=nn.Linear(hidden, num_classes),
        ))
        self.reset_parameters(activation)

    def reset_parameters(self, activation: str = "relu") -> None:
        """He initialisation (normal, fan-in) for the hidden layers, N(0, 0.01) for fc8, biases 0.

        PyTorch's default and the paper's N(0, 0.01) both leave this 8-layer net stuck at chance for
        the first epochs of a short CPU run; He et al.'s scaling keeps the signal's size layer to layer.
        ``conv1_std`` (e.g. the paper's 0.01) starts conv1 alone from small N(0, std) weights instead: He's
        scale (0.16 for 5x5x3 kernels) leaves random noise in the kernels that the first layer's small
        gradients take many epochs to wash out, so the kernels' pictures show mostly what was learned.
        """
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity=activation)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.classifier.fc8.weight, 0.0, 0.01)
        if self.conv1_std is not None:
            nn.init.normal_(self.features.conv1[0].weight, 0.0, self.conv1_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class FourLayerCNN(nn.Module):
    """The four-layer CNN of the paper's Figure 1 (ReLU vs tanh on CIFAR-10): three conv layers and one FC.

    The paper does not print the network; this is cuda-convnet's 'layers-80sec' CIFAR-10 net, the
    same author's code of the time: conv1 ``width`` 5x5 -> max-pool 3/2 (32 -> 16), conv2 ``width`` 5x5
    -> avg-pool 3/2 (-> 8), conv3 2*``width`` 5x5 -> avg-pool 3/2 (-> 4), fc 10; no LRN, no dropout
    ("no regularization of any kind"). ``activation`` is the only difference between the two racers.

    ``init``: ``"default"`` (PyTorch's) or ``"gaussian"`` (weights N(0, 0.01), biases 0, as AlexNet).
    ``input_scaling``: ``"standardise"`` ((x - mean) / std per channel) or ``"mean"`` (0-255 pixels
    minus the mean colour, as cuda-convnet fed them).
    """

    head = "softmax"
    input_shape = (3, 32, 32)
    embedding_layer = "conv3"

    def __init__(self, num_classes: int = 10, activation: str = "relu", width: int = 32, init: str = "default",
                 input_scaling: str = "standardise") -> None:
        super().__init__()
        if init not in ("default", "gaussian"):
            raise ValueError(f"unknown init '{init}'; choose default or gaussian")
        if input_scaling not in ("standardise", "mean"):
            raise ValueError(f"unknown input_scaling '{input_scaling}'; choose standardise or mean")
        std = CIFAR10_STD if input_scaling == "standardise" else (1 / 255,) * 3
        self.features = nn.Sequential(OrderedDict(
            input=RGBInput(32, CIFAR10_MEAN, std),
            conv1=nn.Sequential(nn.Conv2d(3, width, 5, padding=2), nn.MaxPool2d(3, 2, ceil_mode=True), _activation(activation)),
            conv2=nn.Sequential(nn.Conv2d(width, width, 5, padding=2), _activation(activation),
                                nn.AvgPool2d(3, 2, ceil_mode=True, count_include_pad=False)),
            conv3=nn.Sequential(nn.Conv2d(width, 2 * width, 5, padding=2), _activation(activation),
                                nn.AvgPool2d(3, 2, ceil_mode=True, count_include_pad=False)),
        ))
        self.classifier = nn.Sequential(OrderedDict(fc4=nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, num_classes))))
        if init == "gaussian":
            for module in self.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    nn.init.normal_(module.weight, 0.0, 0.01)
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
