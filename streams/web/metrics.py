"""Prometheus metrics of a worker, served at ``/metrics``: one registry per worker.

Score-path counters are read from ``ScoreCounters`` at scrape time (the hot path
updates plain integers once per batch, never a Prometheus object per event).
Drift statistics are gauges set once per closed window, as are estimated KPIs
(``estimates.py``); KPIs once per metrics snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from schemas.drift import DriftReport
from schemas.feedback import MetricsSnapshot
from streams.kafka.lag import PartitionLag
from streams.services.handler import ScoreHandler
from streams.services.loop import LoopStats
from streams.services.telemetry import ScoreCounters
from streams.web.estimates import EstimateGauges

FEATURE_LABELS = ("model_name", "model_version", "feature")
MODEL_LABELS = ("model_name", "model_version")


class DriftGauges:
    """Every statistic of the last closed window, per model version and feature."""

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
        self.windows = Counter(
            "streamscore_drift_windows", "Closed drift windows", MODEL_LABELS, registry=registry
        )
        self.alerts = Counter(
            "streamscore_drift_alerts", "Drift alerts sent", MODEL_LABELS, registry=registry
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
        p = report.prediction
        for gauge, value in (
            (self.prediction_psi, p.psi),
            (self.prediction_ks_statistic, p.ks_statistic),
            (self.prediction_ks_p_value, p.ks_p_value),
        ):
            if value is not None:
                gauge.labels(*model).set(value)
        self.windows.labels(*model).inc()
        for change in report.changes:
            self.changes.labels(*model, change.detector, change.stream).inc()
        for listener in self.listeners:
            listener(report)


class ScoreCollector(Collector):
    """Score-path counters, read from ``ScoreCounters`` when Prometheus scrapes."""

    def __init__(self, counters: ScoreCounters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        snap = self.counters.snapshot()
        yield CounterMetricFamily(
            "streamscore_events_consumed", "Feature events read", value=snap["consumed"]
        )
        yield CounterMetricFamily("streamscore_predictions", "Predictions produced", value=snap["scored"])
        dead = CounterMetricFamily(
            "streamscore_dead_letters", "Events dead-lettered, by stage", labels=["stage"]
        )
        for stage, count in sorted(snap["dead_letters"].items()):
            dead.add_metric([stage], count)
        yield dead
        yield CounterMetricFamily("streamscore_batches", "Score batches", value=snap["batches"])
        yield CounterMetricFamily(
            "streamscore_score_busy_seconds", "Seconds spent in the score step", value=snap["busy_seconds"]
        )
        docs = {
            "batch_seconds": ("streamscore_batch_duration_seconds", "Time to score and emit one batch"),
            "latency_seconds": (
                "streamscore_event_latency_seconds",
                "From the input record's Kafka timestamp to its prediction",
            ),
            "event_age_seconds": (
                "streamscore_event_time_lag_seconds",
                "From the event's own event_time to its prediction",
            ),
        }
        for key, (buckets, total) in self.counters.histograms().items():
            name, doc = docs[key]
            yield HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)


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
            "Changes seen on the error stream of a serving model (each also a ConceptDriftAlert)",
            ("model_version", "detector"),
            registry=registry,
        )
        self.listeners: list[Callable[[MetricsSnapshot], None]] = []  # e.g. the dashboard

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


class ModelCollector(Collector):
    """The model serving now, read from the handler at scrape time (a hot swap shows at the next scrape)."""

    def __init__(self, handler: ScoreHandler) -> None:
        self.handler = handler

    def collect(self) -> Iterator[GaugeMetricFamily]:
        bundle, loaded_at = self.handler.bundle, self.handler.loaded_at
        stamp = datetime.fromtimestamp(loaded_at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        info = GaugeMetricFamily(
            "streamscore_model_info",
            "The model this worker serves (always 1)",
            labels=["model_name", "model_version", "loaded_at"],
        )
        info.add_metric([bundle.name, bundle.version, stamp], 1)
        yield info
        loaded = GaugeMetricFamily(
            "streamscore_model_loaded_timestamp_seconds",
            "When the serving model was loaded, in epoch seconds",
            labels=list(MODEL_LABELS),
        )
        loaded.add_metric([bundle.name, bundle.version], loaded_at)
        yield loaded
        challenger = GaugeMetricFamily(
            "streamscore_challenger_share",
            "Share of entities a challenger serves (split); 0 in shadow mode, where it only scores",
            labels=[*MODEL_LABELS, "mode"],
        )
        serving = self.handler.serving
        if serving.challenger is not None and serving.mode is not None:
            other = serving.challenger
            challenger.add_metric([other.name, other.version, serving.mode.value], serving.share)
        yield challenger


class LagCollector(Collector):
    """Consumer-group lag of the worker's own groups.

    For the service loops, from their consumers' own statistics (librdkafka's per-partition
    ``consumer_lag``, no request of its own); for Faust's group (agent paths only), from the
    last sample read off the broker (``sampled``). Names follow kafka_exporter
    (``kafka_consumergroup_lag``) under the streamscore prefix.
    """

    def __init__(self) -> None:
        self.loops: list[tuple[str, LoopStats]] = []  # (group, the loop consuming in it)
        self.sampled: list[PartitionLag] = []
        self.sampled_at_: float | None = None

    def watch(self, group: str, stats: LoopStats) -> None:
        self.loops.append((group, stats))

    @property
    def rows(self) -> list[PartitionLag]:
        now = time.time()
        out = list(self.sampled)
        for group, stats in self.loops:
            for key, row in sorted(stats.lag.items()):
                seconds = stats.lag_seconds(key, now)
                out.append(
                    PartitionLag(group, row.topic, row.partition, row.committed, row.end, row.lag, seconds)
                )
        return out

    @property
    def sampled_at(self) -> float | None:
        """When the newest figures were taken; None before any."""
        times = [row.sampled_at for _, stats in self.loops for row in list(stats.lag.values())]
        if self.sampled_at_ is not None:
            times.append(self.sampled_at_)
        return max(times, default=None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["consumergroup", "topic", "partition"]
        lag = GaugeMetricFamily("streamscore_consumergroup_lag", "Records not yet consumed", labels=labels)
        seconds = GaugeMetricFamily(
            "streamscore_consumergroup_lag_seconds",
            "Age of the oldest record not yet consumed (0 when caught up)",
            labels=labels,
        )
        for r in self.rows:
            key = [r.group, r.topic, str(r.partition)]
            lag.add_metric(key, r.lag)
            seconds.add_metric(key, r.lag_seconds or 0.0)
        yield lag
        yield seconds


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry
    drift: DriftGauges
    kpis: KpiGauges
    lag: LagCollector
    estimates: EstimateGauges


def worker_registry(counters: ScoreCounters, handler: ScoreHandler) -> WorkerMetrics:
    registry = CollectorRegistry()
    registry.register(ScoreCollector(counters))
    registry.register(ModelCollector(handler))
    lag = LagCollector()
    registry.register(lag)
    metrics = WorkerMetrics(
        registry, DriftGauges(registry), KpiGauges(registry), lag, EstimateGauges(registry)
    )
    metrics.kpis.listeners.append(metrics.estimates.on_snapshot)
    return metrics
