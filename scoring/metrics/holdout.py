"""Holdout metrics for a trained model, computed with numpy alone."""

from __future__ import annotations

import numpy as np

_EPS = 1e-15


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties get average ranks); NaN with one class."""
    y = np.asarray(y_true).astype(bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = np.asarray(scores)[order]
    ranks = np.empty(len(sorted_scores), dtype=float)
    # average ranks over runs of equal scores
    _, starts, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for start, count in zip(starts, counts, strict=True):
        ranks[start : start + count] = start + (count + 1) / 2.0
    rank_of = np.empty_like(ranks)
    rank_of[order] = ranks
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
