"""Holdout metrics for a trained model, computed with numpy alone."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata

_EPS = 1e-15
AUC_BINS = 1000  # score histogram bins of the streaming AUCs (KPIs, estimates)


def clean(values: dict[str, float]) -> dict[str, float | None]:
    """KPIs as JSON: rounded to 10 places, None where undefined."""
    return {
        k: (None if v is None or not math.isfinite(v) else round(float(v), 10)) for k, v in values.items()
    }


def histogram_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """ROC AUC from score histograms: pairs in one bin count as ties (half)."""
    n_pos, n_neg = positives.sum(), negatives.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    below = np.cumsum(negatives) - negatives  # negatives in lower bins
    return float((np.sum(positives * below) + 0.5 * np.sum(positives * negatives)) / (n_pos * n_neg))


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties get average ranks); NaN with one class."""
    y = np.asarray(y_true).astype(bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    rank_of = rankdata(np.asarray(scores, dtype=float), method="average")
    return float((rank_of[y].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def log_loss(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    p = np.clip(np.asarray(probabilities, dtype=float), _EPS, 1 - _EPS)
    y = np.asarray(y_true, dtype=float)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def binary_metrics(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    threshold: float = 0.5,
    predicted: np.ndarray | None = None,
) -> dict[str, float]:
    """AUC, log loss, and accuracy, precision, recall and F1 of the class decisions (NaN where undefined).

    The decisions are ``probabilities >= threshold`` unless ``predicted`` gives the model's own.
    """
    y = np.asarray(y_true, dtype=float)
    if predicted is None:
        predicted = np.asarray(probabilities) >= threshold
    predicted = np.asarray(predicted, dtype=float)
    tp = float(np.sum((predicted == 1) & (y == 1)))
    precision = tp / predicted.sum() if predicted.sum() else float("nan")
    recall = tp / y.sum() if y.sum() else float("nan")
    f1 = 2 * tp / (predicted.sum() + y.sum()) if predicted.sum() + y.sum() else float("nan")
    return {
        "auc": roc_auc(y, probabilities),
        "log_loss": log_loss(y, probabilities),
        "accuracy": float(np.mean(predicted == y)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    y = np.asarray(y_true, dtype=float)
    error = np.asarray(predicted, dtype=float) - y
    total = float(np.sum((y - y.mean()) ** 2))
    nonzero = y != 0
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        # MAPE over the targets that are not zero (a zero target has no percentage error)
        "mape": float(np.mean(np.abs(error[nonzero] / y[nonzero]))) if nonzero.any() else float("nan"),
        "r2": float(1 - np.sum(error**2) / total) if total > 0 else float("nan"),
    }


def multiclass_metrics(y_index: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Accuracy of the most probable class, macro and weighted F1, one-vs-rest macro AUC and the
    multiclass log loss (of the true class's probability, clipped; ``multiclassova`` probabilities are
    taken as they are, though they need not sum to 1). NaN where undefined.

    >>> p = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    >>> m = multiclass_metrics(np.array([0, 1, 2, 1]), p)
    >>> round(m["accuracy"], 3), round(m["f1_macro"], 3), round(m["log_loss"], 4)
    (0.75, 0.778, 0.6192)
    """
    y = np.asarray(y_index, dtype=int)
    p = np.asarray(probabilities, dtype=float)
    k = p.shape[1]
    predicted = p.argmax(axis=1)
    true_counts = np.bincount(y, minlength=k).astype(float)
    predicted_counts = np.bincount(predicted, minlength=k).astype(float)
    hits = np.bincount(y[predicted == y], minlength=k).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(true_counts + predicted_counts > 0, 2 * hits / (true_counts + predicted_counts), 0.0)
    present = true_counts + predicted_counts > 0  # scikit-learn's macro F1 averages over these classes
    aucs = [roc_auc(y == c, p[:, c]) for c in range(k) if true_counts[c]]
    true_p = np.clip(p[np.arange(len(y)), y], _EPS, 1 - _EPS)
    return {
        "accuracy": float(np.mean(predicted == y)),
        "f1_macro": float(f1[present].mean()) if present.any() else float("nan"),
        "f1_weighted": float(np.sum(f1 * true_counts) / true_counts.sum()) if len(y) else float("nan"),
        "auc_macro_ovr": float(np.mean(aucs)) if aucs else float("nan"),
        "log_loss": float(-np.mean(np.log(true_p))),
    }
