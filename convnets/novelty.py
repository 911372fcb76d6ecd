"""Not a digit: a rule, calibrated on real digits, that says when an input does not look like a digit at all.

A classifier always names a digit -- a dot drawn on the canvas comes out as "0, 100 %" from both shipped models, since
the MNIST recipe blows the dot up into a filled disc. The rule rejects an input when any of these is outside the range
of real digits (each bound a percentile over calibration digits, e.g. the evaluation digits):

* **ink** -- the mean pixel value: a blank or a tiny dot has too little, a filled blob, a flat or noisy picture too much;
* **background** -- the share of pixels under ``BACKGROUND_LEVEL``: an MNIST digit is ink on a mostly black field, a
  flat or textured picture has none;
* for each model given, how unlike a digit the model finds it (:func:`oddness`): for a faithful LeNet-5 (RBF head)
  the winner's RBF distance -- how far F6's output is from the nearest digit bitmap, the paper's own rejection
  signal; for a softmax model, 1 - its confidence.

The input checks use the ``image_percentile``-th percentile and its mirror (by default the extremes: no calibration
digit fails them), the model checks the ``model_percentile``-th (by default 99.5); :attr:`NoveltyRule.accepted` is the
share of the calibration digits the whole rule accepts.

Pure numpy; the scores come from whoever ran the models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

BACKGROUND_LEVEL = 0.1  # a pixel below this is background (MNIST's are mostly exactly 0)
MODEL_PERCENTILE = 99.5  # of the calibration digits' oddness: the line above which a model check rejects
IMAGE_PERCENTILE = 100.0  # ink and background bounds: the extremes of the calibration digits (free of false rejections
# there; at the 0.1th / 99.9th percentiles the rule accepted 98.5 % instead of 99.0 % of 4,000 further digits)

Scores = Mapping[str, tuple[np.ndarray, bool]]  # model name -> (class scores (N, 10), True for an RBF head)


def as_images(images: np.ndarray) -> np.ndarray:
    """(28, 28) or (N, 28, 28) or (N, 1, 28, 28), uint8 (ink = 255) or float in [0, 1], as float32 (N, 28, 28)."""
    array = np.asarray(images)
    scale = 255.0 if array.dtype == np.uint8 else 1.0
    array = array.astype(np.float32) / scale
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"expected digits (28, 28), (N, 28, 28) or (N, 1, 28, 28); got {np.shape(images)}")
    return array


def ink(images: np.ndarray) -> np.ndarray:
    """The mean pixel value of each image (ink = 1): (N,)."""
    return as_images(images).mean(axis=(1, 2))


def background(images: np.ndarray) -> np.ndarray:
    """The share of each image's pixels under ``BACKGROUND_LEVEL``: (N,)."""
    return (as_images(images) < BACKGROUND_LEVEL).mean(axis=(1, 2))


def oddness(scores: np.ndarray, rbf: bool) -> np.ndarray:
    """How unlike a digit each image looks to a model: the winner's RBF distance (``rbf``: scores are negated
    distances), else 1 - softmax confidence. Higher = odder. The measure of the "Unusual patterns" page."""
    scores = np.asarray(scores, dtype=np.float64)
    if rbf:
        return -scores.max(axis=1)
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return 1.0 - 1.0 / shifted.sum(axis=1)


@dataclass(frozen=True)
class Check:
    """One bound of the rule: a measure of the image (``model`` None) or of a model's answer, and its accepted range."""

    measure: str  # "ink", "background" or "oddness"
    model: str | None  # whose scores, for "oddness"
    rbf: bool  # the model's head is RBF distances (oddness = winner's distance), else softmax (1 - confidence)
    low: float | None  # accepted when low <= value <= high
    high: float | None
    percentile: float  # where the bound sits among the calibration digits

    def values(self, images: np.ndarray, scores: Scores) -> np.ndarray:
        if self.measure == "ink":
            return ink(images)
        if self.measure == "background":
            return background(images)
        if self.model not in scores:
            raise ValueError(f"the rule needs {self.model}'s scores for these images")
        model_scores, rbf = scores[self.model]
        return oddness(model_scores, rbf)

    def fails(self, values: np.ndarray) -> np.ndarray:
        low = values < self.low if self.low is not None else np.zeros(len(values), dtype=bool)
        return low | (values > self.high if self.high is not None else False)

    def name(self) -> str:
        if self.measure == "oddness":
            return f"{self.model}'s {'winner RBF distance' if self.rbf else 'confidence'}"
        return {"ink": "ink (mean pixel value)", "background": f"background (share of pixels under {BACKGROUND_LEVEL:g})"}[
            self.measure]

    def bound(self) -> str:
        """The accepted range in words, e.g. 'at most 19.42 (the 99.5th percentile)'."""
        low, high = _rank(100 - self.percentile, "smallest"), _rank(self.percentile, "largest")
        if self.measure == "oddness" and not self.rbf:
            return f"at least {1 - self.high:.2%} ({low})"
        if self.low is not None and self.high is not None:
            return f"between {self.low:.3f} ({low}) and {self.high:.3f} ({high})"
        if self.low is not None:
            return f"at least {self.low:.3f} ({low})"
        return f"at most {self.high:.2f} ({high})"

    def why(self, value: float) -> str:
        """Why one value fails, e.g. "lenet5's winner RBF distance 56.9 is over 19.42"."""
        if self.measure == "oddness" and not self.rbf:
            return f"{self.name()} {1 - value:.1%} is under {1 - self.high:.1%}"
        if self.low is not None and value < self.low:
            return f"{self.name()} {value:.3f} is under {self.low:.3f}"
        digits = 2 if self.measure == "oddness" else 3
        return f"{self.name()} {value:.{digits}f} is over {self.high:.{digits}f}"


def _rank(percentile: float, extreme: str) -> str:
    """'the 99.5th percentile', or 'the largest' / 'the smallest' at 100 / 0."""
    if percentile in (0, 100):
        return f"the {extreme}"
    return f"the {percentile:g}th percentile"


@dataclass(frozen=True)
class Verdict:
    """One image: does it look like a digit, and if not, every check it failed."""

    digit: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class NoveltyRule:
    """The checks, what they were calibrated on, and the share of those digits the rule accepts."""

    checks: tuple[Check, ...]
    calibrated_on: str  # e.g. 'the 1,000 held-out digits of ...'
    accepted: float  # fraction of the calibration digits that pass every check

    def verdicts(self, images: np.ndarray, scores: Scores) -> list[Verdict]:
        """A :class:`Verdict` per image; ``scores`` holds each checked model's scores for the same images."""
        failures = [(check, check.values(images, scores)) for check in self.checks]
        failed = [(check, values, check.fails(values)) for check, values in failures]
        count = len(failures[0][1]) if failures else len(as_images(images))
        return [Verdict(not any(f[i] for _, _, f in failed), tuple(c.why(float(v[i])) for c, v, f in failed if f[i]))
                for i in range(count)]

    def accepts(self, images: np.ndarray, scores: Scores) -> np.ndarray:
        """True per image that passes every check: (N,) bool."""
        passed = np.ones(len(as_images(images)), dtype=bool)
        for check in self.checks:
            passed &= ~check.fails(check.values(images, scores))
        return passed

    def describe(self) -> list[str]:
        """One line per check: its measure and accepted range."""
        return [f"{check.name()}: {check.bound()}" for check in self.checks]


def calibrate(images: np.ndarray, scores: Scores, description: str, model_percentile: float = MODEL_PERCENTILE,
              image_percentile: float = IMAGE_PERCENTILE) -> NoveltyRule:
    """The rule whose bounds are percentiles over the calibration ``images`` (real digits) and the ``scores`` each model
    gave them: ink between the (100 - p)th and pth percentiles and background at least the (100 - p)th, p =
    ``image_percentile``; each model's :func:`oddness` at most its ``model_percentile``-th percentile."""
    if not 50 < model_percentile <= 100 or not 50 < image_percentile <= 100:
        raise ValueError("percentiles must lie in (50, 100]")
    amount, field = ink(images), background(images)
    checks = [Check("ink", None, False, float(np.percentile(amount, 100 - image_percentile)),
                    float(np.percentile(amount, image_percentile)), image_percentile),
              Check("background", None, False, float(np.percentile(field, 100 - image_percentile)), None, image_percentile)]
    for name, (model_scores, rbf) in scores.items():
        if len(model_scores) != len(amount):
            raise ValueError(f"{name}: {len(model_scores)} rows of scores for {len(amount)} images")
        checks.append(Check("oddness", name, bool(rbf), None, float(np.percentile(oddness(model_scores, rbf), model_percentile)),
                            model_percentile))
    rule = NoveltyRule(tuple(checks), description, 0.0)
    return replace(rule, accepted=float(rule.accepts(images, scores).mean()))
