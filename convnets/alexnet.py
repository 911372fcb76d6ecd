"""AlexNet as in Krizhevsky, Sutskever & Hinton (2012) and its CIFAR-sized kin: the architectures only.

Every model here takes RGB tensors (N, 3, S, S) with values in [0, 1] and
normalises them itself in its first layer, ``input`` (:class:`convnets.pictures.RGBInput`).
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

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .pictures import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, RGBInput

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
