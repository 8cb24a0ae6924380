"""Prometheus gauges of performance estimates: each model version's KPIs estimated per drift window.

``streamscore_estimated_kpi{model_name,model_version,metric}`` is the last closed
window's estimate, with its band in ``..._lower`` and ``..._upper``. The series of a
version are created when a drift worker starts serving a bundle that can estimate
(NaN until its first window closes), so a rule or a dashboard finds them from the start. Once labels
come, ``streamscore_estimate_checks_total{...,disagree}`` counts the windows whose
realized KPIs fell inside (``false``) or outside (``true``) the estimate's band.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from schemas.estimation import EstimatedKpiAlert, PerformanceEstimate
from schemas.feedback import MetricsSnapshot
from scoring.estimation.estimator import METRICS
from scoring.model.bundle import ModelBundle
from streams.web.gauges import MODEL_LABELS

METRIC_LABELS = (*MODEL_LABELS, "metric")
EstimateListener = Callable[[PerformanceEstimate, EstimatedKpiAlert | None], None]


class EstimateGauges:
    """The last estimate per model version and metric, its band, alerts and checks."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.value = Gauge(
            "streamscore_estimated_kpi",
            "KPI of the last closed drift window, estimated from its scores before labels",
            METRIC_LABELS,
            registry=registry,
        )
        self.lower = Gauge(
            "streamscore_estimated_kpi_lower",
            "Lower end of the estimate's band: estimate - band_z x sqrt(std^2 + estimator_std^2)",
            METRIC_LABELS,
            registry=registry,
        )
        self.upper = Gauge(
            "streamscore_estimated_kpi_upper",
            "Upper end of the estimate's band",
            METRIC_LABELS,
            registry=registry,
        )
        self.alerts = Counter(
            "streamscore_estimated_kpi_alerts",
            "Windows whose estimated KPI crossed STREAMSCORE_ALERT_KPI_MIN (each an EstimatedKpiAlert)",
            MODEL_LABELS,
            registry=registry,
        )
        self.checks = Counter(
            "streamscore_estimate_checks",
            "Windows whose labels came, by whether a realized KPI fell outside the estimate's band",
            (*MODEL_LABELS, "disagree"),
            registry=registry,
        )
        self.listeners: list[EstimateListener] = []  # e.g. the dashboard

    def start(self, bundle: ModelBundle) -> None:
        """A served version's series, if its bundle can estimate (NaN until its first window closes)."""
        if bundle.estimation_note is None:
            self.watch(bundle.name, bundle.version, METRICS[bundle.task])

    def watch(self, model_name: str, model_version: str, metrics: Iterable[str]) -> None:
        """Create a version's series (NaN until its first window closes)."""
        for metric in metrics:
            for gauge in (self.value, self.lower, self.upper):
                gauge.labels(model_name, model_version, metric).set(math.nan)
        self.alerts.labels(model_name, model_version)

    def on_estimate(self, estimate: PerformanceEstimate, alert: EstimatedKpiAlert | None) -> None:
        model = (estimate.model_name, estimate.model_version)
        for m in estimate.metrics:
            for gauge, value in ((self.value, m.estimate), (self.lower, m.lower), (self.upper, m.upper)):
                gauge.labels(*model, m.metric).set(math.nan if value is None else value)
        if alert is not None:
            self.alerts.labels(*model).inc()
        for listener in self.listeners:
            listener(estimate, alert)

    def on_snapshot(self, snapshot: MetricsSnapshot) -> None:
        for check in snapshot.estimate_checks:
            self.checks.labels(check.model_name, check.model_version, str(check.disagree).lower()).inc()
