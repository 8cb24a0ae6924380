"""Expected confusion matrix of a binary model from calibrated probabilities, and its KPIs.

Confidence-based performance estimation: if the calibrated probability ``p_i`` is
the chance that event ``i``'s label is 1, the model's decision (score >= threshold)
is right with probability ``p_i`` when it says positive and ``1 - p_i`` when it says
negative. Summing gives the expected confusion matrix: TP = sum of p over predicted
positives, FP = sum of (1 - p) over them, FN and TN likewise over predicted negatives.

Accuracy and precision are then exact expectations (their denominators, n and the
count of predicted positives, do not depend on the labels). Recall and F1 are
ratios of expectations (E[TP] / E[TP + FN], ...), not expectations of the ratio;
the difference is O(1/n).

Uncertainty, analytic: the standard deviation of the realized KPI when each label
is an independent Bernoulli(p_i). Accuracy and precision: exact (Poisson-binomial);
recall and F1: first-order delta method in the realized TP and FN, which are
independent sums with variances sum p(1 - p) over predicted positives and negatives.
Every sum here is additive over events, so per-partition parts merge by addition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np


class Estimated(NamedTuple):
    """One KPI estimate and its standard deviation (None where the window cannot define it)."""

    metric: str
    value: float | None
    std: float | None
    approximation_error: float | None = None


@dataclass(frozen=True)
class ConfusionSums:
    """Additive sums over events: the expected confusion matrix and the label variances behind it."""

    n: float = 0.0
    predicted_positive: float = 0.0
    tp: float = 0.0
    fp: float = 0.0
    fn: float = 0.0
    tn: float = 0.0
    var_positive: float = 0.0  # sum of p(1 - p) over predicted positives: Var(realized TP)
    var_negative: float = 0.0  # the same over predicted negatives: Var(realized FN)

    def __add__(self, other: ConfusionSums) -> ConfusionSums:
        return ConfusionSums(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def confusion_sums(probabilities: np.ndarray, predicted: np.ndarray) -> ConfusionSums:
    """The sums of one batch: ``probabilities`` calibrated, ``predicted`` the model's class decisions."""
    p = np.asarray(probabilities, dtype=np.float64)
    positive = np.asarray(predicted, dtype=bool)
    variance = p * (1.0 - p)
    tp = float(p[positive].sum())
    fn = float(p[~positive].sum())
    n_positive = int(positive.sum())
    return ConfusionSums(
        n=float(len(p)),
        predicted_positive=float(n_positive),
        tp=tp,
        fp=n_positive - tp,
        fn=fn,
        tn=(len(p) - n_positive) - fn,
        var_positive=float(variance[positive].sum()),
        var_negative=float(variance[~positive].sum()),
    )


def confusion_metrics(c: ConfusionSums) -> list[Estimated]:
    """Estimated accuracy, precision, recall and F1 with their analytic standard deviations."""
    out = [Estimated("accuracy", *_ratio((c.tp + c.tn), c.n, c.var_positive + c.var_negative))]
    out.append(Estimated("precision", *_ratio(c.tp, c.predicted_positive, c.var_positive)))
    positives = c.tp + c.fn
    if positives > 0:
        recall = c.tp / positives
        var = (c.fn**2 * c.var_positive + c.tp**2 * c.var_negative) / positives**4
        out.append(Estimated("recall", recall, math.sqrt(var)))
    else:
        out.append(Estimated("recall", None, None))
    denominator = c.predicted_positive + c.tp + c.fn  # 2 TP + FP + FN, as FP = predicted positives - TP
    if denominator > 0:
        f1 = 2 * c.tp / denominator
        d_tp = 2 * (c.predicted_positive + c.fn) / denominator**2
        d_fn = -2 * c.tp / denominator**2
        out.append(Estimated("f1", f1, math.sqrt(d_tp**2 * c.var_positive + d_fn**2 * c.var_negative)))
    else:
        out.append(Estimated("f1", None, None))
    return out


def _ratio(numerator: float, denominator: float, variance: float) -> tuple[float | None, float | None]:
    """A mean over a fixed number of events: value and std (Poisson-binomial)."""
    if denominator <= 0:
        return None, None
    return numerator / denominator, math.sqrt(max(variance, 0.0)) / denominator
