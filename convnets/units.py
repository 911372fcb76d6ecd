"""One unit of a digit model, looked at from every side: what it sees, what excites it, what it computes.

A *unit* is one map of a convolutional layer (LeNet-5's C1, C3, C5: every position of a map shares one kernel) or
one neuron of a fully connected hidden layer (F6), named by (layer, index). Every function is a pure function of a
model of :mod:`convnets` (digits (N, 1, 28, 28) in [0, 1], ink = 1) and a batch:

* :func:`unit_layers` -- the layers with units and how many each has; :func:`resolve_unit` checks a (layer, unit)
  asked for from outside (a URL) and says in one line what to ask for instead;
* :func:`receptive_field` -- the receptive-field arithmetic (size, spacing, centre of unit 0) of a layer in input
  pixels, from the conv / pool / padding modules up to it; :meth:`ReceptiveField.box` and :func:`crop`;
* :func:`top_patches` -- over a data set, batch by batch: for every unit of the given layers the ``k`` images that
  excite it most (each image counted once, at its most active position) and where;
* :func:`weighted_sum` -- a convolutional unit's value on one image worked out: per input map, kernel times window;
  plus the bias, the pre-activation; then the rest of the layer (squashing; or batch norm, ReLU);
* :func:`visualise` -- activation maximisation from seeded noise, with jitter, blur and a [0, 1] pixel range.

Every forward pass goes through :func:`convnets.inference.inference` (eval mode, each module's mode handed back) and
:func:`convnets.inference.capture` (no hook outlives a call); gradients are taken with respect to the input only.
"""

from __future__ import annotations

import itertools
import math
import operator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .attribution import _window
from .inference import capture, inference
from .lenet import SparseConv2d, Squash
from .probes import layer_table, named_layers

TOP_K = 9
ACTIVATIONS = (Squash, nn.ReLU, nn.Tanh)  # a layer's last activation: its input is the pre-activation
POINTWISE = (*ACTIVATIONS, nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout)  # modules that keep every unit where it is
WEIGHTED = (nn.Conv2d, SparseConv2d, nn.Linear)  # the modules that give a layer units of its own
COMMUTE = (nn.MaxPool2d, nn.Dropout)  # after a rising activation f: max(f(z)) = f(max(z)), so they may go first


# --------------------------------------------------------------------------- which units there are


def unit_layers(model: nn.Module) -> dict[str, int]:
    """Every layer with units of its own (a convolution or a fully connected layer, not the class scores), in network
    order, with its number of units: maps for a conv layer, neurons for a fully connected one."""
    layers = named_layers(model)
    weighted = {name for name, block in layers[:-1] if any(isinstance(m, WEIGHTED) for m in block.modules())}
    return {row.name: row.output_shape[0] for row in layer_table(model) if row.name in weighted}


def resolve_unit(layers: dict[str, int], layer: str | None, unit: object, model: str = "this model") -> tuple[str, int]:
    """``(layer, unit)`` checked against ``layers`` (:func:`unit_layers` of the model named ``model``); a ValueError
    whose one line names what exists otherwise. ``unit`` may be a string from a URL ("5"); layers are named exactly
    (``C3``)."""
    listed = ", ".join(f"{name} (0-{n - 1})" for name, n in layers.items())
    if layer not in layers:
        raise ValueError(f"{model} has no layer {layer!r} with units of its own; pick one of {listed}, e.g. ?layer="
                         f"{next(iter(layers))}&unit=0")
    n = layers[layer]
    text = unit.strip() if isinstance(unit, str) else None
    if text is not None and text.lstrip("-").isdigit():
        unit = int(text)
    try:
        index = operator.index(unit)
    except TypeError:
        raise ValueError(f"the unit must be a whole number 0-{n - 1} for {layer}, got {unit!r}; "
                         f"e.g. ?layer={layer}&unit=0") from None
    if not 0 <= index < n:
        raise ValueError(f"unit {index} does not exist: {layer} has {n} units (0-{n - 1}); e.g. ?layer={layer}&unit="
                         f"{min(max(index, 0), n - 1)}")
    return layer, index


def _block(model: nn.Module, layer: str) -> nn.Module:
    layers = dict(named_layers(model))
    if layer not in layers:
        raise ValueError(f"{type(model).__name__} has no layer '{layer}'; it has {', '.join(layers)}")
    return layers[layer]


def _leaves(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if next(m.children(), None) is None]


# --------------------------------------------------------------------------- receptive fields


@dataclass(frozen=True)
class ReceptiveField:
    """Where a layer's units look, in the pixels of the input image (28x28 for the digit models).

    Unit (row, col) sees the ``size`` x ``size`` square centred on ``start + row * jump`` (rows) and ``start + col *
    jump`` (columns); parts of it may lie in the model's own padding (LeNet-5 pads 28 to 32): :meth:`box` gives the
    square, :meth:`visible` the part on the image."""

    layer: str
    size: int  # pixels a side, padding included (LeNet-5: C1 5, S2 6, C3 14, S4 16, C5 32)
    jump: int  # input pixels between neighbouring units' centres
    start: float  # centre of unit (0, 0)'s field, input pixels (negative: in the padding)
    positions: tuple[int, int]  # (rows, cols) of unit positions in the layer's map
    image: tuple[int, int]  # (H, W) of the input image

    def box(self, row: int, col: int) -> tuple[int, int]:
        """(top, left) of unit (row, col)'s field in image pixels; it spans ``size`` pixels down and right."""
        corner = [self.start + i * self.jump - (self.size - 1) / 2 for i in (row, col)]
        return int(round(corner[0])), int(round(corner[1]))

    def visible(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of the field clipped to the image, bottom and right exclusive."""
        top, left = self.box(row, col)
        (h, w) = self.image
        return max(top, 0), max(left, 0), min(top + self.size, h), min(left + self.size, w)


def receptive_field(model: nn.Module, layer: str, pooled: bool = True) -> ReceptiveField:
    """The receptive field of ``layer``'s units, by the usual arithmetic over every module up to it: a window of k
    at stride s and padding p grows the field by (k - 1) * jump and multiplies the jump by s; flattening (before a
    fully connected layer) makes one unit that sees the union of every position's field. ``pooled=False``: the field
    of the layer's units before its own pooling (AlexNet's conv1, conv2, conv5 pool after the ReLU; the positions of
    :func:`weighted_sum`)."""
    _block(model, layer)
    h, w = _input_shape(model)[-2:]
    axes = [[1, 1.0, 0.0, n] for n in (h, w)]  # size, jump, start, positions
    for name, block in named_layers(model):
        for module in _leaves(block):
            if name == layer and not pooled and isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
                break
            for axis, geometry in enumerate(axes):
                size, jump, start, n = geometry
                if isinstance(module, nn.Flatten):
                    geometry[:] = [size + (n - 1) * jump, jump, start + (n - 1) * jump / 2, 1]
                    continue
                kernel, stride, padding, dilation, ceil = _window(module, axis)
                span = dilation * (kernel - 1) + 1
                units = (n + 2 * padding - span) / stride + 1
                geometry[:] = [size + (span - 1) * jump, jump * stride, start + ((span - 1) / 2 - padding) * jump,
                               math.ceil(units) if ceil else math.floor(units)]
        if name == layer:
            break
    (size, jump, start, rows), (size_w, _, _, cols) = axes
    if size != size_w:
        raise ValueError(f"{layer}'s receptive field is not square ({size}x{size_w}); units.py handles square ones")
    return ReceptiveField(layer, int(round(size)), int(round(jump)), float(start), (int(rows), int(cols)), (h, w))


def crop(images: torch.Tensor | np.ndarray, field: ReceptiveField, row: int, col: int) -> np.ndarray:
    """The ``size`` x ``size`` square unit (row, col) sees, cut from images (..., H, W); pixels in the model's padding
    are 0 (the background, as the model pads)."""
    array = np.asarray(images)
    top, left = field.box(row, col)
    pad = field.size
    padded = np.pad(array, [(0, 0)] * (array.ndim - 2) + [(pad, pad), (pad, pad)])
    return padded[..., top + pad:top + pad + field.size, left + pad:left + pad + field.size]


# --------------------------------------------------------------------------- top patches over a data set


@dataclass(frozen=True)
class TopPatches:
    """For every unit of one layer, the ``k`` data-set images that excite it most, best first (one per image)."""

    layer: str
    values: np.ndarray  # (units, k) float32: the unit's activation, its largest over the image's positions
    images: np.ndarray  # (units, k) int64: index of the image in the data set
    rows: np.ndarray  # (units, k) int64: the position of that largest activation in the unit's map
    cols: np.ndarray  # (units, k) int64
    field: ReceptiveField
    pre_activations: np.ndarray  # (units, k) float32: what the images are ranked by (see :func:`run_layers`)

    def crops(self, images: torch.Tensor | np.ndarray, unit: int) -> np.ndarray:
        """The ``k`` receptive-field crops of ``unit`` (k, size, size) cut from the data set ``images`` (N, H, W)."""
        array = np.asarray(images)
        return np.stack([crop(array[i], self.field, r, c)
                         for i, r, c in zip(self.images[unit], self.rows[unit], self.cols[unit], strict=True)])


def _input_shape(model: nn.Module) -> tuple[int, ...]:
    return tuple(getattr(model, "input_shape", (1, 28, 28)))


def _as_digits(images: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 or float in [0, 1], (N, H, W) grey or (N, C, H, W), as float (N, C, H, W) on ``device``."""
    if isinstance(images, np.ndarray) and not images.flags.writeable:  # e.g. a cached array: torch warns on those
        images = np.array(images)
    x = torch.as_tensor(images)
    x = x.float().div_(255) if not x.is_floating_point() else x.float()
    return (x.unsqueeze(1) if x.dim() == 3 else x).to(device)


def run_layers(model: nn.Module, x: torch.Tensor, layers: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(pre-activation, activation) of each of ``layers`` for the batch ``x``, running the model's layers in turn and
    stopping after the last one asked for (call it inside :func:`convnets.inference.inference`).

    The pre-activation is a layer's output before its last activation (squashing, ReLU, tanh): the same order of
    units as the activation wherever that differs, and it still tells apart inputs that saturate the squashing
    function (C3 of the faithful model gives 1.7159 for many digits). Where max-pooling follows the activation
    (AlexNet's conv1, conv2, conv5) the pre-activation is pooled first: the activation rises, so max(f(z)) = f(max(z))
    and the layer's output is unchanged. A layer without an activation gives its output twice."""
    order = [name for name, _ in named_layers(model)]
    last = max(order.index(name) for name in layers)
    out = {}
    for name, block in named_layers(model)[:last + 1]:
        children = list(block.children()) if isinstance(block, nn.Sequential) else []
        split = max((i for i, m in enumerate(children) if isinstance(m, ACTIVATIONS)), default=None)
        tail = children[split + 1:] if split is not None else []
        if name in layers and split is not None and all(isinstance(m, POINTWISE) for m in tail):
            pre = block[:split](x)
            x = block[split:](pre.clone())  # a ReLU may work in place
            out[name] = (pre, x)
        elif name in layers and split is not None and all(isinstance(m, COMMUTE) for m in tail):
            pre = nn.Sequential(*tail)(block[:split](x))  # max-pooling before a rising activation: the same output
            x = children[split](pre.clone())
            out[name] = (pre, x)
        else:
            x = block(x)
            out[name] = (x, x)
    return {name: out[name] for name in layers}


def top_patches(model: nn.Module, images: torch.Tensor | np.ndarray, layers: list[str] | None = None, k: int = TOP_K,
                batch_size: int = 1000) -> dict[str, TopPatches]:
    """For every unit of every layer in ``layers`` (default :func:`unit_layers`), the ``k`` images of ``images``
    (uint8 (N, H, W), or float in [0, 1]) that excite it most, each image at its most active position.

    Images are ranked by the unit's pre-activation (:func:`run_layers`), which orders them as the activation does
    and breaks the ties of a saturated squashing function. One pass per batch of ``batch_size`` computes every layer
    at once; a running top-k per unit is merged with each batch's, so memory stays at one batch."""
    layers = list(unit_layers(model)) if layers is None else layers
    for name in layers:
        _block(model, name)
    if not 1 <= k <= len(images):
        raise ValueError(f"k must be 1-{len(images)} (the data set's size), got {k}")
    device = next(model.parameters()).device
    best: dict[str, tuple[torch.Tensor, ...]] = {}
    widths: dict[str, int] = {}
    with inference(model):
        for first in range(0, len(images), batch_size):
            outputs = run_layers(model, _as_digits(images[first:first + batch_size], device), layers)
            for name, (pre, act) in outputs.items():
                n, units = pre.shape[:2]
                widths[name] = pre.shape[-1] if pre.dim() == 4 else 1
                score, where = pre.float().reshape(n, units, -1).max(dim=2)  # (B, units): each image once
                value = act.float().reshape(n, units, -1).gather(2, where[..., None])[..., 0]
                index = torch.arange(first, first + n, device=device).expand(units, -1)
                merged = (score.T, value.T, index, where.T)
                if name in best:
                    merged = tuple(torch.cat([a, b], dim=1) for a, b in zip(best[name], merged, strict=True))
                chosen = merged[0].topk(min(k, merged[0].shape[1]), dim=1).indices
                best[name] = tuple(part.gather(1, chosen) for part in merged)
    return {name: TopPatches(name, value.cpu().numpy(), index.cpu().numpy(), (where // widths[name]).cpu().numpy(),
                             (where % widths[name]).cpu().numpy(), receptive_field(model, name),
                             score.cpu().numpy())
            for name, (score, value, index, where) in best.items()}


def save_top_patches(path: str | Path, patches: dict[str, TopPatches]) -> None:
    """Write :func:`top_patches`' answer as one ``.npz`` (no pickles), atomically: a temporary file, then a rename."""
    path = Path(path)
    arrays = {f"{name}.{part}": getattr(p, part) for name, p in patches.items()
              for part in ("values", "images", "rows", "cols", "pre_activations")}
    temporary = path.with_name(f".{path.name}.partial")
    with open(temporary, "wb") as f:
        np.savez(f, **arrays)
    temporary.replace(path)


def load_top_patches(path: str | Path, model: nn.Module) -> dict[str, TopPatches]:
    """Read what :func:`save_top_patches` wrote (``allow_pickle=False``); the fields come from ``model``."""
    with np.load(path, allow_pickle=False) as arrays:
        names = dict.fromkeys(key.rsplit(".", 1)[0] for key in arrays.files)
        return {name: TopPatches(name, arrays[f"{name}.values"], arrays[f"{name}.images"], arrays[f"{name}.rows"],
                                 arrays[f"{name}.cols"], receptive_field(model, name),
                                 arrays[f"{name}.pre_activations"]) for name in names}


# --------------------------------------------------------------------------- the weighted sum of one unit


@dataclass(frozen=True)
class WeightedSum:
    """A unit's value at one position of one image, worked out from its weights and inputs.

    A convolutional unit sums one kernel x window product per input map; a fully connected one (F6) one weight x
    input product per input unit (its "maps" are then single values: windows and kernels of 1x1)."""

    layer: str
    unit: int
    row: int  # the position in the unit's map (0, 0 for a fully connected unit)
    col: int
    input_layer: str  # the layer whose maps feed it (C3: S2)
    inputs: tuple[int, ...]  # the input maps that feed this unit (C3 of the faithful model: Table I's column)
    windows: np.ndarray  # (n, k, k) each input map's window under the kernel at (row, col)
    kernels: np.ndarray  # (n, k, k) the unit's kernel for each input map
    contributions: np.ndarray  # (n,) sum(kernel * window) per input map
    bias: float  # 0 when the layer has none (batch norm follows)
    pre_activation: float  # sum(contributions) + bias: the convolution's (linear map's) own output
    after: tuple[tuple[str, float], ...]  # the rest of the layer, in order: ("Squash", value) or ("BatchNorm2d", ..)
    value: float  # the unit's output at (row, col): what Feature maps shows (AlexNet: before the layer's pooling)
    output_map: np.ndarray | None = None  # (H, W) the unit's whole map on the image (before any pooling); None: fc


def _weights_of(model: nn.Module, layer: str) -> tuple[nn.Module, list[nn.Module]]:
    """The layer's convolution (or linear map) and the modules after it in the layer (batch norm, activation)."""
    leaves = _leaves(_block(model, layer))
    at = next((i for i, m in enumerate(leaves) if isinstance(m, WEIGHTED)), None)
    if at is None:
        raise ValueError(f"{layer} has no weights of its own; the weighted sum is worked out for "
                         f"{', '.join(unit_layers(model))}")
    return leaves[at], leaves[at + 1:]


def _terms(weights: nn.Module, maps: torch.Tensor, unit: int, row: int, col: int) -> tuple[list[int], torch.Tensor,
                                                                                             torch.Tensor]:
    """(input maps feeding ``unit``, their windows (n, k, k) at (row, col), the unit's kernels (n, k, k))."""
    if isinstance(weights, nn.Linear):
        inputs = list(range(weights.in_features))
        return inputs, maps.reshape(-1)[:, None, None], weights.weight[unit][:, None, None]
    if isinstance(weights, SparseConv2d):
        inputs = weights.mask[unit].nonzero().flatten().tolist()
        kernels, k, stride, padding = weights.full_weight()[unit, inputs], weights.kernel_size, 1, 0
    else:  # a grouped convolution (AlexNet's columns) sees its group's maps only
        per = weights.in_channels // weights.groups
        group = unit // (weights.out_channels // weights.groups)
        inputs = list(range(group * per, (group + 1) * per))
        kernels, k, stride, padding = weights.weight[unit], weights.kernel_size[0], weights.stride[0], weights.padding[0]
    top, left = row * stride, col * stride
    return inputs, F.pad(maps, (padding,) * 4)[inputs, top:top + k, left:left + k], kernels


def weighted_sum(model: nn.Module, image: torch.Tensor | np.ndarray, layer: str, unit: int,
                 position: tuple[int, int] | None = None) -> WeightedSum:
    """``layer``'s unit ``unit`` on one image ((H, W); (C, H, W) for a colour model) worked out at ``position``
    (default: its most active one).

    Per input map i that feeds the unit: sum(kernel_i * window_i); plus the bias gives the pre-activation, which
    equals the convolution's own output there; then each module after the convolution in the layer in turn. A unit
    that is off everywhere (a ReLU) is worked out where its pre-activation is highest."""
    weights, rest = _weights_of(model, layer)
    layers = [name for name, _ in named_layers(model)]
    input_layer = layers[layers.index(layer) - 1]
    x = _as_digits(np.asarray(image).reshape(1, *_input_shape(model)), next(model.parameters()).device)
    kept: dict[str, torch.Tensor] = {}  # a copy: the ReLU after the convolution may work in place on its output
    handle = weights.register_forward_hook(lambda _m, _i, output: kept.__setitem__("weights", output.detach().clone()))
    try:
        with inference(model), capture([(input_layer, _block(model, input_layer))]) as out:
            model(x)
            after, current = [], kept["weights"]
            for module in itertools.takewhile(lambda m: isinstance(m, POINTWISE), rest):  # up to any pooling (AlexNet)
                current = module(current.clone())  # on a copy: a ReLU may work in place
                after.append((type(module).__name__, current[0, unit]))
    finally:
        handle.remove()
    output = current[0, unit]
    flat = float(output.max()) == float(output.min())  # e.g. a ReLU off everywhere: where it is closest to firing
    row, col = (position if position is not None else
                divmod(int((kept["weights"][0, unit] if flat else output).argmax()), output.shape[-1])) \
        if output.dim() == 2 else (0, 0)
    at = (row, col) if output.dim() == 2 else ()
    with torch.no_grad():
        inputs, windows, kernels = _terms(weights, out[input_layer][0], unit, row, col)
        contributions = (windows * kernels).sum(dim=(1, 2))
    return WeightedSum(layer, unit, int(row), int(col), input_layer, tuple(inputs), windows.cpu().numpy(),
                       kernels.detach().cpu().numpy(), contributions.cpu().numpy(),
                       float(weights.bias[unit].detach()) if weights.bias is not None else 0.0,
                       float(kept["weights"][(0, unit, *at)]), tuple((n, float(v[at])) for n, v in after),
                       float(output[at]), output.detach().cpu().numpy() if output.dim() == 2 else None)


# --------------------------------------------------------------------------- feature visualisation


@dataclass(frozen=True)
class Visualisation:
    """An input made to excite one unit, by gradient ascent from seeded noise."""

    layer: str
    unit: int
    objective: str  # 'centre' (the unit at its map's centre) or 'map' (the mean over the unit's map)
    image: np.ndarray  # (H, W) in [0, 1]; (H, W, 3) for a colour model
    activation: float  # the unit's activation (objective) on ``image``: what the Feature maps page would show
    start_activation: float  # the same on the starting noise
    pre_activation: float  # what the ascent climbs (the activation's input), on ``image``
    start_pre_activation: float  # the same on the starting noise
    curve: np.ndarray  # (steps,) the climbed pre-activation at each step (on the jittered image)
    note: str  # the regularisation, in one line


def _gaussian(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-t.square() / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def _objective(output: torch.Tensor, unit: int, objective: str) -> torch.Tensor:
    """The unit's value per image: at its map's centre, or the mean over its map (a vector layer: the unit)."""
    if output.dim() == 2:
        return output[:, unit]
    if objective == "map":
        return output[:, unit].mean(dim=(1, 2))
    return output[:, unit, output.shape[2] // 2, output.shape[3] // 2]


def visualise(model: nn.Module, layer: str, unit: int, objective: str = "centre", steps: int = 200, lr: float = 0.05,
              jitter: int = 2, blur: float = 0.7, blur_every: int = 4, seed: int = 0) -> Visualisation:
    """Activation maximisation: Adam on the pixels of a (1, 1, H, W) image from seeded uniform noise in [0, 0.2],
    ``steps`` steps of ``lr``, each on a copy shifted by up to ``jitter`` pixels (rolled); every ``blur_every`` steps
    a Gaussian blur of σ = ``blur`` pixels; pixels clamped to [0, 1] after every step. Small 28x28 inputs need this
    much regularisation: without it the ascent finds high-frequency speckle.

    The ascent climbs the unit's pre-activation (:func:`run_layers`): a ReLU unit that is off on the noise would
    give no gradient, and a squashed one none once saturated. Only the layers up to ``layer`` run."""
    if objective not in ("centre", "map"):
        raise ValueError(f"objective must be 'centre' or 'map', got {objective!r}")
    _, unit = resolve_unit(unit_layers(model), layer, unit, type(model).__name__)
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    start = (torch.rand(1, *_input_shape(model), generator=generator) * 0.2).to(device)
    shifts = torch.randint(-jitter, jitter + 1, (steps, 2), generator=generator).tolist()
    x = start.clone().requires_grad_(True)
    channels = start.shape[1]
    kernel = _gaussian(blur).repeat(channels, 1, 1, 1).to(device) if blur > 0 else None  # each channel on its own
    optimiser = torch.optim.Adam([x], lr=lr)
    curve = []
    with inference(model, grad=True):
        for step, (dy, dx) in enumerate(shifts):
            pre, _ = run_layers(model, torch.roll(x, (dy, dx), dims=(2, 3)), [layer])[layer]
            value = _objective(pre, unit, objective)[0]
            (x.grad,) = torch.autograd.grad(-value, x)
            optimiser.step()
            curve.append(float(value.detach()))
            with torch.no_grad():
                if kernel is not None and (step + 1) % blur_every == 0:
                    x.copy_(F.conv2d(x, kernel, padding=kernel.shape[-1] // 2, groups=channels))
                x.clamp_(0, 1)
        with torch.no_grad():
            ends = [[float(_objective(t, unit, objective)[0]) for t in run_layers(model, image, [layer])[layer]]
                    for image in (start, x)]
    note = (f"Adam, {steps} steps of lr {lr:g} from seeded noise (seed {seed}, uniform in [0, 0.2]); each step on a "
            f"copy shifted by up to {jitter} px (jitter); Gaussian blur σ = {blur:g} px every {blur_every} steps; "
            "pixels clamped to [0, 1]")
    picture = x.detach()[0].permute(1, 2, 0) if x.shape[1] == 3 else x.detach()[0, 0]
    return Visualisation(layer, unit, objective, picture.cpu().numpy(), ends[1][1], ends[0][1], ends[1][0],
                         ends[0][0], np.asarray(curve), note)
