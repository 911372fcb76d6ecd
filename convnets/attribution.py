"""Attribution for one image: which pixels the answer depends on, and a number to compare the methods by.

Every method takes a model of :mod:`convnets` (class scores out, higher = more likely; for the faithful
``lenet5`` the scores are the negated RBF distances, as everywhere in the lab) and ONE image -- (H, W),
(C, H, W) or (1, C, H, W), values in [0, 1] -- and returns an :class:`Attribution` for a target class:
the predicted class unless one is given. The "score" explained is the model's class score; the
"probability" is the softmax of the scores (what the dashboard shows).

* :func:`saliency` -- the gradient of the score with respect to the input pixels (Simonyan et al. 2014);
* :func:`smoothgrad` -- the gradient averaged over noisy copies of the image (Smilkov et al. 2017), one batch;
* :func:`integrated_gradients` -- (x - baseline) times the gradient integrated along the straight path from the
  baseline (default: the blank image, all zeros) to x (Sundararajan et al. 2017), one batch, with the
  completeness gap (sum of the attributions minus score(x) - score(baseline));
* :func:`grad_cam` -- a conv layer's maps weighted by the score's mean gradient per map, ReLU (Selvaraju et al.
  2017), placed on the input by each unit's receptive-field centre;
* :func:`occlusion` -- the score's drop when a patch is set to a fill value (Zeiler & Fergus 2014), every
  occluded copy in one batch;
* :func:`deletion_curve` -- the probability as the most-attributed pixels are removed, and its area.

Each function runs the model through :func:`convnets.inference.inference` (eval mode, every module's own mode handed
back afterwards); Grad-CAM reads its layer with :func:`convnets.inference.capture`, so no hook outlives a call.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from .inference import capture, float_pixels, inference, model_device
from .lenet import MnistInput, SparseConv2d, Subsampling
from .probes import layer_table, named_layers

METHODS = ("saliency", "smoothgrad", "integrated-gradients", "grad-cam", "occlusion")


@dataclass(frozen=True)
class Attribution:
    """One method's answer to "which pixels made the score of class ``target``?" for one image."""

    method: str  # one of METHODS
    target: int  # the class explained
    heatmap: np.ndarray  # (H, W) per input pixel: higher = more for the target; what is shown, what deletion ranks
    raw: np.ndarray  # the method's own output: (C, H, W) gradients / attributions, (h, w) CAM, (rows, cols) drops
    signed: bool  # True when the heatmap has meaningful negative values (against the target)
    score: float  # the target's score for the image
    probability: float  # softmax of the scores at the target
    note: str  # one line: the settings, the baseline or fill value
    completeness_gap: float | None = None  # integrated gradients: sum(attributions) - (score(x) - score(baseline))
    baseline_score: float | None = None  # integrated gradients: the target's score for the baseline


@dataclass(frozen=True)
class DeletionCurve:
    """The target's probability and score as the most-attributed pixels are set to ``fill``, step by step."""

    method: str
    target: int
    fractions: np.ndarray  # (steps + 1,) fraction of the pixels removed, 0 ... 1
    scores: np.ndarray  # (steps + 1,) the target's score after each step
    probabilities: np.ndarray  # (steps + 1,) softmax of the scores at the target
    auc: float  # area under probabilities vs fractions, in [0, 1]: lower = the map found what matters sooner
    fill: float


# --------------------------------------------------------------------------- shared plumbing


def _as_batch(model: nn.Module, image: torch.Tensor | np.ndarray) -> torch.Tensor:
    """One image as a float (1, C, H, W) batch on the model's device."""
    x = float_pixels(image)
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or len(x) != 1:
        raise ValueError(f"attribution explains one image at a time: (H, W), (C, H, W) or (1, C, H, W); got {tuple(x.shape)}")
    return x.to(model_device(model))


def _target(scores: torch.Tensor, target: int | None) -> int:
    """``target`` checked against the number of classes, or the predicted class (of the first row) when None."""
    n = scores.shape[1]
    if target is None:
        return int(scores[0].argmax())
    try:
        value = operator.index(target)
    except TypeError:
        raise ValueError(f"the class must be a whole number 0-{n - 1}, got {target!r}") from None
    if not 0 <= value < n:
        raise ValueError(f"class {value} does not exist: this model has {n} classes (0-{n - 1})")
    return value


def _probability(scores: torch.Tensor, target: int) -> float:
    return float(torch.softmax(scores[0].detach().double(), dim=0)[target])


def _gradients(model: nn.Module, batch: torch.Tensor, target: int | None, rows: slice) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(d score[target] / d input for every row of ``batch``, the scores, the target), one forward and one backward.

    Only the rows in ``rows`` enter the summed score whose gradient is taken; the target defaults to the
    prediction for row 0. Gradients go to the input only: no parameter's ``.grad`` is touched.
    """
    with inference(model, grad=True):
        batch = batch.detach().requires_grad_(True)
        scores = model(batch)
        target = _target(scores, target)
        (grads,) = torch.autograd.grad(scores[rows, target].sum(), batch)
    return grads.detach(), scores.detach(), target


def _magnitude(grads: torch.Tensor) -> np.ndarray:
    """A (C, H, W) gradient as one map: the largest absolute value over the channels at each pixel."""
    return grads.abs().amax(dim=0).cpu().numpy()


# --------------------------------------------------------------------------- gradient methods


def saliency(model: nn.Module, image: torch.Tensor | np.ndarray, target: int | None = None) -> Attribution:
    """Vanilla gradient: d score / d pixel. ``raw`` is the signed gradient, the heatmap its magnitude (max over channels)."""
    x = _as_batch(model, image)
    grads, scores, target = _gradients(model, x, target, slice(0, 1))
    return Attribution("saliency", target, _magnitude(grads[0]), grads[0].cpu().numpy(), False,
                       float(scores[0, target]), _probability(scores, target),
                       "|d score / d pixel|, the largest over the colour channels")


def smoothgrad(model: nn.Module, image: torch.Tensor | np.ndarray, target: int | None = None, samples: int = 25,
               sigma: float = 0.15, seed: int = 0) -> Attribution:
    """SmoothGrad: the gradient averaged over ``samples`` copies of the image plus Gaussian noise, in ONE batch.

    ``sigma`` is the noise's standard deviation as a fraction of the [0, 1] pixel range; the noise is seeded
    (``seed``), so the same image gives the same map. The target defaults to the prediction for the clean image,
    which rides in the same batch.
    """
    if samples < 1 or not sigma >= 0:
        raise ValueError(f"SmoothGrad needs samples >= 1 and sigma >= 0, got samples={samples}, sigma={sigma}")
    x = _as_batch(model, image)
    noise = torch.randn((samples, *x.shape[1:]), generator=torch.Generator().manual_seed(seed)).to(x) * sigma
    batch = torch.cat([x, x + noise])
    grads, scores, target = _gradients(model, batch, target, slice(1, None))
    mean = grads[1:].mean(dim=0)
    return Attribution("smoothgrad", target, _magnitude(mean), mean.cpu().numpy(), False, float(scores[0, target]),
                       _probability(scores, target),
                       f"the gradient averaged over {samples} noisy copies, noise σ = {sigma:g} of the pixel range, seed {seed}")


def integrated_gradients(model: nn.Module, image: torch.Tensor | np.ndarray, target: int | None = None, steps: int = 32,
                         baseline: torch.Tensor | np.ndarray | float = 0.0) -> Attribution:
    """Integrated gradients from ``baseline`` (default 0.0: the blank image -- background for a digit, black for a
    picture; or a whole image) to the image: the path integral of the gradient by ``steps``-point Gauss-Legendre
    quadrature (Captum's default rule; its nodes crowd the ends of the path, where the faithful LeNet-5's score
    moves most when starting from a blank image), all steps in ONE batch.

    ``raw`` holds the signed attributions (C, H, W); ``completeness_gap`` is their sum minus
    score(image) - score(baseline), which shrinks as ``steps`` grows. The heatmap sums the channels (signed).
    """
    if steps < 1:
        raise ValueError(f"integrated gradients needs steps >= 1, got {steps}")
    x = _as_batch(model, image)
    if isinstance(baseline, (int, float)):
        b, described = torch.full_like(x, float(baseline)), ("the blank image (all zeros)" if baseline == 0
                                                             else f"a flat image of {baseline:g}")
    else:
        b, described = _as_batch(model, baseline), "the given image"
        if b.shape != x.shape:
            raise ValueError(f"the baseline has shape {tuple(b.shape[1:])}, the image {tuple(x.shape[1:])}")
    nodes, weights = np.polynomial.legendre.leggauss(steps)  # on [-1, 1]; the path's alpha = (node + 1) / 2
    alphas = torch.as_tensor((nodes + 1) / 2).to(x).view(-1, 1, 1, 1)
    batch = torch.cat([x, b, b + alphas * (x - b)])
    grads, scores, target = _gradients(model, batch, target, slice(2, None))
    path_mean = (grads[2:] * torch.as_tensor(weights / 2).to(x).view(-1, 1, 1, 1)).sum(dim=0)
    attributions = (x[0] - b[0]) * path_mean
    difference = float(scores[0, target] - scores[1, target])
    gap = float(attributions.double().sum()) - difference
    return Attribution("integrated-gradients", target, attributions.sum(dim=0).cpu().numpy(), attributions.cpu().numpy(),
                       True, float(scores[0, target]), _probability(scores, target),
                       f"baseline: {described}; {steps} steps (Gauss-Legendre); completeness gap {gap:+.4f} "
                       f"against a score difference of {difference:+.4f}",
                       completeness_gap=gap, baseline_score=float(scores[1, target]))


# --------------------------------------------------------------------------- Grad-CAM


def _map_layers(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """(name, output shape) of every convolutional layer whose output is a stack of 2-D maps, in order."""
    convolutional = {name for name, layer in named_layers(model)
                     if any(isinstance(m, (nn.Conv2d, SparseConv2d)) for m in layer.modules())}
    return [(row.name, row.output_shape) for row in layer_table(model)
            if row.name in convolutional and len(row.output_shape) == 3]


def cam_layers(model: nn.Module) -> list[str]:
    """The layers Grad-CAM can use: the convolutional ones (output: a stack of 2-D maps), in network order."""
    return [name for name, _ in _map_layers(model)]


def default_cam_layer(model: nn.Module) -> str:
    """The last layer of :func:`cam_layers` whose maps are larger than 1x1 (LeNet-5: C3; AlexNet: conv5)."""
    usable = _map_layers(model)
    if not usable:
        raise ValueError(f"{type(model).__name__} has no convolutional layer for Grad-CAM")
    return next((name for name, shape in reversed(usable) if shape[1] * shape[2] > 1), usable[-1][0])


def _layer_output(model: nn.Module, x: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(the output of ``layer``, still in the autograd graph, and the scores) from one forward pass of the model."""
    usable = cam_layers(model)
    if layer not in usable:
        layers = dict(named_layers(model))
        what = "has no layer" if layer not in layers else "has no convolutional maps in layer"
        raise ValueError(f"{type(model).__name__} {what} '{layer}'; Grad-CAM layers: {', '.join(usable) or 'none'}")
    with capture([(layer, dict(named_layers(model))[layer])], detach=False) as outputs:
        scores = model(x)
    return outputs[layer], scores


def _centres(model: nn.Module, layer: str, size: tuple[int, int]) -> list[tuple[float, float, int]] | None:
    """Per axis (rows, cols): (centre of unit 0's receptive field in input pixels, spacing of the centres, units).

    Receptive-field arithmetic over the conv / pool / padding modules up to ``layer`` (any other module counts as
    pointwise); when the predicted number of units differs from the layer's, Grad-CAM falls back to a plain resize.
    """
    axes = [[0.0, 1.0, n] for n in size]  # start, jump, n
    for name, block in named_layers(model):
        for module in block.modules():
            if next(module.children(), None) is not None:
                continue
            for axis, geometry in enumerate(axes):
                kernel, stride, padding, dilation, ceil = _window(module, axis)
                start, jump, n = geometry
                span = dilation * (kernel - 1) + 1
                units = (n + 2 * padding - span) / stride + 1
                geometry[:] = [start + ((span - 1) / 2 - padding) * jump, jump * stride,
                               math.ceil(units) if ceil else math.floor(units)]
        if name == layer:
            return [tuple(geometry) for geometry in axes]
    return None


def _window(module: nn.Module, axis: int) -> tuple[int, int, int, int, bool]:
    """(kernel, stride, padding, dilation, ceil_mode) of a module along ``axis``; a pointwise module is (1, 1, 0, 1)."""
    if isinstance(module, MnistInput):
        return 1, 1, 2, 1, False  # pads 28 to 32
    if isinstance(module, SparseConv2d):
        return module.kernel_size, 1, 0, 1, False
    if isinstance(module, Subsampling):
        return module.size, module.size, 0, 1, False
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        if isinstance(module.padding, str):
            return 1, 1, 0, 1, False  # 'same' / 'valid' strings: the size check in grad_cam decides
        dilation = _pair(getattr(module, "dilation", 1))[axis]
        return (_pair(module.kernel_size)[axis], _pair(module.stride)[axis], _pair(module.padding)[axis], dilation,
                bool(getattr(module, "ceil_mode", False)))
    return 1, 1, 0, 1, False


def _place(cam: torch.Tensor, geometry: list[tuple[float, float, int]] | None, size: tuple[int, int]) -> torch.Tensor:
    """A (h, w) map on the (H, W) input: bilinear between unit centres, the edge value beyond them."""
    h, w = cam.shape
    if geometry is None or (geometry[0][2], geometry[1][2]) != (h, w):
        return F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    coords = []
    for (start, jump, units), pixels in zip(geometry, size, strict=True):
        u = (torch.arange(pixels, dtype=cam.dtype, device=cam.device) - start) / jump
        coords.append(2 * u / (units - 1) - 1 if units > 1 else torch.zeros_like(u))
    grid = torch.stack(torch.meshgrid(coords[1], coords[0], indexing="xy"), dim=-1)  # (H, W, 2) as (x, y)
    return F.grid_sample(cam[None, None], grid[None], mode="bilinear", padding_mode="border", align_corners=True)[0, 0]


def grad_cam(model: nn.Module, image: torch.Tensor | np.ndarray, layer: str | None = None,
             target: int | None = None) -> Attribution:
    """Grad-CAM on the conv layer ``layer`` (by name, e.g. ``C3`` or ``conv5``; default :func:`default_cam_layer`).

    Each map of the layer is weighted by the mean gradient of the score over that map; the weighted sum goes
    through a ReLU. ``raw`` is the (h, w) map at the layer's resolution; the heatmap places it on the input by
    each unit's receptive-field centre (bilinear between centres). A 1x1 layer (LeNet-5's C5) gives one value
    spread over the whole image. An unknown or non-spatial layer is a ValueError naming the usable ones.
    """
    x = _as_batch(model, image)
    layer = default_cam_layer(model) if layer is None else layer
    with inference(model, grad=True):
        activation, scores = _layer_output(model, x, layer)
        target = _target(scores, target)
        (grads,) = torch.autograd.grad(scores[0, target], activation)
    scores, activation = scores.detach(), activation.detach()
    weights = grads[0].mean(dim=(1, 2))
    cam = torch.relu((weights.view(-1, 1, 1) * activation[0]).sum(dim=0))
    size = (x.shape[2], x.shape[3])
    geometry = _centres(model, layer, size)
    placed = _place(cam, geometry, size)
    k, h, w = activation.shape[1:]
    how = "by each unit's receptive-field centre" if geometry and (geometry[0][2], geometry[1][2]) == (h, w) else "resized"
    return Attribution("grad-cam", target, placed.cpu().numpy(), cam.cpu().numpy(), False,
                       float(scores[0, target]), _probability(scores, target),
                       f"{layer}: {k} maps of {h}x{w}, weighted by the mean gradient per map, ReLU, placed on the input {how}")


# --------------------------------------------------------------------------- occlusion


def occlusion(model: nn.Module, image: torch.Tensor | np.ndarray, target: int | None = None, patch: int = 4,
              stride: int = 1, fill: float = 0.0) -> Attribution:
    """Occlusion sensitivity: the score's drop when a ``patch`` x ``patch`` square is set to ``fill`` (default 0:
    background for a digit, black for a picture), the square centred on every ``stride``-th pixel (clipped at the
    border). The image and every occluded copy go through the model as ONE batch.

    ``raw`` is the drop per patch position; a pixel's heatmap value is the mean drop of the patches covering it
    (positive = hiding it lowers the target's score).
    """
    if patch < 1 or stride < 1 or stride > patch:
        raise ValueError(f"need 1 <= stride <= patch (a larger stride leaves pixels never occluded); "
                         f"got patch {patch}, stride {stride}")
    x = _as_batch(model, image)
    _, _, height, width = x.shape
    inside = []
    for pixels in (height, width):
        first = torch.arange(0, pixels, stride, device=x.device) - (patch - 1) // 2
        span = torch.arange(pixels, device=x.device)
        inside.append((span >= first[:, None]) & (span < first[:, None] + patch))  # (positions, pixels)
    rows, cols = inside
    masks = (rows[:, None, :, None] & cols[None, :, None, :]).reshape(-1, 1, height, width)
    batch = torch.cat([x, torch.where(masks, torch.as_tensor(fill, dtype=x.dtype, device=x.device), x)])
    with inference(model):
        scores = model(batch)
    target = _target(scores, target)
    drops = scores[0, target] - scores[1:, target]
    flat = masks.view(len(masks), -1).to(drops.dtype)
    covered = flat.sum(dim=0)
    heatmap = (drops @ flat / covered.clamp_min(1)).view(height, width)
    return Attribution("occlusion", target, heatmap.cpu().numpy(), drops.view(len(rows), len(cols)).cpu().numpy(), True,
                       float(scores[0, target]), _probability(scores[:1], target),
                       f"{patch}x{patch} patches of {fill:g} every {stride} px ({len(masks)} occluded copies, one batch); "
                       "a pixel = the mean score drop of the patches covering it")


# --------------------------------------------------------------------------- deletion


def deletion_curve(model: nn.Module, image: torch.Tensor | np.ndarray, ranking: Attribution | np.ndarray | torch.Tensor,
                   target: int | None = None, steps: int = 20, fill: float = 0.0) -> DeletionCurve:
    """Set the pixels to ``fill`` (all channels) in order of ``ranking`` (an Attribution's heatmap, or any (H, W)
    map; highest first, ties in reading order), ``steps`` equal chunks, and read the target's score and probability
    after each step -- every step in ONE batch. The target defaults to the Attribution's, else the prediction.

    Guaranteed: the removed sets grow (each contains the last), step 0 is the image itself and the last step the
    image entirely at ``fill``. ``auc`` is the area under probability vs fraction removed: comparable across
    methods for one image and class, lower when the map puts first the pixels the answer needs.
    """
    if steps < 1:
        raise ValueError(f"a deletion curve needs steps >= 1, got {steps}")
    x = _as_batch(model, image)
    method = ranking.method if isinstance(ranking, Attribution) else "map"
    if isinstance(ranking, Attribution):
        target = ranking.target if target is None else target
        ranking = ranking.heatmap
    values = torch.as_tensor(np.asarray(ranking, dtype=np.float64)).flatten()
    pixels = x.shape[2] * x.shape[3]
    if values.numel() != pixels or not torch.isfinite(values).all():
        raise ValueError(f"the ranking needs {x.shape[2]}x{x.shape[3]} finite values, got {tuple(np.shape(ranking))}")
    order = torch.argsort(-values, stable=True)
    rank = torch.empty(pixels, dtype=torch.long)
    rank[order] = torch.arange(pixels)
    counts = torch.round(torch.arange(steps + 1, dtype=torch.float64) * pixels / steps).long()
    removed = (rank[None, :] < counts[:, None]).view(steps + 1, 1, x.shape[2], x.shape[3]).to(x.device)
    batch = torch.where(removed, torch.as_tensor(fill, dtype=x.dtype, device=x.device), x)
    with inference(model):
        scores = model(batch).double()
    target = _target(scores, target)
    probabilities = torch.softmax(scores, dim=1)[:, target].cpu().numpy()
    fractions = (counts.double() / pixels).numpy()
    auc = float(((probabilities[1:] + probabilities[:-1]) / 2 * np.diff(fractions)).sum())
    return DeletionCurve(method, target, fractions, scores[:, target].cpu().numpy(), probabilities, auc, fill)


def attribute(model: nn.Module, image: torch.Tensor | np.ndarray, method: str, target: int | None = None,
              **settings) -> Attribution:
    """Any method of METHODS by name, e.g. ``attribute(model, x, "grad-cam", layer="C3")``; ``settings`` go to it."""
    functions = {"saliency": saliency, "smoothgrad": smoothgrad, "integrated-gradients": integrated_gradients,
                 "grad-cam": grad_cam, "occlusion": occlusion}
    if method not in functions:
        raise ValueError(f"unknown attribution method '{method}'; choose one of: {', '.join(METHODS)}")
    return functions[method](model, image, target=target, **settings)
