"""Accuracy, macro F1 and macro one-vs-rest AUC of a multiclass model estimated without labels.

Confidence-based performance estimation for K classes (NannyML's multiclass CBPE): each
class's probability is calibrated one-vs-rest on the holdout (``ClassCalibration``), so
that ``c_ik``, row ``i`` scaled to sum to 1, is the chance that event ``i``'s label is class
``k``. The model predicts ``d_i``, its most probable class (the first of equals, as served).
With labels drawn independently from the rows ``c_i``:

- accuracy: the expected share of events whose label is ``d_i``, mean of ``c_{i,d_i}``; its std
  is exact (Poisson-binomial);
- per class ``k``: TP_k = sum of ``c_ik`` over events predicted ``k``, FN_k = the same over the
  others, FP_k = (events predicted ``k``) - TP_k; F1_k = 2 TP_k / (2 TP_k + FP_k + FN_k), a ratio
  of expectations as for a binary model; macro F1 the mean over the classes predicted or
  expected (scikit-learn's macro F1 averages over classes present in labels or predictions).
  Its std: first-order delta method in the realized TP_k and FN_k of every class, which are
  sums over independent events of one categorical label each, so the variance of the
  linearisation is exact: per event, the variance of the coefficient its label picks;
- macro OvR AUC: the mean over classes of the soft-label AUC of class ``k``'s raw probability
  with ``c_ik`` as soft labels (``soft_auc``); its std is the mean of the classes' stds, an
  upper bound on the std of the mean whatever the classes' AUCs' correlation.
"""

from __future__ import annotations

import math

import numpy as np

from scoring.estimation.binary import Estimated
from scoring.estimation.soft_auc import soft_auc


def predicted_classes(probabilities: np.ndarray) -> np.ndarray:
    """Each event's predicted class index: the most probable, the first of equals (as the scorer)."""
    return np.asarray(probabilities, dtype=np.float64).argmax(axis=1)


def multiclass_estimates(probabilities: np.ndarray, calibrated: np.ndarray) -> list[Estimated]:
    """Estimated accuracy, macro F1 and macro OvR AUC of one window.

    ``probabilities``: the model's (events x classes); ``calibrated``: the same calibrated,
    rows summing to 1 (``ClassCalibration.calibrate``).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    c = np.asarray(calibrated, dtype=np.float64)
    n, k = c.shape
    if n == 0:
        return [Estimated(m, None, None) for m in ("accuracy", "f1_macro", "auc_macro_ovr")]
    predicted = predicted_classes(p)
    right = c[np.arange(n), predicted]
    accuracy = Estimated("accuracy", float(right.mean()), math.sqrt(float(np.dot(right, 1 - right))) / n)
    return [accuracy, _macro_f1(c, predicted, k), _macro_auc(p, c, k)]


def _macro_f1(c: np.ndarray, predicted: np.ndarray, k: int) -> Estimated:
    is_predicted = predicted[:, None] == np.arange(k)[None, :]  # events x classes
    n_predicted = is_predicted.sum(axis=0).astype(np.float64)
    tp = np.where(is_predicted, c, 0.0).sum(axis=0)
    fn = c.sum(axis=0) - tp
    denominator = n_predicted + tp + fn  # 2 TP + FP + FN
    present = denominator > 0
    if not present.any():
        return Estimated("f1_macro", None, None)
    safe = np.where(present, denominator, 1.0)
    f1 = np.where(present, 2 * tp / safe, 0.0)
    m = int(present.sum())
    # d F1_k / d TP_k and d F1_k / d FN_k, over the m classes averaged
    d_tp = np.where(present, 2 * (n_predicted + fn) / safe**2, 0.0) / m
    d_fn = np.where(present, -2 * tp / safe**2, 0.0) / m
    # event i's label j adds d_tp[j] if it was predicted j, else d_fn[j]
    coefficient = np.where(is_predicted, d_tp[None, :], d_fn[None, :])
    mean = (c * coefficient).sum(axis=1)
    variance = float(((c * coefficient**2).sum(axis=1) - mean**2).clip(min=0.0).sum())
    return Estimated("f1_macro", float(f1[present].mean()), math.sqrt(variance))


def _macro_auc(p: np.ndarray, c: np.ndarray, k: int) -> Estimated:
    per_class = [soft_auc(p[:, j], c[:, j]) for j in range(k)]
    defined = [e for e in per_class if e.value is not None and e.std is not None]
    if not defined:
        return Estimated("auc_macro_ovr", None, None)
    value = float(np.mean([e.value for e in defined]))
    std = float(np.mean([e.std for e in defined]))
    return Estimated("auc_macro_ovr", value, std)
