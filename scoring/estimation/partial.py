"""Mergeable per-window estimation state: sums over events, so partition parts add up.

A drift window spread over partitions can keep one part per partition and merge
them when the window closes. For a binary model the part holds the expected
confusion sums (exact) and, for the AUC, a histogram of ``bins`` fixed bins of the
raw score over [0, 1] with the soft-label sums per bin: events in one bin count as
tied, and the estimate reports a bound on what that costs (``approximation_error``,
half the pair weight within bins over the total; with 1,000 bins it is typically
below 1e-3). For a regression model the part is three sums, exact.

State is plain JSON values (lists and numbers) for checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

from scoring.estimation.binary import ConfusionSums, Estimated, confusion_metrics, confusion_sums
from scoring.estimation.soft_auc import ScoreGroups, auc_estimate

AUC_BINS = 1000


@dataclass
class BinaryPartial:
    """Estimation state of a binary model over some events of one window."""

    bins: int = AUC_BINS
    confusion: ConfusionSums = field(default_factory=ConfusionSums)
    groups: ScoreGroups | None = None

    @property
    def events(self) -> int:
        return int(self.confusion.n)

    def update(self, scores: np.ndarray, probabilities: np.ndarray, predicted: np.ndarray) -> None:
        """Add events: raw scores (binned for the AUC), calibrated probabilities, class decisions."""
        scores = np.asarray(scores, dtype=np.float64)
        index = np.clip((scores * self.bins).astype(np.int64), 0, self.bins - 1)
        batch = ScoreGroups.of(index, np.asarray(probabilities, dtype=np.float64), self.bins)
        self.confusion = self.confusion + confusion_sums(probabilities, predicted)
        self.groups = batch if self.groups is None else _add_groups(self.groups, batch)

    def merge(self, other: BinaryPartial) -> BinaryPartial:
        """Add another part of the same window (another partition's) into this one."""
        if other.bins != self.bins:
            raise ValueError(f"cannot merge a part of {other.bins} bins into one of {self.bins}")
        self.confusion = self.confusion + other.confusion
        if other.groups is not None:
            self.groups = other.groups if self.groups is None else _add_groups(self.groups, other.groups)
        return self

    def estimates(self) -> list[Estimated]:
        if self.groups is None:
            return [*confusion_metrics(self.confusion), Estimated("auc", None, None)]
        return [*confusion_metrics(self.confusion), auc_estimate(self.groups, binned=True)]

    def state(self) -> dict:
        groups = self.groups
        return {
            "bins": self.bins,
            "confusion": [getattr(self.confusion, f.name) for f in fields(ConfusionSums)],
            "groups": None
            if groups is None
            else {f.name: _plain(getattr(groups, f.name)) for f in fields(ScoreGroups)},
        }

    @classmethod
    def from_state(cls, state: dict) -> BinaryPartial:
        groups = state["groups"]
        return cls(
            bins=int(state["bins"]),
            confusion=ConfusionSums(*map(float, state["confusion"])),
            groups=None
            if groups is None
            else ScoreGroups(
                **{k: np.asarray(v, dtype=np.float64) for k, v in groups.items() if k != "var_sq"},
                var_sq=float(groups["var_sq"]),
            ),
        )


@dataclass
class RegressionPartial:
    """Estimation state of a regression model: events and the sums of expected losses."""

    n: int = 0
    sum_abs: float = 0.0
    sum_sq: float = 0.0

    @property
    def events(self) -> int:
        return self.n

    def update(self, expected_abs: np.ndarray, expected_sq: np.ndarray) -> None:
        self.n += len(expected_abs)
        self.sum_abs += float(np.sum(expected_abs))
        self.sum_sq += float(np.sum(expected_sq))

    def merge(self, other: RegressionPartial) -> RegressionPartial:
        self.n += other.n
        self.sum_abs += other.sum_abs
        self.sum_sq += other.sum_sq
        return self

    def estimates(self, mae_sd_relative: float, rmse_sd_relative: float, chunk_rows: int) -> list[Estimated]:
        """MAE and RMSE (sqrt of the mean expected squared error), std from the holdout chunks."""
        if self.n == 0:
            return [Estimated("mae", None, None), Estimated("rmse", None, None)]
        scale = math.sqrt(chunk_rows / self.n)
        mae = self.sum_abs / self.n
        rmse = math.sqrt(self.sum_sq / self.n)
        return [
            Estimated("mae", mae, mae * mae_sd_relative * scale),
            Estimated("rmse", rmse, rmse * rmse_sd_relative * scale),
        ]

    def state(self) -> dict:
        return {"n": self.n, "sum_abs": self.sum_abs, "sum_sq": self.sum_sq}

    @classmethod
    def from_state(cls, state: dict) -> RegressionPartial:
        return cls(int(state["n"]), float(state["sum_abs"]), float(state["sum_sq"]))


def _add_groups(a: ScoreGroups, b: ScoreGroups) -> ScoreGroups:
    return ScoreGroups(
        *(getattr(a, f.name) + getattr(b, f.name) for f in fields(ScoreGroups) if f.name != "var_sq"),
        var_sq=a.var_sq + b.var_sq,
    )


def _plain(value: np.ndarray | float) -> list[float] | float:
    return value.tolist() if isinstance(value, np.ndarray) else float(value)
