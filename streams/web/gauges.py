"""Gauges and counters set when something happens: a drift window closes, a KPI snapshot comes.

Counters whose labels are known before their first event (drift alerts, windows and
detector changes, concept-drift changes of each serving model) are created at 0 by
``start``: Prometheus' ``increase()`` and ``rate()`` see a change only against an earlier
sample of the same series, so a series that appears at its first increment hides exactly
the event an alert waits for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge

from schemas.alerts import AlertStatus
from schemas.drift import (
    PREDICTED_CLASS,
    ClassDrift,
    ClassProbabilityDrift,
    DetectorChange,
    DriftReport,
    PredictedClassDrift,
    probability_test,
)
from schemas.feedback import ConceptDriftAlert, JoinCounts, MetricsSnapshot

FEATURE_LABELS = ("model_name", "model_version", "feature")
MODEL_LABELS = ("model_name", "model_version")
DETECTORS: tuple[str, ...] = get_args(DetectorChange.model_fields["detector"].annotation)
STATUSES: tuple[str, ...] = get_args(AlertStatus)


class DriftGauges:
    """Every statistic of the last closed window, per model version and feature; a multiclass model's
    outputs under ``feature`` ``(predicted class)`` and ``(probability NAME)``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def feature_gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, FEATURE_LABELS, registry=registry)

        def model_gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, MODEL_LABELS, registry=registry)

        self.psi = feature_gauge("streamscore_drift_psi", "Population stability index of the last window")
        self.ks_statistic = feature_gauge("streamscore_drift_ks_statistic", "Two-sample KS statistic")
        self.ks_p_value = feature_gauge("streamscore_drift_ks_p_value", "Two-sample KS p-value")
        self.chi2_statistic = feature_gauge("streamscore_drift_chi2_statistic", "Chi-square statistic")
        self.chi2_p_value = feature_gauge("streamscore_drift_chi2_p_value", "Chi-square p-value")
        self.missing_rate_change = feature_gauge(
            "streamscore_drift_missing_rate_change", "Missing rate of the window minus training's"
        )
        self.mean_shift = feature_gauge(
            "streamscore_drift_mean_shift_sd", "Window mean minus training mean, in training sd"
        )
        self.drifted = feature_gauge("streamscore_drift_drifted", "1 when the feature crossed a threshold")
        self.prediction_psi = model_gauge("streamscore_prediction_drift_psi", "PSI of the score")
        self.prediction_ks_statistic = model_gauge(
            "streamscore_prediction_drift_ks_statistic", "KS of the score"
        )
        self.prediction_ks_p_value = model_gauge(
            "streamscore_prediction_drift_ks_p_value", "KS p-value of the score"
        )
        self.prediction_drifted = model_gauge(
            "streamscore_prediction_drift_drifted", "1 when the score crossed a threshold"
        )
        self.windows = Counter(
            "streamscore_drift_windows", "Closed drift windows", MODEL_LABELS, registry=registry
        )
        self.alerts = Counter(
            "streamscore_drift_alerts", "Firing drift alerts sent", MODEL_LABELS, registry=registry
        )
        self.changes = Counter(
            "streamscore_drift_detector_changes",
            "Changes reported by streaming detectors",
            (*MODEL_LABELS, "detector", "stream"),
            registry=registry,
        )
        self.listeners: list[Callable[[DriftReport], None]] = []  # e.g. the dashboard

    def on_report(self, report: DriftReport, alerted: bool) -> None:
        self.record(report)
        if alerted:
            self.alerts.labels(report.model_name, report.model_version).inc()

    def start(self, model_name: str, model_version: str) -> None:
        """The counters of a model the drift role watches, at 0 (an existing series keeps its value)."""
        model = (model_name, model_version)
        self.windows.labels(*model)
        self.alerts.labels(*model)
        for detector in DETECTORS:  # the drift monitor's detectors watch the score stream
            self.changes.labels(*model, detector, "score")

    def record(self, report: DriftReport) -> None:
        model = (report.model_name, report.model_version)
        for f in report.features:
            labels = (*model, f.feature)
            for gauge, value in (
                (self.psi, f.psi),
                (self.ks_statistic, f.ks_statistic),
                (self.ks_p_value, f.ks_p_value),
                (self.chi2_statistic, f.chi2_statistic),
                (self.chi2_p_value, f.chi2_p_value),
                (self.missing_rate_change, f.missing_rate_change),
                (self.mean_shift, f.mean_shift_sd),
                (self.drifted, float(f.drifted)),
            ):
                if value is not None:
                    gauge.labels(*labels).set(value)
        if report.classes is not None:  # a multiclass model's outputs, named as in its drift alerts
            self._record_classes(model, report.classes)
        p = report.prediction
        for gauge, value in (
            (self.prediction_psi, p.psi),
            (self.prediction_ks_statistic, p.ks_statistic),
            (self.prediction_ks_p_value, p.ks_p_value),
        ):
            if value is not None:
                gauge.labels(*model).set(value)
        self.prediction_drifted.labels(*model).set(float(p.drifted))
        self.windows.labels(*model).inc()
        for change in report.changes:
            self.changes.labels(*model, change.detector, change.stream).inc()
        for listener in self.listeners:
            listener(report)

    def _record_classes(self, model: tuple[str, str], classes: ClassDrift) -> None:
        tests: list[tuple[str, PredictedClassDrift | ClassProbabilityDrift]] = [
            (PREDICTED_CLASS, classes.predicted)
        ]
        tests += [(probability_test(c.name), c) for c in classes.probabilities]
        for name, test in tests:
            for gauge, value in (
                (self.psi, test.psi),
                (self.ks_statistic, getattr(test, "ks_statistic", None)),
                (self.ks_p_value, getattr(test, "ks_p_value", None)),
                (self.chi2_statistic, getattr(test, "chi2_statistic", None)),
                (self.chi2_p_value, getattr(test, "chi2_p_value", None)),
                (self.drifted, float(test.drifted)),
            ):
                if value is not None:
                    gauge.labels(*model, name).set(value)


class KpiGauges:
    """KPIs of every model and segment from the last metrics snapshot."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("model", "segment_feature", "segment_value", "metric")
        self.rolling = Gauge(
            "streamscore_kpi_rolling", "KPI over the last window of labels", labels, registry=registry
        )
        self.cumulative = Gauge(
            "streamscore_kpi_cumulative", "KPI over every label", labels, registry=registry
        )
        self.labelled = Gauge(
            "streamscore_kpi_labelled_events",
            "Labelled events behind the KPIs",
            labels[:3],
            registry=registry,
        )
        self.join = Gauge("streamscore_label_join", "Label join counts", ("state",), registry=registry)
        self.concept_changes = Counter(
            "streamscore_concept_drift_changes",
            "Changes seen on the error stream of a serving model, every learn shard's once",
            ("model_version", "detector"),
            registry=registry,
        )
        self.concept_alerts = Counter(
            "streamscore_concept_drift_alerts",
            "Concept-drift alerts sent: one per change across shards (firing), and when it clears (resolved)",
            ("model_version", "status", "severity"),
            registry=registry,
        )
        self.listeners: list[Callable[[MetricsSnapshot], None]] = []  # e.g. the dashboard

    def start(self, model_version: str) -> None:
        """The learn role's series of a model that serves, at 0 (an existing series keeps its value)."""
        for detector in DETECTORS:
            self.concept_changes.labels(model_version, detector)
        for status in STATUSES:
            for severity in ("warning", "critical"):
                self.concept_alerts.labels(model_version, status, severity)
        for state in JoinCounts.model_fields:
            self.join.labels(state)

    def record(self, snapshot: MetricsSnapshot) -> None:
        for row in snapshot.kpis:
            segment = (row.model, row.segment_feature, row.segment_value)
            self.labelled.labels(*segment).set(row.count)
            for gauge, values in ((self.rolling, row.rolling), (self.cumulative, row.cumulative)):
                for metric, value in values.items():
                    if value is not None:
                        gauge.labels(*segment, metric).set(value)
        for state, count in snapshot.labels.model_dump().items():
            self.join.labels(state).set(count)
        for change in snapshot.changes:
            self.concept_changes.labels(change.model_version, change.detector).inc()
        for listener in self.listeners:
            listener(snapshot)

    def on_concept_alert(self, alert: ConceptDriftAlert) -> None:
        self.concept_alerts.labels(alert.change.model_version, alert.status, alert.severity).inc()
