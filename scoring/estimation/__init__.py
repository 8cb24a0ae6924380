"""Model quality before the labels arrive: KPIs estimated per window from the scores alone.

Binary models: confidence-based performance estimation from the bundle's calibrator
(``binary``, ``soft_auc``); multiclass models: the same from one calibrator per class
(``multiclass``: accuracy, macro F1, macro one-vs-rest AUC); regression models: direct
loss estimation from its loss models. ``PerformanceEstimator`` is the window-level entry
point; ``partial`` holds mergeable per-partition state; ``check`` compares an estimate with realized KPIs.
The method assumes the model's conditional probabilities P(y | x) still hold: it
follows covariate shift, not concept drift (docs/estimation.md).
"""

from scoring.estimation.check import check_estimate, with_realized
from scoring.estimation.estimator import BAND_Z, PerformanceEstimator
from scoring.estimation.partial import BinaryPartial, RegressionPartial

__all__ = [
    "BAND_Z",
    "BinaryPartial",
    "PerformanceEstimator",
    "RegressionPartial",
    "check_estimate",
    "with_realized",
]
