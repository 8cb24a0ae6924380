"""When to ask for a new model, and what to call it.

A firing drift alert asks at once (one per episode: ``scoring.alerts.drift``). A KPI asks
when the champion's rolling primary KPI (accuracy for binary, MAE for regression) crosses
its threshold with at least a window of labels behind it, and not again until it has
recovered: one request per episode, not one per snapshot. An estimated KPI
(``EstimateWatch``) does the same per drift window, before any label: it alerts and asks
once per episode per model version, subject to a cool-down (``AlertGate``), and says
when the estimate is back (a resolved alert, which asks for nothing).
"""

from __future__ import annotations

import re
import time

from schemas.drift import DriftAlert
from schemas.estimation import UNIT_METRICS, EstimatedKpiAlert, PerformanceEstimate
from schemas.feedback import MetricsSnapshot
from schemas.keys import ModelKey, Task
from schemas.lifecycle import RetrainRequest
from scoring.alerts.gate import AlertGate


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
    error metric (mae, rmse), in a window of at least ``min_events`` events fires an alert;
    nothing more for that model version until a window's estimate has recovered, which
    resolves it. Severity: ``critical`` when the estimate's whole band is past the threshold,
    else ``warning``. A model whose estimates lack the metric is not watched.

    >>> from schemas.estimation import MetricEstimate
    >>> def window(i, accuracy):
    ...     m = MetricEstimate(metric="accuracy", estimate=accuracy, std=0.01, lower=accuracy - 0.03,
    ...                        upper=accuracy + 0.03, method="cbpe", uncertainty="analytic")
    ...     return PerformanceEstimate(model_name="m", model_version="1", task="binary", window=i,
    ...                                events=5000, band_z=3, metrics=[m], created_at=0, end_event_time=i)
    >>> watch = EstimateWatch("accuracy", 0.7)
    >>> alerts = [watch.check(window(i, a)) for i, a in enumerate([0.8, 0.65, 0.6, 0.75, 0.68])]
    >>> [(a.status, a.severity, a.since_window) if a else None for a in alerts]
    [None, ('firing', 'critical', 1), None, ('resolved', 'critical', 1), ('firing', 'warning', 4)]
    """

    def __init__(self, metric: str, threshold: float, min_events: int = 100, cooldown_ms: int = 0) -> None:
        self.metric = metric
        self.threshold = threshold
        self.min_events = min_events
        self.higher_is_better = metric in UNIT_METRICS
        self.gate = AlertGate(cooldown_ms)
        self.firing: dict[str, EstimatedKpiAlert] = {}  # "name:version" -> the alert of its open episode

    def check(self, estimate: PerformanceEstimate) -> EstimatedKpiAlert | None:
        """The alert this window's estimate sends (firing, or resolved), or None."""
        m = estimate.metric(Task(estimate.task).metric_name(self.metric))  # a multiclass f1: f1_macro
        if m is None or m.estimate is None or estimate.events < self.min_events:
            return None
        model = str(ModelKey(estimate.model_name, estimate.model_version))
        bad = self._past(m.estimate)
        episode = self.firing.get(model)
        if not bad:
            if episode is None:
                return None
            del self.firing[model]
            if not self.gate.resolve("estimated", model):
                return None
            return self._alert(estimate, m, "resolved", episode.severity, episode.since_window)
        if episode is not None:
            return None
        whole_band = (
            m.lower is not None
            and m.upper is not None
            and self._past(m.upper if self.higher_is_better else m.lower)
        )
        alert = self._alert(estimate, m, "firing", "critical" if whole_band else "warning", estimate.window)
        self.firing[model] = alert
        return alert if self.gate.fire("estimated", model, estimate.end_event_time or 0) else None

    def _past(self, value: float) -> bool:
        return value < self.threshold if self.higher_is_better else value > self.threshold

    def _alert(self, estimate: PerformanceEstimate, m, status: str, severity: str, since: int | None):
        model = str(ModelKey(estimate.model_name, estimate.model_version))
        side = ("below" if self.higher_is_better else "above") if status == "firing" else "back past"
        band = f"[{m.lower:.4f}, {m.upper:.4f}]" if m.lower is not None and m.upper is not None else "n/a"
        resolved = f"; resolved (since window {since})" if status == "resolved" else ""
        return EstimatedKpiAlert(
            model_name=estimate.model_name,
            model_version=estimate.model_version,
            window=estimate.window,
            start_event_time=estimate.start_event_time,
            end_event_time=estimate.end_event_time,
            events=estimate.events,
            metric=m.metric,
            estimate=m.estimate,
            lower=m.lower,
            upper=m.upper,
            threshold=self.threshold,
            message=f"{model} window {estimate.window}: estimated {m.metric} {m.estimate:.4f} {side} "
            f"{self.threshold} (band {band}, {estimate.events:,} events, before labels){resolved}",
            created_at=int(time.time() * 1000),
            status=status,
            severity=severity,
            since_window=since,
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
