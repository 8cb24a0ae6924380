"""Isotonic calibration of a binary model's scores, fitted on the training holdout.

The calibrator maps a score to the probability that the label is 1. It is the
isotonic (non-decreasing, least-squares) fit of the holdout labels on the holdout
scores (scipy's ``isotonic_regression``, pool-adjacent-violators), kept as knots:
the two ends of every constant step of the fit. Between knots it interpolates
linearly, outside them it holds the end values, so it is monotone by construction
and continuous; the knots round-trip exactly through JSON (``calibration.json`` in
the bundle).

The reliability curve "before" bins the raw scores of the holdout; "after" bins
calibrated probabilities that are out of fold (two halves of the holdout, each
calibrated by a fit on the other), so it does not flatter the calibrator with its
own training rows. The stored calibrator is fitted on the whole holdout.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.optimize import isotonic_regression

from schemas.messages import FiniteFloat

CALIBRATION_BINS = 10
MIN_ROWS = 50  # fewer holdout rows than this (or fewer than MIN_PER_CLASS of a class): no calibrator
MIN_PER_CLASS = 5


class ReliabilityBin(BaseModel):
    """One bin of a reliability curve: predicted against observed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lower: FiniteFloat
    upper: FiniteFloat
    count: int = Field(ge=1)
    mean_predicted: FiniteFloat
    observed_rate: FiniteFloat


class ReliabilityCurve(BaseModel):
    """Equal-width bins over [0, 1] (empty bins left out) and the expected calibration error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bins: list[ReliabilityBin]
    ece: FiniteFloat = Field(description="sum over bins of count share x |mean predicted - observed|")


class Calibration(BaseModel):
    """The fitted calibrator (knots), with its holdout and reliability curves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = "isotonic"
    knots_score: list[FiniteFloat] = Field(min_length=1, description="strictly increasing")
    knots_probability: list[FiniteFloat] = Field(min_length=1, description="non-decreasing, in [0, 1]")
    holdout_rows: int
    holdout_positives: int
    before: ReliabilityCurve
    after: ReliabilityCurve = Field(description="out of fold: two halves, each calibrated on the other")

    @model_validator(mode="after")
    def _monotone(self) -> Calibration:
        x = np.asarray(self.knots_score, dtype=np.float64)
        y = np.asarray(self.knots_probability, dtype=np.float64)
        if x.shape != y.shape:
            raise ValueError("knots_score and knots_probability differ in length")
        if np.any(np.diff(x) <= 0):
            raise ValueError("knots_score must be strictly increasing")
        if np.any(np.diff(y) < 0) or y[0] < 0 or y[-1] > 1:
            raise ValueError("knots_probability must be non-decreasing within [0, 1]")
        return self

    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of raw scores (vectorised; monotone in the score)."""
        return np.interp(
            np.asarray(scores, dtype=np.float64),
            np.asarray(self.knots_score, dtype=np.float64),
            np.asarray(self.knots_probability, dtype=np.float64),
        )

    def summary(self) -> dict[str, float | int | str]:
        """What the manifest records about this calibrator."""
        return {
            "kind": "calibration",
            "method": self.method,
            "knots": len(self.knots_score),
            "holdout_rows": self.holdout_rows,
            "ece_before": round(self.before.ece, 6),
            "ece_after": round(self.after.ece, 6),
        }


def fit_isotonic(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots (score, probability) of the isotonic fit of ``labels`` on ``scores``.

    Equal scores are pooled first (their mean label, weighted by their count), so a
    score maps to one probability; only the two ends of each constant step are kept.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    order = np.argsort(scores, kind="mergesort")
    unique, starts, counts = np.unique(scores[order], return_index=True, return_counts=True)
    means = np.add.reduceat(labels[order], starts) / counts
    fitted = isotonic_regression(means, weights=counts.astype(np.float64), increasing=True).x
    fitted = np.maximum.accumulate(np.clip(fitted, 0.0, 1.0))  # guards float rounding only
    keep = np.ones(len(unique), dtype=bool)
    keep[1:-1] = (fitted[1:-1] != fitted[:-2]) | (fitted[1:-1] != fitted[2:])
    return unique[keep], fitted[keep]


def reliability(predicted: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> ReliabilityCurve:
    """Binned reliability curve of probabilities against 0/1 labels."""
    predicted = np.clip(np.asarray(predicted, dtype=np.float64), 0.0, 1.0)
    labels = np.asarray(labels, dtype=np.float64)
    index = np.minimum((predicted * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    sum_predicted = np.bincount(index, weights=predicted, minlength=bins)
    sum_observed = np.bincount(index, weights=labels, minlength=bins)
    out, ece = [], 0.0
    for b in np.flatnonzero(counts):
        mean_predicted = sum_predicted[b] / counts[b]
        observed = sum_observed[b] / counts[b]
        ece += counts[b] / len(predicted) * abs(mean_predicted - observed)
        out.append(
            ReliabilityBin(
                lower=b / bins,
                upper=(b + 1) / bins,
                count=int(counts[b]),
                mean_predicted=float(mean_predicted),
                observed_rate=float(observed),
            )
        )
    return ReliabilityCurve(bins=out, ece=float(ece))


def cannot_calibrate(labels: np.ndarray) -> str | None:
    """Why a holdout with these labels cannot fit a calibrator, or None when it can."""
    labels = np.asarray(labels, dtype=np.float64)
    positives = int(labels.sum())
    if len(labels) < MIN_ROWS:
        return f"a holdout of {len(labels)} rows (needs {MIN_ROWS})"
    if min(positives, len(labels) - positives) < MIN_PER_CLASS:
        return f"a holdout with {positives} positives of {len(labels)} (needs {MIN_PER_CLASS} of each class)"
    return None


def fit_calibration(scores: np.ndarray, labels: np.ndarray, seed: int = 0) -> Calibration | None:
    """A binary model's calibrator from its holdout scores and labels; None if the holdout is too thin."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if cannot_calibrate(labels) is not None:
        return None
    knots_score, knots_probability = fit_isotonic(scores, labels)
    return Calibration(
        knots_score=knots_score.tolist(),
        knots_probability=knots_probability.tolist(),
        holdout_rows=len(labels),
        holdout_positives=int(labels.sum()),
        before=reliability(scores, labels),
        after=reliability(_out_of_fold(scores, labels, seed), labels),
    )


def _out_of_fold(scores: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """Each half of the rows calibrated by the isotonic fit on the other half."""
    half = np.zeros(len(scores), dtype=bool)
    half[np.random.default_rng(seed).permutation(len(scores))[: len(scores) // 2]] = True
    out = np.empty(len(scores), dtype=np.float64)
    for target in (half, ~half):
        x, y = fit_isotonic(scores[~target], labels[~target])
        out[target] = np.interp(scores[target], x, y)
    return out


class ClassCalibration(BaseModel):
    """A multiclass model's calibrators: one per class, one-vs-rest, each fitted on the holdout as a
    binary model's (the class's probability against "the label is this class").

    ``calibrate`` maps a row of K class probabilities to K calibrated ones, each class's through its
    own calibrator, then scaled to sum to 1 (as NannyML's multiclass CBPE does): the chances of one
    event's K labels, which the estimate of accuracy and of each class's counts needs to be coherent.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = "isotonic_one_vs_rest"
    classes: list[str] = Field(min_length=2, description="class names as text, in the model's order")
    calibrations: list[Calibration] = Field(min_length=2, description="one per class, in the same order")

    @model_validator(mode="after")
    def _one_per_class(self) -> ClassCalibration:
        if len(self.classes) != len(self.calibrations):
            raise ValueError(f"{len(self.calibrations)} calibrators for {len(self.classes)} classes")
        if len({c.holdout_rows for c in self.calibrations}) != 1:
            raise ValueError("the calibrators were fitted on holdouts of different sizes")
        return self

    @property
    def holdout_rows(self) -> int:
        return self.calibrations[0].holdout_rows

    def calibrate(self, probabilities: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of the model's (both events x classes), rows summing to 1."""
        p = np.asarray(probabilities, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != len(self.calibrations):
            raise ValueError(f"probabilities of shape {p.shape} for {len(self.calibrations)} classes")
        out = np.column_stack([c.calibrate(p[:, k]) for k, c in enumerate(self.calibrations)])
        total = out.sum(axis=1, keepdims=True)
        # a row every calibrator sends to 0 (scores below every class's first step): the model's own
        fallback = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)
        return np.where(total > 0, out / np.where(total > 0, total, 1.0), fallback)

    def summary(self) -> dict[str, float | int | str]:
        """What the manifest records about these calibrators."""
        return {
            "kind": "class_calibration",
            "method": self.method,
            "classes": len(self.classes),
            "holdout_rows": self.holdout_rows,
            "ece_before": round(max(c.before.ece for c in self.calibrations), 6),
            "ece_after": round(max(c.after.ece for c in self.calibrations), 6),
        }


def fit_class_calibration(
    probabilities: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], seed: int = 0
) -> ClassCalibration | None:
    """A multiclass model's calibrators from its holdout probabilities (n x K) and class indices (n);
    None when the holdout is too thin for some class (fewer than ``MIN_PER_CLASS`` of it, or of the rest)."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    fitted = [fit_calibration(p[:, k], (y == k).astype(np.float64), seed) for k in range(len(classes))]
    if any(c is None for c in fitted):
        return None
    return ClassCalibration(classes=list(classes), calibrations=fitted)
