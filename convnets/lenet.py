"""LeNet-5 as in LeCun, Bottou, Bengio & Haffner (1998), and a modern twin.

Both models take the standard MNIST tensor, shape (N, 1, 28, 28), values in
[0, 1] with ink = 1, and return class scores (N, 10), higher = more likely.
Their first stage pads to 32x32 and maps background to -0.1 and ink to 1.175,
as in the paper. For the faithful model the scores are the negated Euclidean
RBF distances; the distances themselves are the output of the ``output`` layer.

Every child of ``features`` and ``classifier`` is one layer of the paper
(``input``, ``C1``, ``S2``, ``C3``, ``S4``, ``C5``, ``F6``, ``output``); the
probes in :mod:`convnets.probes` read them by those names.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Table I of the paper: which S2 maps (rows 0-5) feed each C3 map (columns 0-15).
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)

# The output layer's fixed parameters: stylized 7x12 bitmaps of the digits
# (Fig. 3 of the paper), '#' = +1, '.' = -1, transcribed row by row.
DIGIT_BITMAPS: tuple[str, ...] = (
    ".#####. ....... ..###.. .##.##. ##...## ##...## ##...## ##...## .##.##. ..###.. ....... .......",
    "...##.. ..###.. .####.. ...##.. ...##.. ...##.. ...##.. ...##.. ...##.. .###### ....... .......",
    ".#####. ....... .#####. ##...## #....## ....##. ..###.. .##.... ##..... ####### ....... .......",
    "####### .....## ....##. ...##.. ..####. .....## .....## .....## ##...## .#####. ....... .......",
    ".#####. ....... ....... .##..## .##..## ###..## ##...## ##...## ##..### .###### .....## .....##",
    ".#####. ....... ####### ##..... ##..... .####.. ..####. .....## ##...## .#####. ....... .......",
    "..####. .##.... ##..... ##..... ######. ###..## ##...## ##...## ###..## .#####. ....... .......",
    "####### .....## .....## ....##. ...##.. ...##.. ..##... ..##... ..##... ..##... ....... .......",
    ".#####. ##...## ##...## ##...## .#####. ##...## ##...## ##...## ##...## .#####. ....... .......",
    ".#####. ##..### ##...## ##...## ##..### .###### .....## .....## ....##. .####.. ....... .......",
)


def digit_prototypes() -> torch.Tensor:
    """The ten RBF centres as a (10, 84) tensor of +1/-1 (row-major 12x7 bitmaps)."""
    rows = [[1.0 if c == "#" else -1.0 for c in bitmap.replace(" ", "")] for bitmap in DIGIT_BITMAPS]
    return torch.tensor(rows)


def c3_connection_mask() -> torch.Tensor:
    """Table I as a (16, 6) boolean matrix: mask[j, i] is True when S2 map i feeds C3 map j."""
    mask = torch.zeros(16, 6, dtype=torch.bool)
    for j, inputs in enumerate(C3_TABLE):
        mask[j, list(inputs)] = True
    return mask


class MnistInput(nn.Module):
    """Pad (N, 1, 28, 28) MNIST digits in [0, 1] to 32x32 and map 0 -> -0.1, 1 -> 1.175."""

    background, ink = -0.1, 1.175

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(
                f"expected digits of shape (N, 1, 28, 28) with values in [0, 1], got {tuple(x.shape)}; "
                "resize to 28x28 greyscale (ink = 1) first"
            )
        x = F.pad(x, (2, 2, 2, 2))
        return self.background + (self.ink - self.background) * x


class Squash(nn.Module):
    """The paper's squashing function f(a) = A tanh(S a), A = 1.7159, S = 2/3."""

    amplitude, slope = 1.7159, 2.0 / 3.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.tanh(self.slope * x)


class Subsampling(nn.Module):
    """Trainable subsampling (S2, S4): sum of each 2x2 block x coefficient + bias, per map."""

    def __init__(self, channels: int, size: int = 2):
        super().__init__()
        self.size = size
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block_sum = F.avg_pool2d(x, self.size) * (self.size * self.size)
        return block_sum * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    @property
    def fan_in(self) -> int:
        return self.size * self.size


class SparseConv2d(nn.Module):
    """A convolution whose output maps see only chosen input maps (C3's Table I).

    Only the connected kernels are parameters, so ``weight.numel()`` is the
    paper's count: the full kernel tensor is scattered from them on each call.
    """

    def __init__(self, mask: torch.Tensor, kernel_size: int):
        super().__init__()
        out_channels, in_channels = mask.shape
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.register_buffer("mask", mask.clone(), persistent=False)
        out_idx, in_idx = mask.nonzero(as_tuple=True)
        self.register_buffer("out_index", out_idx, persistent=False)
        self.register_buffer("in_index", in_idx, persistent=False)
        self.weight = nn.Parameter(torch.empty(len(out_idx), kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def full_weight(self) -> torch.Tensor:
        """The (out, in, k, k) kernel tensor with zeros where Table I has no connection."""
        k = self.kernel_size
        full = self.weight.new_zeros(self.out_channels, self.in_channels, k, k)
        full[self.out_index, self.in_index] = self.weight
        return full

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.full_weight(), self.bias)

    def fan_in_per_output(self) -> torch.Tensor:
        return self.mask.sum(dim=1) * self.kernel_size**2


class EuclideanRBF(nn.Module):
    """Output layer: y_i = sum_j (x_j - w_ij)^2 with fixed centres w (the digit bitmaps)."""

    def __init__(self, centres: torch.Tensor):
        super().__init__()
        self.register_buffer("centres", centres.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.unsqueeze(1) - self.centres.unsqueeze(0)).pow(2).sum(dim=2)


class Negate(nn.Module):
    """Turns RBF distances into scores (higher = more likely)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


class LeNet5(nn.Module):
    """LeNet-5 exactly as in the 1998 paper (Section II-B, Table I, Appendix A).

    ``head = "rbf"``: :meth:`forward` returns negated RBF distances; train it
    with :func:`convnets.lenet.map_loss`, the paper's penalised RBF criterion.
    """

    head = "rbf"
    input_shape = (1, 28, 28)

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("input", MnistInput())
        self.features.add_module("C1", nn.Sequential(nn.Conv2d(1, 6, 5), Squash()))
        self.features.add_module("S2", nn.Sequential(Subsampling(6), Squash()))
        self.features.add_module("C3", nn.Sequential(SparseConv2d(c3_connection_mask(), 5), Squash()))
        self.features.add_module("S4", nn.Sequential(Subsampling(16), Squash()))
        self.features.add_module("C5", nn.Sequential(nn.Conv2d(16, 120, 5), Squash()))
        self.classifier = nn.Sequential()
        self.classifier.add_module("F6", nn.Sequential(nn.Flatten(), nn.Linear(120, 84), Squash()))
        self.classifier.add_module("output", EuclideanRBF(digit_prototypes()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The paper's initialisation: weights uniform in +-2.4 / fan-in, biases too."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
                _uniform_(module, fan_in)
            elif isinstance(module, nn.Linear):
                _uniform_(module, module.in_features)
            elif isinstance(module, SparseConv2d):
                fan_ins = module.fan_in_per_output().float()
                bound = (2.4 / fan_ins).to(module.weight)
                with torch.no_grad():
                    module.weight.uniform_(-1, 1).mul_(bound[module.out_index].view(-1, 1, 1))
                    module.bias.uniform_(-1, 1).mul_(bound)
            elif isinstance(module, Subsampling):
                _uniform_(module, module.fan_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.classifier(self.features(x))


# The four positions (row, column) of a 2x2 pooling window.
WINDOW = ((0, 0), (0, 1), (1, 0), (1, 1))


def max_of_2x2(x: torch.Tensor) -> torch.Tensor:
    """``max_pool2d(x, 2)`` as the maximum of four strided views (an odd last row or column is dropped, as there):
    the same values, several times faster on a CPU, and no indices computed."""
    x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]
    return torch.maximum(torch.maximum(x[..., ::2, ::2], x[..., ::2, 1::2]),
                         torch.maximum(x[..., 1::2, ::2], x[..., 1::2, 1::2]))


class _MaxOf2x2(torch.autograd.Function):
    """:func:`max_of_2x2` with its gradient sent back through a mask of where each maximum came from."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = max_of_2x2(x)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, out = ctx.saved_tensors
        h, w = out.shape[-2] * 2, out.shape[-1] * 2
        grad_x = torch.empty_like(x) if (h, w) == x.shape[-2:] else torch.zeros_like(x)
        for dy, dx in WINDOW:  # an exact tie sends the gradient to each of its inputs (max_pool2d: to one)
            torch.mul(grad, x[..., dy:h:2, dx:w:2] == out, out=grad_x[..., dy:h:2, dx:w:2])
        return grad_x


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)`` computed as :func:`max_of_2x2`; backward through :class:`_MaxOf2x2`.

    On this project's 2-core CPU a lenet5-modern training step runs about 1.1x faster with it
    (``max_pool2d_with_indices`` was a fifth of the step). Ties: between float activations after batch norm they
    practically never happen, and the zeros after ReLU get no gradient from ReLU anyway."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _MaxOf2x2.apply(x) if torch.is_grad_enabled() and x.requires_grad else max_of_2x2(x)


def _uniform_(module: nn.Module, fan_in: int) -> None:
    bound = 2.4 / fan_in
    with torch.no_grad():
        module.weight.uniform_(-bound, bound)
        module.bias.uniform_(-bound, bound)


def map_loss(scores: torch.Tensor, target: torch.Tensor, j: float = 0.1) -> torch.Tensor:
    """The paper's MAP criterion (eq. 9) on negated RBF distances ``scores = -y``.

    E = mean_p [ y_{D_p} + log(exp(-j) + sum_i exp(-y_i)) ]: pull the correct
    unit's distance down, push the others up, with a rubbish-class constant j.
    """
    distances = -scores
    correct = distances.gather(1, target.view(-1, 1)).squeeze(1)
    rubbish = torch.full_like(correct, -j).unsqueeze(1)
    penalty = torch.logsumexp(torch.cat([rubbish, scores], dim=1), dim=1)
    return (correct + penalty).mean()


class LeNet5Modern(nn.Module):
    """LeNet-5's shape with today's choices: full C3, ReLU, max-pooling, batch norm, softmax head.

    ``activation="tanh"`` swaps every ReLU for tanh (the AlexNet paper's comparison on digits).
    """

    head = "softmax"
    input_shape = (1, 28, 28)
    ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "tanh": nn.Tanh}

    def __init__(self, batch_norm: bool = True, dropout: float = 0.0, activation: str = "relu") -> None:
        super().__init__()
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"unknown activation '{activation}'; choose {' or '.join(self.ACTIVATIONS)}")
        self.activation = activation

        def conv(cin: int, cout: int) -> nn.Sequential:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 5, bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(self.ACTIVATIONS[activation]())
            return nn.Sequential(*layers)

        self.features = nn.Sequential()
        self.features.add_module("input", MnistInput())
        self.features.add_module("C1", conv(1, 6))
        self.features.add_module("S2", MaxPool2x2())
        self.features.add_module("C3", conv(6, 16))
        self.features.add_module("S4", MaxPool2x2())
        self.features.add_module("C5", conv(16, 120))
        f6: list[nn.Module] = [nn.Flatten(), nn.Linear(120, 84, bias=not batch_norm)]
        if batch_norm:
            f6.append(nn.BatchNorm1d(84))
        f6.append(self.ACTIVATIONS[activation]())
        if dropout > 0:
            f6.append(nn.Dropout(dropout))
        self.classifier = nn.Sequential()
        self.classifier.add_module("F6", nn.Sequential(*f6))
        self.classifier.add_module("output", nn.Linear(84, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

