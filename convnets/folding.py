"""A trained model folded into an equivalent, faster network for bulk inference.

The robustness curves classify 10,000 digits at 11 levels each: 110,000 forward passes, on one CPU thread. On
such tiny networks the elementwise passes cost as much as the convolutions, so :func:`folded` removes them:

* batch norm (eval mode) into the convolution or linear layer before it;
* the faithful LeNet-5's squashing function ``A tanh(S a)``, written ``2A sigmoid(2S a) - A`` (the same function;
  ``sigmoid`` is about 3x faster than ``tanh`` on a CPU): ``2S`` into the layer before it, ``x -> 2A x - A`` into
  the layer after it, leaving one ``sigmoid``;
* its trainable subsampling (sum of 2x2 blocks x coefficient + bias) as one depthwise 2x2 convolution of stride 2,
  and C5 (5x5 kernels over 5x5 maps) as the fully connected layer it is;
* 2x2 max-pooling of stride 2 as the maximum of four strided views (the same values; on one CPU thread about 5x
  faster than ``max_pool2d`` on NHWC tensors, which also computes indices nobody reads);
* the input map (pad 28x28 to 32x32, background -0.1, ink 1.175) into C1: its zero padding, scaled weights, a bias
  that takes in the background;
* for the modern twin, C1 -> ReLU -> 2x2 max-pooling as one stride-2 convolution with four times the maps
  (:class:`_ConvMaxPool`), and C5 as the fully connected layer it is;
* the layout that measured fastest on one thread (``bench/invariance.py``): NHWC (``channels_last``) for the faithful
  LeNet-5 and other models, NCHW for the modern twin once its C1 runs as :class:`_ConvMaxPool` (its stride-2
  convolution writes NCHW; converting costs more than NHWC saves in C3).

The folded network gives the original's scores up to float rounding (a test checks the answers over the
held-out digits); it has no named layers, so the probes that read layers keep using the original. The
original is not changed.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from .lenet import WINDOW, EuclideanRBF, LeNet5, LeNet5Modern, MaxPool2x2, MnistInput, SparseConv2d, Squash, Subsampling


def folded(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with the folds above; the same scores, fewer passes."""
    with torch.no_grad():
        if isinstance(model, LeNet5Modern):
            return _fold_modern(model).eval()
        net = _fold_lenet5(model) if isinstance(model, LeNet5) else _fold_layers(copy.deepcopy(model).eval())
    return net.eval().to(memory_format=torch.channels_last)


def _fold_layers(model: nn.Module) -> nn.Module:
    """Inside every ``nn.Sequential``: each (Conv2d | Linear, BatchNorm) pair becomes one layer (and an Identity),
    each plain 2x2 max-pooling a :class:`~convnets.lenet.MaxPool2x2`."""
    for sequential in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        children = list(sequential)
        for i, layer in enumerate(children):
            norm = children[i + 1] if i + 1 < len(children) else None
            if isinstance(layer, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                sequential[i], sequential[i + 1] = fuse_conv_bn_eval(layer, norm), nn.Identity()
            elif isinstance(layer, nn.Linear) and isinstance(norm, nn.BatchNorm1d):
                sequential[i], sequential[i + 1] = fuse_linear_bn_eval(layer, norm), nn.Identity()
            elif isinstance(layer, nn.MaxPool2d) and _plain_2x2(layer):
                sequential[i] = MaxPool2x2()
    for sequential in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        children = list(sequential)
        for i, layer in enumerate(children[:-1]):
            after = children[i + 1]
            first = after[0] if isinstance(after, nn.Sequential) and len(after) else after
            if isinstance(layer, MnistInput) and isinstance(first, nn.Conv2d) and first.padding in (0, (0, 0)):
                sequential[i] = nn.Identity()
                folded_conv = _input_into(first)
                if isinstance(after, nn.Sequential):
                    after[0] = folded_conv
                else:
                    sequential[i + 1] = folded_conv
    return model


def _input_into(conv: nn.Conv2d) -> nn.Conv2d:
    """``conv(MnistInput(x))`` as one convolution of ``x``: MnistInput's 2-pixel zero padding becomes the conv's, its
    affine map ``background + (ink - background) x`` the weights' scale and a bias term (exact: every padded zero
    of ``x`` is the background after the map, and the bias adds the background times the kernel's sum)."""
    background, scale = MnistInput.background, MnistInput.ink - MnistInput.background
    layer = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=2)
    layer.weight.copy_(conv.weight * scale)
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
    layer.bias.copy_(bias + background * conv.weight.flatten(1).sum(1))
    return layer


def _fold_modern(model: LeNet5Modern) -> nn.Sequential:
    """LeNet5Modern as one flat Sequential, after :func:`_fold_layers`: C1 -> ReLU -> S2 as one
    :class:`_ConvMaxPool`, C5 (5x5 kernels over S4's 5x5 maps) as the fully connected layer it is; identities and
    (eval-mode) dropout left out."""
    layers = [m for m in _leaves(_fold_layers(copy.deepcopy(model).eval()))
              if not isinstance(m, (nn.Identity, nn.Dropout))]
    shapes, x = [], torch.zeros(1, *model.input_shape)
    for layer in layers:  # the input shape of every layer, to see which convolution covers its whole input
        shapes.append(tuple(x.shape[1:]))
        x = layer(x)
    flat: list[nn.Module] = []
    i = 0
    while i < len(layers):
        layer, after = layers[i], layers[i + 1:i + 3]
        if (isinstance(layer, nn.Conv2d) and layer.in_channels == 1 and _plain_conv(layer) and len(after) == 2
                and isinstance(after[0], nn.ReLU) and isinstance(after[1], MaxPool2x2)):
            flat.append(_ConvMaxPool(layer))
            i += 3
            continue
        if isinstance(layer, nn.Conv2d) and _plain_conv(layer) and layer.padding in (0, (0, 0)) \
                and tuple(layer.kernel_size) == shapes[i][1:]:
            linear = nn.Linear(layer.weight[0].numel(), layer.out_channels)
            linear.weight.copy_(layer.weight.flatten(1))
            linear.bias.copy_(layer.bias)
            flat += [nn.Flatten(), linear]
        else:
            flat.append(layer)
        i += 1
    return nn.Sequential(*flat)


def _leaves(module: nn.Module) -> list[nn.Module]:
    """The layers of nested ``nn.Sequential`` containers, in the order they run."""
    return [leaf for child in module.children()
            for leaf in (_leaves(child) if isinstance(child, nn.Sequential) else [child])]


def _plain_conv(conv: nn.Conv2d) -> bool:
    return conv.stride in (1, (1, 1)) and conv.dilation in (1, (1, 1)) and conv.groups == 1 \
        and conv.padding_mode == "zeros" and conv.bias is not None


class _ConvMaxPool(nn.Module):
    """``max_pool2d(relu(conv(x)), 2)`` for a convolution of one input map, as a stride-2 convolution.

    Each of the four positions of a pooling window gets its own copy of every kernel, shifted to that position in
    a kernel one pixel larger: 4x the maps at a quarter of the size, then the maximum of each group of four, the
    bias and ReLU (both commute with the maximum). The same values up to float rounding; a 1-to-6-map convolution
    leaves most of a CPU's vector lanes idle, a 1-to-24-map one fewer, and the pooling pass and 3/4 of the ReLU
    pass go."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        kernel = conv.weight  # (C, 1, k, k) -> (4C, 1, k + 1, k + 1), map 4c + p = kernel c at window position p
        spread = torch.stack([nn.functional.pad(kernel, (dx, 1 - dx, dy, 1 - dy)) for dy, dx in WINDOW], 1)
        self.register_buffer("weight", spread.flatten(0, 1).contiguous())
        self.register_buffer("bias", conv.bias.detach().clone().view(1, -1, 1, 1))
        self.padding = conv.padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # one input map: NCHW strides, so oneDNN keeps the output NCHW and each group of four maps contiguous
        y = nn.functional.conv2d(x.squeeze(1).unsqueeze(1), self.weight, stride=2, padding=self.padding)
        n, maps, h, w = y.shape
        y = y.reshape(n, maps // 4, 4, h, w)  # the maximum of four views: faster here than amax(2)
        top = torch.maximum(y[:, :, 0], y[:, :, 1])
        y = torch.maximum(top, torch.maximum(y[:, :, 2], y[:, :, 3]), out=top).add_(self.bias)
        return torch.relu_(y)


def _plain_2x2(pool: nn.MaxPool2d) -> bool:
    return (pool.kernel_size in (2, (2, 2)) and pool.stride in (2, (2, 2)) and pool.padding in (0, (0, 0))
            and pool.dilation in (1, (1, 1)) and not pool.ceil_mode and not pool.return_indices)


class _Affine(nn.Module):
    """x -> scale * x + shift (the last squash's ``2A x - A``, in front of the RBF layer whose centres are fixed)."""

    def __init__(self, scale: float, shift: float):
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class _Negate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


def _fold_lenet5(model: LeNet5) -> nn.Sequential:
    """The faithful LeNet-5 as one flat Sequential: input map, then conv/sigmoid/depthwise-conv/linear, RBF, negation.

    ``carried = (scale, shift)``: the next layer's input is ``scale * x + shift`` of what the folded stack gives
    (``(2A, -A)`` after a folded squash); a layer takes it in as ``W' = scale W``, ``b' = b + shift * sum(W)``,
    exact because no layer after C1 pads its input (C1 takes in the input map: :func:`_input_into`).
    """
    amplitude, slope = Squash.amplitude, Squash.slope
    modules = [m for block in (*model.features, *model.classifier)
               for m in (block if isinstance(block, nn.Sequential) else [block])]
    layers: list[nn.Module] = []
    scale, shift = 1.0, 0.0
    for module in modules:
        if isinstance(module, MnistInput):  # into C1, see _input_into
            continue
        if module is model.features.C1[0]:
            layers.append(_input_into(module))
        elif isinstance(module, (nn.Conv2d, nn.Linear, SparseConv2d)):
            weight = module.full_weight() if isinstance(module, SparseConv2d) else module.weight
            whole = module is model.features.C5[0]  # 5x5 kernels over S4's 5x5 maps: fully connected, as the paper says
            if whole:
                layers.append(nn.Flatten())
                weight = weight.flatten(1)
            out_features, in_features = weight.shape[:2]
            layer = nn.Conv2d(in_features, out_features, weight.shape[-1]) if weight.dim() == 4 else \
                nn.Linear(in_features, out_features)
            layer.weight.copy_(weight * scale)
            layer.bias.copy_(module.bias + shift * weight.flatten(1).sum(1))
            layers.append(layer)
        elif isinstance(module, Subsampling):  # coefficient x (sum of a 2x2 block) + bias, per map
            maps, block = module.weight.numel(), module.size * module.size
            layer = nn.Conv2d(maps, maps, module.size, stride=module.size, groups=maps)
            layer.weight.copy_((module.weight * scale).view(maps, 1, 1, 1).expand_as(layer.weight))
            layer.bias.copy_(module.bias + shift * block * module.weight)
            layers.append(layer)
        elif isinstance(module, Squash):
            layers[-1].weight.mul_(2 * slope)
            layers[-1].bias.mul_(2 * slope)
            layers.append(nn.Sigmoid())
            scale, shift = 2 * amplitude, -amplitude
            continue
        elif isinstance(module, EuclideanRBF):
            layers += [_Affine(scale, shift), copy.deepcopy(module)]
        elif isinstance(module, nn.Flatten):
            layers.append(copy.deepcopy(module))
            continue
        else:
            raise TypeError(f"cannot fold a {type(module).__name__} of LeNet5; use the model as it is")
        scale, shift = 1.0, 0.0
    return nn.Sequential(*layers, _Negate())
