"""Rolling and cumulative KPIs of a model from (label, prediction) pairs, per model and segment.

Rolling KPIs are exact over the last ``window`` labelled events. Cumulative KPIs are
kept as sums and counts (and, for ROC AUC, score histograms of 1,000 bins per class,
so the cumulative AUC is exact up to ties within a bin) so memory does not grow with
the stream. All state is plain numbers and lists: it round-trips through JSON for
checkpoints, with no pickle anywhere.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from scoring.metrics.holdout import AUC_BINS, binary_metrics, histogram_auc, regression_metrics
from scoring.metrics.holdout import clean as _clean
from scoring.metrics.multiclass import MulticlassKpis

_EPS = 1e-15
ALL = "all"  # the segment of every event


class _JsonState:
    """State as plain JSON values: every field, with the rolling window as a list."""

    recent: deque

    def absorb(self, other: _JsonState) -> None:
        """Add ``other``'s counts, sums and histograms to these (the KPIs of both streams together).

        Exact for everything cumulative. The rolling window becomes both windows: over the
        last ``window`` labelled events of each stream merged, not the last ``window`` of all.
        """
        for name, value in vars(other).items():
            if name in ("window", "threshold"):
                continue
            if name == "recent":
                self.recent.extend(value)
            elif isinstance(value, list):
                setattr(self, name, [a + b for a, b in zip(getattr(self, name), value, strict=True)])
            else:
                setattr(self, name, getattr(self, name) + value)

    def state(self) -> dict:
        return {**{k: v for k, v in vars(self).items() if k != "recent"}, "recent": list(self.recent)}

    @classmethod
    def from_state(cls, state: dict):
        kpis = cls(**{k: v for k, v in state.items() if k != "recent"})
        kpis.recent = deque(tuple(r) for r in state["recent"])
        return kpis


@dataclass
class BinaryKpis(_JsonState):
    """KPIs of a binary classifier: accuracy, precision, recall, F1, ROC AUC, log loss."""

    window: int
    threshold: float = 0.5
    n: int = 0
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0
    log_loss_sum: float = 0.0
    pos_hist: list[int] = field(default_factory=lambda: [0] * AUC_BINS)
    neg_hist: list[int] = field(default_factory=lambda: [0] * AUC_BINS)
    recent: deque = field(default_factory=deque)

    def update(self, label: float, score: float, predicted: bool | None = None) -> None:
        """``predicted``: the model's own class decision, when it is not ``score >= threshold``."""
        y = label >= 0.5
        predicted = score >= self.threshold if predicted is None else predicted
        self.n += 1
        if predicted and y:
            self.tp += 1
        elif predicted:
            self.fp += 1
        elif y:
            self.fn += 1
        else:
            self.tn += 1
        p = min(max(score, _EPS), 1 - _EPS)
        self.log_loss_sum -= math.log(p) if y else math.log(1 - p)
        b = min(AUC_BINS - 1, max(0, int(score * AUC_BINS)))
        (self.pos_hist if y else self.neg_hist)[b] += 1
        self.recent.append((float(y), score, float(predicted)))
        if len(self.recent) > self.window:
            self.recent.popleft()

    def cumulative(self) -> dict[str, float | None]:
        n, tp, fp, fn = self.n, self.tp, self.fp, self.fn
        return _clean(
            {
                "accuracy": (tp + self.tn) / n if n else math.nan,
                "precision": tp / (tp + fp) if tp + fp else math.nan,
                "recall": tp / (tp + fn) if tp + fn else math.nan,
                "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan,
                "auc": histogram_auc(np.array(self.pos_hist), np.array(self.neg_hist)),
                "log_loss": self.log_loss_sum / n if n else math.nan,
            }
        )

    def rolling(self) -> dict[str, float | None]:
        if not self.recent:
            return {}
        y, p, predicted = np.array(self.recent).T
        return _clean(binary_metrics(y, p, predicted=predicted))


@dataclass
class RegressionKpis(_JsonState):
    """KPIs of a regressor: MAE, RMSE, MAPE (over non-zero targets), R²."""

    window: int
    n: int = 0
    abs_sum: float = 0.0
    sq_sum: float = 0.0
    ape_sum: float = 0.0
    ape_n: int = 0
    y_sum: float = 0.0
    y_sq_sum: float = 0.0
    recent: deque = field(default_factory=deque)

    def update(self, label: float, prediction: float, predicted: bool | None = None) -> None:
        error = prediction - label
        self.n += 1
        self.abs_sum += abs(error)
        self.sq_sum += error * error
        if label != 0:
            self.ape_sum += abs(error / label)
            self.ape_n += 1
        self.y_sum += label
        self.y_sq_sum += label * label
        self.recent.append((label, prediction))
        if len(self.recent) > self.window:
            self.recent.popleft()

    def cumulative(self) -> dict[str, float | None]:
        n = self.n
        total = self.y_sq_sum - self.y_sum * self.y_sum / n if n else 0.0
        return _clean(
            {
                "mae": self.abs_sum / n if n else math.nan,
                "rmse": math.sqrt(self.sq_sum / n) if n else math.nan,
                "mape": self.ape_sum / self.ape_n if self.ape_n else math.nan,
                "r2": 1 - self.sq_sum / total if total > 0 else math.nan,
            }
        )

    def rolling(self) -> dict[str, float | None]:
        if not self.recent:
            return {}
        y, p = np.array(self.recent).T
        return _clean(regression_metrics(y, p))


Kpis = BinaryKpis | RegressionKpis | MulticlassKpis


class KpiBoard:
    """KPIs per (model, segment feature, segment value); segment ("all", "all") is everything.

    The task picks the KPIs, here and nowhere else: ``BinaryKpis``, ``RegressionKpis``, or
    ``MulticlassKpis`` (``classes``: the class names in the model's order; a label is a class
    index and a prediction the row of every class's probability).
    """

    def __init__(self, task: str, window: int, threshold: float = 0.5, classes: Sequence[str] = ()) -> None:
        if (task == "multiclass") != bool(classes):
            raise ValueError(f"a {task} board with classes {list(classes)}")
        self.task = task
        self.window = window
        self.threshold = threshold
        self.classes = [str(c) for c in classes]
        self.kpis: dict[tuple[str, str, str], Kpis] = {}

    def _new(self) -> Kpis:
        if self.task == "binary":
            return BinaryKpis(window=self.window, threshold=self.threshold)
        if self.task == "multiclass":
            return MulticlassKpis(window=self.window, classes=list(self.classes))
        return RegressionKpis(window=self.window)

    def update(
        self,
        model: str,
        label: float | int,
        prediction: float | Sequence[float],
        segments: dict[str, str],
        predicted: bool | int | None = None,
    ) -> None:
        for key in ((model, ALL, ALL), *((model, f, v) for f, v in segments.items())):
            kpis = self.kpis.get(key)
            if kpis is None:
                kpis = self.kpis[key] = self._new()
            kpis.update(label, prediction, predicted)

    def overall(self, model: str) -> Kpis | None:
        return self.kpis.get((model, ALL, ALL))

    def rows(self) -> list[dict]:
        """One row per model and segment: counts, rolling and cumulative KPIs."""
        return [
            {
                "model": model,
                "segment_feature": feature,
                "segment_value": value,
                "count": kpis.n,
                "rolling": kpis.rolling(),
                "cumulative": kpis.cumulative(),
            }
            for (model, feature, value), kpis in sorted(self.kpis.items())
        ]

    @classmethod
    def merged(cls, boards: list[KpiBoard]) -> KpiBoard:
        """The KPIs of several streams (partitions) as one board, in the order given.

        Counts and sums are added, so cumulative KPIs equal those of one board that saw every
        stream (bit for bit when the parts are merged in the same order each time).
        """
        first = boards[0]
        out = cls(first.task, first.window, first.threshold, first.classes)
        for board in boards:
            for key, kpis in board.kpis.items():
                mine = out.kpis.get(key)
                if mine is None:
                    mine = out.kpis[key] = out._new()
                mine.absorb(kpis)
        return out

    def state(self) -> dict:
        classes = {"classes": self.classes} if self.classes else {}  # binary, regression: as before
        return {
            "task": self.task,
            "window": self.window,
            "threshold": self.threshold,
            **classes,
            "kpis": [[list(key), kpis.state()] for key, kpis in self.kpis.items()],
        }

    @classmethod
    def from_state(cls, state: dict) -> KpiBoard:
        board = cls(state["task"], state["window"], state["threshold"], state.get("classes", ()))
        kind = {"binary": BinaryKpis, "multiclass": MulticlassKpis}.get(board.task, RegressionKpis)
        board.kpis = {tuple(key): kind.from_state(s) for key, s in state["kpis"]}
        for kpis in board.kpis.values():
            if isinstance(kpis, MulticlassKpis) and kpis.classes != board.classes:
                raise ValueError(f"KPIs of classes {kpis.classes} on a board of {board.classes}")
        return board
