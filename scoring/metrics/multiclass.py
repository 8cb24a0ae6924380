"""Rolling and cumulative KPIs of a multiclass model from (class, probabilities) pairs.

Cumulative KPIs are kept as counts and sums, so shards merge exactly: a K x K confusion
matrix (true class by predicted class, the predicted class being the most probable, the
first of equals, as served), the sum of the log loss, and for the one-vs-rest ROC AUC of
each class two score histograms of ``AUC_BINS`` bins (that class's probability on events of
the class, and on the others), as the binary KPIs keep them: pairs in one bin count as ties.
Rolling KPIs are exact over the last ``window`` labelled events (ranks for the AUC).

The log loss is scikit-learn's (1.9): the true class's probability clipped to
``[eps, 1 - eps]``, ``eps`` being float64's machine epsilon, the rows taken as they are (a
``multiclassova`` model's need not sum to 1). Precision and recall of a class with no
predictions (no events) are None, where scikit-learn says 0 with a warning; macro F1
averages the classes that were predicted or seen, as scikit-learn does.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from scoring.metrics.holdout import AUC_BINS, histogram_auc, roc_auc
from scoring.metrics.holdout import clean as _clean

EPS = float(np.finfo(np.float64).eps)  # scikit-learn's clip of probabilities in log_loss


def confusion_kpis(confusion: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Accuracy, macro and weighted F1, and each class's precision and recall of a confusion matrix
    (rows: true class, columns: predicted class); NaN where undefined."""
    confusion = np.asarray(confusion, dtype=float)
    n = confusion.sum()
    hits = np.diag(confusion)
    true_counts, predicted_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    seen = true_counts + predicted_counts
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(seen > 0, 2 * hits / seen, 0.0)
        precision = hits / predicted_counts
        recall = hits / true_counts
    out = {
        "accuracy": hits.sum() / n if n else math.nan,
        "f1_macro": float(f1[seen > 0].mean()) if (seen > 0).any() else math.nan,
        "f1_weighted": float(np.sum(f1 * true_counts) / n) if n else math.nan,
    }
    for k, name in enumerate(classes):
        out[f"precision:{name}"] = float(precision[k])
        out[f"recall:{name}"] = float(recall[k])
    return out


def true_class_log_loss(y: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Each event's log loss: minus the log of its true class's probability, clipped as scikit-learn."""
    p = probabilities[np.arange(len(y)), y]
    return -np.log(np.clip(p, EPS, 1 - EPS))


@dataclass
class MulticlassKpis:
    """KPIs of a multiclass model: accuracy, macro/weighted F1, per-class precision and recall,
    one-vs-rest macro ROC AUC, log loss. ``confusion`` and the histograms are flat lists (row-major)."""

    window: int
    classes: list[str]
    n: int = 0
    confusion: list[int] = field(default_factory=list)  # K x K, true x predicted
    log_loss_sum: float = 0.0
    pos_hist: list[int] = field(default_factory=list)  # K x AUC_BINS: class k's probability, events of k
    neg_hist: list[int] = field(default_factory=list)  # K x AUC_BINS: class k's probability, other events
    recent: deque = field(default_factory=deque)  # (true class, K probabilities...)

    def __post_init__(self) -> None:
        k = len(self.classes)
        if k < 2 or not all(isinstance(c, str) for c in self.classes):
            raise ValueError("a multiclass board needs two or more class names")
        for name, size in (("confusion", k * k), ("pos_hist", k * AUC_BINS), ("neg_hist", k * AUC_BINS)):
            value = getattr(self, name)
            if not value:
                setattr(self, name, [0] * size)
            elif len(value) != size:
                raise ValueError(f"{name}: {len(value)} values, not {size} for {k} classes")

    def update(self, label: int, probabilities: Sequence[float], predicted: int | None = None) -> None:
        """``label``: the true class's index; ``predicted``: the served class, else the most probable."""
        k = len(self.classes)
        p = [float(v) for v in probabilities]  # plain floats: K is small, numpy costs more per call
        predicted = max(range(k), key=p.__getitem__) if predicted is None else predicted  # first of equals
        self.n += 1
        self.confusion[label * k + predicted] += 1
        self.log_loss_sum += -math.log(min(max(p[label], EPS), 1 - EPS))
        for c, v in enumerate(p):
            b = c * AUC_BINS + min(AUC_BINS - 1, max(0, int(v * AUC_BINS)))
            (self.pos_hist if c == label else self.neg_hist)[b] += 1
        self.recent.append((float(label), *p))
        if len(self.recent) > self.window:
            self.recent.popleft()

    def cumulative(self) -> dict[str, float | None]:
        k = len(self.classes)
        confusion = np.array(self.confusion).reshape(k, k)
        pos, neg = np.array(self.pos_hist).reshape(k, -1), np.array(self.neg_hist).reshape(k, -1)
        aucs = [histogram_auc(pos[c], neg[c]) for c in range(k) if pos[c].sum()]
        return _clean(
            {
                **confusion_kpis(confusion, self.classes),
                "auc_macro_ovr": float(np.nanmean(aucs)) if aucs else math.nan,
                "log_loss": self.log_loss_sum / self.n if self.n else math.nan,
            }
        )

    def rolling(self) -> dict[str, float | None]:
        if not self.recent:
            return {}
        return _clean(multiclass_kpis(*_split(np.array(self.recent)), self.classes))

    # -- state (as ``kpis._JsonState``: plain JSON values, the window as a list)

    def absorb(self, other: MulticlassKpis) -> None:
        """Add ``other``'s counts, sums and histograms (exact); the rolling window becomes both windows."""
        if other.classes != self.classes:
            raise ValueError(f"KPIs of classes {other.classes} merged into KPIs of {self.classes}")
        self.n += other.n
        self.log_loss_sum += other.log_loss_sum
        for name in ("confusion", "pos_hist", "neg_hist"):
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(self, name, [a + b for a, b in zip(mine, theirs, strict=True)])
        self.recent.extend(other.recent)

    def state(self) -> dict:
        return {**{k: v for k, v in vars(self).items() if k != "recent"}, "recent": list(self.recent)}

    @classmethod
    def from_state(cls, state: dict) -> MulticlassKpis:
        kpis = cls(**{k: v for k, v in state.items() if k != "recent"})
        kpis.recent = deque(tuple(r) for r in state["recent"])
        return kpis


def _split(recent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return recent[:, 0].astype(int), recent[:, 1:]


def multiclass_kpis(y: np.ndarray, probabilities: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """The KPIs of ``MulticlassKpis`` computed from the events themselves (ranks for the AUC)."""
    y = np.asarray(y, dtype=int)
    p = np.asarray(probabilities, dtype=float)
    k = len(classes)
    confusion = np.zeros((k, k))
    np.add.at(confusion, (y, p.argmax(axis=1)), 1)
    aucs = [roc_auc(y == c, p[:, c]) for c in range(k) if (y == c).any()]
    return {
        **confusion_kpis(confusion, classes),
        "auc_macro_ovr": float(np.nanmean(aucs)) if aucs else math.nan,
        "log_loss": float(true_class_log_loss(y, p).mean()) if len(y) else math.nan,
    }
