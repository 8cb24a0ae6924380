"""Champion against challenger for a multiclass model: an event is right when its served class is its label.

The tests of ``scoring.feedback.compare`` take only right or wrong per event, so they serve any
number of classes as they serve two: McNemar's test on the events exactly one model classified
right (paired: both scored the same events, the challenger in shadow), the two-proportion z-test
on accuracy (unpaired: split traffic, each model on the events it served). The served class is the
most probable, the first of equals, as the worker serves it. Beside the test: each model's
accuracy, macro F1, one-vs-rest macro ROC AUC and log loss (``multiclass_metrics``); the winner rule
is binary's (the better accuracy, when the test rejects equality at ``alpha``).

>>> y = np.array([0, 1, 2, 1])
>>> a = np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6], [0.4, 0.4, 0.2]])
>>> served_right(y, a).tolist()  # the last: a tie of classes 0 and 1 serves class 0
[True, False, True, False]
"""

from __future__ import annotations

import numpy as np

from scoring.feedback.compare import Comparison, decide, mcnemar, two_proportions
from scoring.metrics.holdout import multiclass_metrics

KPIS = ("accuracy", "f1_macro", "auc_macro_ovr", "log_loss")  # shown, in this order


def served_right(y: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Per event: the served class (the most probable, the first of equals) is the label's class."""
    return np.asarray(probabilities, dtype=float).argmax(axis=1) == np.asarray(y, dtype=int)


def _kpis(y: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    metrics = multiclass_metrics(np.asarray(y, dtype=int), np.asarray(probabilities, dtype=float))
    return {name: metrics[name] for name in KPIS}


def _shape(y: np.ndarray, probabilities: np.ndarray, what: str) -> None:
    p = np.asarray(probabilities)
    if p.ndim != 2 or p.shape[0] != len(y) or p.shape[1] < 2:
        raise ValueError(f"{what}: {p.shape} probabilities for {len(y)} labels, not (events, classes)")
    if len(y) == 0:
        raise ValueError(f"{what}: no labelled events")


def compare_classes_paired(
    y: np.ndarray,
    champion: np.ndarray,
    challenger: np.ndarray,
    names: tuple[str, str],
    alpha: float = 0.01,
) -> Comparison:
    """``y``: the label's class index per event; ``champion``, ``challenger``: events x classes each."""
    _shape(y, champion, "champion")
    _shape(y, challenger, "challenger")
    statistic, p, detail = mcnemar(served_right(y, champion), served_right(y, challenger))
    test = "McNemar on the served class right or wrong" + (" (exact)" if sum(detail.values()) < 25 else "")
    n = len(y)
    kpis = _kpis(y, champion), _kpis(y, challenger)
    return decide("multiclass", names, True, n, n, *kpis, test, statistic, p, alpha, detail)


def compare_classes_unpaired(
    champion: tuple[np.ndarray, np.ndarray],
    challenger: tuple[np.ndarray, np.ndarray],
    names: tuple[str, str],
    alpha: float = 0.01,
) -> Comparison:
    """Each argument is (class index per event, events x classes) of the events that model served."""
    (ya, pa), (yb, pb) = champion, challenger
    _shape(ya, pa, "champion")
    _shape(yb, pb, "challenger")
    right_a, right_b = int(served_right(ya, pa).sum()), int(served_right(yb, pb).sum())
    statistic, p = two_proportions(right_a, len(ya), right_b, len(yb))
    kpis = _kpis(ya, pa), _kpis(yb, pb)
    test = "two-proportion z-test on accuracy"
    return decide("multiclass", names, False, len(ya), len(yb), *kpis, test, statistic, p, alpha, {})
