"""What ``/dashboard`` shows of performance estimates: each window's estimated KPI, then the realized one.

The drift role hands in each closed window's ``PerformanceEstimate`` (with its alert, if
any); the learn role's KPI snapshots bring the ``EstimateCheck`` of each window whose
labels came, which fills in the realized value beside the estimate. A worker running
both roles shows both; one running only one of them shows what it has.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from schemas.estimation import EstimatedKpiAlert, PerformanceEstimate
from schemas.feedback import MetricsSnapshot
from schemas.keys import ModelKey, Task

AlertSink = Callable[[str, str, float], None]  # kind, message, epoch seconds


class EstimateBoard:
    """Per window of every model version: the estimated primary KPI, its band, and the realized KPI."""

    def __init__(self, points: int, on_alert: AlertSink) -> None:
        self.points = points
        self.on_alert = on_alert
        self._windows: OrderedDict[tuple[str, int | None], dict] = OrderedDict()
        self._lock = threading.Lock()  # estimates come from the drift thread, checks from the learn thread

    def on_estimate(self, estimate: PerformanceEstimate, alert: EstimatedKpiAlert | None) -> None:
        model = str(ModelKey(estimate.model_name, estimate.model_version))
        metric = Task(estimate.task).primary_metric
        m = estimate.metric(metric)
        point = {
            "model": model,
            "window": estimate.window,
            "events": estimate.events,
            "at": estimate.created_at / 1000,
            "metric": metric,
            "estimate": m.estimate if m else None,
            "lower": m.lower if m else None,
            "upper": m.upper if m else None,
            "realized": None,
            "labelled": 0,
            "disagree": None,
        }
        with self._lock:
            self._windows[(model, estimate.window)] = point
            while len(self._windows) > self.points:
                self._windows.popitem(last=False)
        if alert is not None:
            self.on_alert("estimated_kpi", alert.message, alert.created_at / 1000)

    def on_snapshot(self, snapshot: MetricsSnapshot) -> None:
        for check in snapshot.estimate_checks:
            model = str(ModelKey(check.model_name, check.model_version))
            with self._lock:
                point = self._windows.get((model, check.window))
                if point is not None:
                    realized = {c.metric: c.realized for c in check.checks}
                    point.update(
                        realized=realized.get(point["metric"]),
                        labelled=check.labelled,
                        disagree=check.disagree,
                    )
            if check.disagree:
                self.on_alert("estimate_check", check.message, check.created_at / 1000)

    def data(self) -> dict:
        """The windows, oldest first: plain JSON values."""
        with self._lock:
            return {"windows": [dict(point) for point in self._windows.values()]}
