"""When to ask for a new model, and what to call it.

A drift alert asks at once. A KPI asks when the champion's rolling primary KPI
(accuracy for binary, MAE for regression) crosses its threshold with at least a
window of labels behind it, and not again until it has recovered: one request per
episode, not one per snapshot.
"""

from __future__ import annotations

import re
import time

from schemas.drift import DriftAlert
from schemas.feedback import MetricsSnapshot
from schemas.keys import ModelKey, Task
from schemas.lifecycle import RetrainRequest


def from_drift(alert: DriftAlert) -> RetrainRequest:
    return RetrainRequest(
        model=str(ModelKey(alert.model_name, alert.model_version)),
        trigger="drift",
        reason=alert.message,
        details={s.feature: s.psi for s in alert.features},
        created_at=int(time.time() * 1000),
    )


class KpiWatch:
    def __init__(self, threshold: float, task: str) -> None:
        self.threshold = threshold
        self.lower_is_worse = Task(task).higher_is_better  # accuracy falls; MAE rises
        self.firing = False

    def check(self, snapshot: MetricsSnapshot) -> RetrainRequest | None:
        row = snapshot.overall(snapshot.champion)
        if row is None or row.count < snapshot.window:
            return None
        value = row.rolling.get(snapshot.primary_metric)
        if value is None:
            return None
        bad = value < self.threshold if self.lower_is_worse else value > self.threshold
        fire, self.firing = bad and not self.firing, bad
        if not fire:
            return None
        side = "below" if self.lower_is_worse else "above"
        return RetrainRequest(
            model=snapshot.champion,
            trigger="kpi",
            reason=f"rolling {snapshot.primary_metric} {value:.4f} {side} {self.threshold} "
            f"over the last {snapshot.window} labelled events",
            details={snapshot.primary_metric: value, "threshold": self.threshold},
            created_at=int(time.time() * 1000),
        )


def next_version(existing: list[str]) -> str:
    """One past the highest integer version, or "1"; if versions are not integers, a timestamp."""
    numbers = [int(v) for v in existing if re.fullmatch(r"\d+", v)]
    if numbers or not existing:
        return str(max(numbers, default=0) + 1)
    return time.strftime("%Y%m%d%H%M%S")
