"""When to ask for a new model, and what to call it.

A drift alert asks at once. A KPI asks when the champion's rolling primary KPI
(accuracy for binary, MAE for regression) crosses its threshold with at least a
window of labels behind it, and not again until it has recovered: one request per
episode, not one per snapshot. An estimated KPI (``EstimateWatch``) does the same per
drift window, before any label: it alerts and asks, once per episode per model version.
"""

from __future__ import annotations

import re
import time

from schemas.drift import DriftAlert
from schemas.estimation import UNIT_METRICS, EstimatedKpiAlert, PerformanceEstimate
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


class EstimateWatch:
    """The estimated counterpart of ``KpiWatch``: each window's estimated KPI against the alert threshold.

    ``metric`` (the alert's, accuracy by default) below ``threshold``, or above it for an
    error metric (mae, rmse), in a window of at least ``min_events`` events raises an
    alert; not again for that model version until a window's estimate has recovered.
    A model whose estimates lack the metric is not watched.

    >>> from schemas.estimation import MetricEstimate
    >>> def window(i, accuracy):
    ...     m = MetricEstimate(metric="accuracy", estimate=accuracy, std=0.01, lower=accuracy - 0.03,
    ...                        upper=accuracy + 0.03, method="cbpe", uncertainty="analytic")
    ...     return PerformanceEstimate(model_name="m", model_version="1", task="binary", window=i,
    ...                                events=5000, band_z=3, metrics=[m], created_at=0)
    >>> watch = EstimateWatch("accuracy", 0.7)
    >>> [watch.check(window(i, a)) is not None for i, a in enumerate([0.8, 0.65, 0.6, 0.75, 0.66])]
    [False, True, False, False, True]
    """

    def __init__(self, metric: str, threshold: float, min_events: int = 100) -> None:
        self.metric = metric
        self.threshold = threshold
        self.min_events = min_events
        self.higher_is_better = metric in UNIT_METRICS
        self.firing: set[str] = set()  # "name:version" whose last estimate was past the threshold

    def check(self, estimate: PerformanceEstimate) -> EstimatedKpiAlert | None:
        m = estimate.metric(self.metric)
        if m is None or m.estimate is None or estimate.events < self.min_events:
            return None
        model = str(ModelKey(estimate.model_name, estimate.model_version))
        value = m.estimate
        bad = value < self.threshold if self.higher_is_better else value > self.threshold
        fire = bad and model not in self.firing
        if bad:
            self.firing.add(model)
        else:
            self.firing.discard(model)
        if not fire:
            return None
        side = "below" if self.higher_is_better else "above"
        band = f"[{m.lower:.4f}, {m.upper:.4f}]" if m.lower is not None and m.upper is not None else "n/a"
        return EstimatedKpiAlert(
            model_name=estimate.model_name,
            model_version=estimate.model_version,
            window=estimate.window,
            start_event_time=estimate.start_event_time,
            end_event_time=estimate.end_event_time,
            events=estimate.events,
            metric=m.metric,
            estimate=value,
            lower=m.lower,
            upper=m.upper,
            threshold=self.threshold,
            message=f"{model} window {estimate.window}: estimated {m.metric} {value:.4f} {side} "
            f"{self.threshold} (band {band}, {estimate.events:,} events, before labels)",
            created_at=int(time.time() * 1000),
        )


def from_estimate(alert: EstimatedKpiAlert) -> RetrainRequest:
    return RetrainRequest(
        model=str(ModelKey(alert.model_name, alert.model_version)),
        trigger="estimated",
        reason=alert.message,
        details={alert.metric: alert.estimate, "threshold": alert.threshold, "window": alert.window},
        created_at=int(time.time() * 1000),
    )


def next_version(existing: list[str]) -> str:
    """One past the highest integer version, or "1"; if versions are not integers, a timestamp."""
    numbers = [int(v) for v in existing if re.fullmatch(r"\d+", v)]
    if numbers or not existing:
        return str(max(numbers, default=0) + 1)
    return time.strftime("%Y%m%d%H%M%S")
