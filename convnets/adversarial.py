"""Adversarial digits: the smallest L∞ perturbation that changes a digit model's answer, and accuracy against ε.

Every function takes a digit model of :mod:`convnets` (class scores out, higher = more likely; for the faithful
``lenet5`` the scores are the negated RBF distances, as everywhere in the lab) and digits in [0, 1], ink = 1. ε is in
pixel units of those [0, 1] images (ε = 0.1: every pixel moves by at most a tenth of full ink), and every perturbed
image is clipped to [0, 1]. What the attacks raise is the score margin (Carlini & Wagner 2017): the best other class's
score minus the answer's (untargeted), or the target's score minus the best other's (targeted). Cross-entropy of the
softmax would stall on the faithful LeNet-5, whose negated RBF distances differ by tens: its softmax is 1.0 in float32
and the gradient exactly zero. "Probability" below is the softmax of the scores, what the dashboard shows.

* :func:`fgsm` -- the fast gradient sign method (Goodfellow et al. 2015): one gradient, x + ε·sign(∇ margin);
* :func:`pgd` -- projected gradient descent (Madry et al. 2018): ``steps`` signed-gradient steps of α = 2.5·ε / steps
  from x (no random start), each projected back onto the L∞ ball of radius ε and onto [0, 1]; a row stops at the
  first iterate whose answer has changed;
* :func:`smallest_perturbation` -- the smallest ε (on a search grid) at which FGSM or PGD changes the answer, to any
  other class or to a chosen one: a coarse grid of ε values in one batch, then a fine grid between the last ε that
  failed and the first that worked, also in one batch;
* :func:`accuracy_vs_epsilon` -- the fraction of digits still right at each ε, batched.

Each function runs the model through :func:`convnets.inference.inference` (eval mode, every module's own mode
handed back afterwards), and takes gradients with respect to the input only: no parameter's ``.grad`` is touched.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .inference import float_pixels, inference, model_device

METHODS = ("fgsm", "pgd")
EPS_MAX = 0.5  # the search gives up above this ε: at 0.5 every pixel may go half-way to the other extreme
FGSM_GRID = (50, 20)  # coarse ε values up to EPS_MAX (0.01 apart), then fine ones in the bracket: resolution 0.0005
PGD_GRID = (25, 20)  # 0.02 apart, then 20 in the bracket: resolution 0.001
PGD_STEPS = 10  # steps per ε for one image
CURVE_STEPS = 5  # PGD steps per ε for accuracy_vs_epsilon (warm-started from the previous ε's iterate)
STEP_FACTOR = 2.5  # PGD step size α = STEP_FACTOR * ε / steps (Madry et al. 2018)
CURVE_EPSILONS = (0.0, 0.02, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3)
BLANK = 0.05  # an image whose brightest pixel is below this has no ink: there is no answer worth changing


@dataclass(frozen=True)
class AdversarialExample:
    """The smallest perturbation found that changes one image's answer (``epsilon`` None: none up to ``eps_max``)."""

    method: str  # "fgsm" or "pgd"
    target: int | None  # the class asked for; None: any class but the original answer
    original: np.ndarray  # (28, 28) the image attacked
    original_class: int
    original_probability: float  # softmax of the scores at the original class
    epsilon: float | None  # smallest ε on the search grid that changes the answer (L∞, pixel units of [0, 1])
    resolution: float  # the search grid's spacing just below ``epsilon``: ε - resolution did not change the answer
    adversarial: np.ndarray | None  # (28, 28) the perturbed image, in [0, 1]
    new_class: int | None
    new_probability: float | None  # softmax of the adversarial image's scores at ``new_class``
    eps_max: float
    steps: int  # gradient steps per ε: 1 for FGSM
    note: str  # one line: the method's settings

    @property
    def found(self) -> bool:
        return self.epsilon is not None

    @property
    def perturbation(self) -> np.ndarray | None:
        """adversarial - original, (28, 28): within ±ε everywhere (less where clipping to [0, 1] cut it)."""
        return None if self.adversarial is None else self.adversarial - self.original


# --------------------------------------------------------------------------- plumbing


def _as_images(model: nn.Module, images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Digits (28, 28), (N, 28, 28) or (N, 1, 28, 28), uint8 or float in [0, 1], as float (N, 1, 28, 28) on the model's device."""
    x = float_pixels(images)
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1:] != (1, 28, 28):
        raise ValueError(f"expected digits (28, 28), (N, 28, 28) or (N, 1, 28, 28); got {tuple(x.shape)}")
    return x.clamp(0, 1).to(model_device(model))


def _class(value: int | None, classes: int, what: str = "target") -> int | None:
    if value is None:
        return None
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"the {what} class must be a whole number 0-{classes - 1}, got {value!r}") from None
    if not 0 <= value < classes:
        raise ValueError(f"class {value} does not exist: this model has {classes} classes (0-{classes - 1})")
    return value


def _epsilons(epsilons: float | Sequence[float] | np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    eps = torch.as_tensor(epsilons, dtype=torch.float32).reshape(-1).to(device)
    if not torch.isfinite(eps).all() or (eps < 0).any():
        raise ValueError("ε must be finite and ≥ 0 (pixel units of [0, 1] images)")
    return eps


def _changed(scores: torch.Tensor, classes: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Per row: has the answer changed -- to ``classes`` (targeted), or away from ``classes`` (untargeted)?"""
    answer = scores.argmax(dim=1)
    return answer == classes if targeted else answer != classes


def _margin(scores: torch.Tensor, classes: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Per row, what the attack raises: untargeted, the best other class's score minus the score of ``classes``;
    targeted, the score of ``classes`` (the target) minus the best other's. Positive: the answer has changed."""
    scores = scores.float()
    own = scores.gather(1, classes.view(-1, 1)).squeeze(1)
    others = scores.scatter(1, classes.view(-1, 1), float("-inf")).amax(dim=1)
    return own - others if targeted else others - own


def _signed_gradient(model: nn.Module, x: torch.Tensor, classes: torch.Tensor, targeted: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(sign of the gradient of :func:`_margin` with respect to the pixels, ±1 or 0 per pixel; the scores)."""
    x = x.detach().requires_grad_(True)
    scores = model(x)
    (grad,) = torch.autograd.grad(_margin(scores, classes, targeted).sum(), x)
    return grad.sign(), scores.detach()


def _pgd_rows(model: nn.Module, x: torch.Tensor, classes: torch.Tensor, eps: torch.Tensor, targeted: bool, steps: int,
              start: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD on every row of ``x`` with its own ε (``eps`` (N,)): (the final or first successful iterate, success per row).

    A row whose answer has changed stops there (so the iterate returned is one that works); the others take ``steps``
    steps. Only the rows still going are run through the model.
    """
    radius = eps.view(-1, 1, 1, 1)
    alpha = STEP_FACTOR * radius / max(steps, 1)
    low, high = (x - radius).clamp(0, 1), (x + radius).clamp(0, 1)
    adv = (x if start is None else torch.max(torch.min(start, high), low)).clone()
    done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for step in range(steps + 1):
        active = (~done).nonzero().squeeze(1)
        if not len(active):
            break
        if step == steps:  # the last iterate: only its answer is needed
            with torch.no_grad():
                done[active] = _changed(model(adv[active]), classes[active], targeted)
            break
        direction, scores = _signed_gradient(model, adv[active], classes[active], targeted)
        hit = _changed(scores, classes[active], targeted)
        done[active] = hit
        moved = adv[active] + alpha[active] * direction
        moved = torch.max(torch.min(moved, high[active]), low[active])
        adv[active] = torch.where(hit.view(-1, 1, 1, 1), adv[active], moved)
    return adv, done


# --------------------------------------------------------------------------- one image, given ε


def fgsm(model: nn.Module, image: torch.Tensor | np.ndarray, epsilons: float | Sequence[float],
         target: int | None = None) -> torch.Tensor:
    """FGSM copies of one image, one per ε: (G, 1, 28, 28) in [0, 1], from ONE gradient.

    x + ε·sign(∇ margin): untargeted (``target`` None), the best other class's score minus the score of the model's
    answer for x; targeted, the target's score minus the best other's. ε = 0 returns the image itself.
    """
    x = _as_images(model, image)[:1]
    eps = _epsilons(epsilons, x.device)
    with inference(model, grad=True):
        scores = model(x).detach()
        target = _class(target, scores.shape[1])
        classes = scores.argmax(dim=1) if target is None else torch.tensor([target], device=x.device)
        direction, _ = _signed_gradient(model, x, classes, target is not None)
    return (x + eps.view(-1, 1, 1, 1) * direction).clamp(0, 1)


def pgd(model: nn.Module, image: torch.Tensor | np.ndarray, epsilons: float | Sequence[float], target: int | None = None,
        steps: int = PGD_STEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD copies of one image, one per ε, as one batch: ((G, 1, 28, 28) in [0, 1], whether each changed the answer).

    ``steps`` steps of α = 2.5·ε / steps from the image itself, each projected onto the ε-ball and [0, 1]; a copy
    stops at its first iterate whose answer has changed (to ``target`` when given, else to any other class).
    """
    x = _as_images(model, image)[:1]
    eps = _epsilons(epsilons, x.device)
    with inference(model, grad=True):
        with torch.no_grad():
            scores = model(x)
        target = _class(target, scores.shape[1])
        label = scores.argmax(dim=1) if target is None else torch.tensor([target], device=x.device)
        return _pgd_rows(model, x.expand(len(eps), -1, -1, -1), label.expand(len(eps)), eps, target is not None, steps)


# --------------------------------------------------------------------------- the smallest ε


def _search(attack: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], eps_max: float, grid: tuple[int, ...],
            device: torch.device) -> tuple[float, float, torch.Tensor] | None:
    """(smallest ε that works, the grid spacing below it, the image) or None. Stage 1 tries ``grid[0]`` ε values evenly
    spaced up to ``eps_max`` in one batch; each later stage tries ``grid[k]`` values evenly spaced in the bracket
    between the last ε that failed and the first that worked, also in one batch."""
    low, high, best = 0.0, eps_max, None
    for count in grid:
        values = low + (high - low) * torch.arange(1, count + 1, device=device, dtype=torch.float32) / count
        images, worked = attack(values)
        if not worked.any():  # the top value is one that worked before; only rounding can get here after stage 1
            break
        k = int(worked.nonzero()[0])
        low, high, best = (float(values[k - 1]) if k else low), float(values[k]), images[k]
    if best is None:
        return None
    return high, high - low, best


def smallest_perturbation(model: nn.Module, image: torch.Tensor | np.ndarray, method: str = "fgsm",
                          target: int | None = None, eps_max: float = EPS_MAX, steps: int = PGD_STEPS) -> AdversarialExample:
    """The smallest ε at which ``method`` ("fgsm" or "pgd") changes the model's answer for one image (28x28 in [0, 1]).

    ``target`` None: to any other class; else to that class, which must differ from the current answer. The search
    tries a coarse grid of ε (FGSM: 50 values 0.01 apart up to ``eps_max``; PGD: 25 values 0.02 apart) in one batch,
    then 20 values between the last ε that failed and the first that worked: ``epsilon`` is the smallest of those that
    works, ``resolution`` their spacing, so ε - resolution did not change the answer. Raises ``ValueError`` for a
    blank image, an unknown method or class, or a target equal to the current answer.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method '{method}'; choose {' or '.join(METHODS)}")
    x = _as_images(model, image)[:1]
    if float(x.max()) < BLANK:
        raise ValueError("the image is blank: there is no answer to change; draw or pick a digit first")
    with inference(model, grad=True):
        with torch.no_grad():
            probabilities = torch.softmax(model(x).double(), dim=1)[0]
        original = int(probabilities.argmax())
        target = _class(target, len(probabilities))
        if target == original:
            raise ValueError(f"the model already answers {target} for this image: pick another class, or any class")
        found = _find(model, x, method, original, target, eps_max, steps)
        if found is None:
            adversarial, epsilon, resolution, new_class, new_probability = None, None, 0.0, None, None
        else:
            epsilon, resolution, adv = found
            with torch.no_grad():
                new = torch.softmax(model(adv[None]).double(), dim=1)[0]
            adversarial, new_class = adv[0].cpu().numpy(), int(new.argmax())
            new_probability = float(new[new_class])
    note = describe(method, target is not None, steps)
    return AdversarialExample(method, target, x[0, 0].cpu().numpy(), original, float(probabilities[original]), epsilon,
                              resolution, adversarial, new_class, new_probability, eps_max, 1 if method == "fgsm" else steps,
                              note)


def describe(method: str, targeted: bool = False, steps: int = PGD_STEPS) -> str:
    """One line on a method's settings, e.g. 'PGD: 10 steps of α = 2.5·ε/10 from the image, L∞ ball, no random start'."""
    if method == "fgsm":
        return ("FGSM: one gradient, x + ε·sign(∇ (" + ("target's score - best other's" if targeted else
                "best other's score - the answer's") + ")), clipped to [0, 1]")
    return (f"PGD: {steps} steps of α = {STEP_FACTOR:g}·ε/{steps} up the same score margin from the image, each projected "
            "onto the L∞ ball of radius ε and [0, 1]; no random start")


def _find(model: nn.Module, x: torch.Tensor, method: str, original: int, target: int | None, eps_max: float,
          steps: int) -> tuple[float, float, torch.Tensor] | None:
    targeted = target is not None
    classes = torch.tensor([original if target is None else target], device=x.device)
    if method == "fgsm":
        direction, _ = _signed_gradient(model, x, classes, targeted)

        def attack(eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            images = (x + eps.view(-1, 1, 1, 1) * direction).clamp(0, 1)
            with torch.no_grad():
                return images, _changed(model(images), classes.expand(len(eps)), targeted)
    else:
        def attack(eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return _pgd_rows(model, x.expand(len(eps), -1, -1, -1), classes.expand(len(eps)), eps, targeted, steps)
    return _search(attack, eps_max, FGSM_GRID if method == "fgsm" else PGD_GRID, x.device)


# --------------------------------------------------------------------------- a test set


def accuracy_vs_epsilon(model: nn.Module, images: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
                        epsilons: Sequence[float] = CURVE_EPSILONS, method: str = "fgsm", steps: int = CURVE_STEPS,
                        batch_size: int = 1000) -> np.ndarray:
    """Accuracy (fraction right, one per ε) of ``model`` on digits attacked by ``method`` at each ε (ascending, ≥ 0).

    Untargeted, against the true labels. A digit counts as wrong at ε once any image the attack tried within the
    ε-ball was misclassified: the clean digit itself, the FGSM image, or any PGD iterate -- at this ε or a smaller one
    of the list (that image lies in this ball too). So ε = 0 gives the clean accuracy and the curve never rises.
    PGD at each ε starts from where the previous ε's run ended and takes ``steps`` steps of α = 2.5·ε / steps. Only
    the digits still right are attacked, ``batch_size`` at a time.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method '{method}'; choose {' or '.join(METHODS)}")
    x = _as_images(model, images)
    y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).long().to(x.device)
    eps = _epsilons(epsilons, x.device)
    if len(y) != len(x) or not len(x):
        raise ValueError(f"expected one label per digit and at least one digit; got {len(x)} digits, {len(y)} labels")
    if (eps[1:] < eps[:-1]).any():
        raise ValueError("list the ε values in ascending order")
    right = torch.zeros(len(eps), dtype=torch.long)
    with inference(model, grad=True):
        for start in range(0, len(x), batch_size):
            right += _right_per_epsilon(model, x[start:start + batch_size], y[start:start + batch_size], eps, method, steps)
    return (right.double() / len(x)).numpy()


def epsilon_at(epsilons: Sequence[float], accuracy: Sequence[float], fraction: float = 0.5) -> float | None:
    """The ε at which an accuracy curve first falls to ``fraction`` of its clean (first) value, interpolated linearly
    between the listed ε; None when it never does."""
    eps, acc = np.asarray(epsilons, dtype=np.float64), np.asarray(accuracy, dtype=np.float64)
    line = fraction * acc[0]
    below = np.flatnonzero(acc <= line)
    if not len(below) or acc[0] <= 0:
        return None
    k = int(below[0])
    if k == 0:
        return float(eps[0])
    return float(eps[k - 1] + (eps[k] - eps[k - 1]) * (acc[k - 1] - line) / (acc[k - 1] - acc[k]))


def _right_per_epsilon(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, method: str,
                       steps: int) -> torch.Tensor:
    """How many of the digits ``x`` survive the attack at each ε (cumulatively, see :func:`accuracy_vs_epsilon`)."""
    with torch.no_grad():
        alive = model(x).argmax(dim=1) == y
    current = x.clone()  # PGD's warm start: each digit's last iterate
    direction = _signed_gradient(model, x, y, False)[0] if method == "fgsm" else None  # FGSM's: the same for every ε
    right = []
    for value in eps.tolist():
        rows = alive.nonzero().squeeze(1)
        if value > 0 and len(rows):
            radius = torch.full((len(rows),), value, device=x.device)
            if direction is not None:
                with torch.no_grad():
                    fooled = _changed(model((x[rows] + value * direction[rows]).clamp(0, 1)), y[rows], False)
            else:
                current[rows], fooled = _pgd_rows(model, x[rows], y[rows], radius, False, steps, start=current[rows])
            alive[rows[fooled]] = False
        right.append(int(alive.sum()))
    return torch.tensor(right)
