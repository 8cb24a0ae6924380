"""Prometheus metrics of a worker, served at ``/metrics``: one registry per worker.

Score-path counters are read from ``ScoreCounters`` at scrape time (the hot path
updates plain integers once per batch, never a Prometheus object per event).
Drift statistics are gauges set once per closed window; KPIs once per metrics snapshot.

Counters whose labels are known before their first event (dead letters per stage, drift
alerts, windows and detector changes, concept-drift changes of each serving model) are
exported at 0 from the start (``WorkerMetrics.serve``): Prometheus' ``increase()`` and
``rate()`` see a change only against an earlier sample of the same series, so a series
that appears at its first increment hides exactly the event an alert waits for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from schemas.drift import DetectorChange, DriftReport
from schemas.feedback import JoinCounts, MetricsSnapshot
from scoring.errors import Stage
from scoring.lifecycle import Serving
from streams.kafka.lag import PartitionLag
from streams.services.handler import ScoreHandler
from streams.services.intake import Refusals
from streams.services.loop_stats import LoopStats
from streams.services.parts import WorkerParts
from streams.services.telemetry import ScoreCounters
from streams.settings import Role
from streams.web.estimates import EstimateGauges

FEATURE_LABELS = ("model_name", "model_version", "feature")
MODEL_LABELS = ("model_name", "model_version")
DETECTORS: tuple[str, ...] = get_args(DetectorChange.model_fields["detector"].annotation)


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
        every_stage = {stage.value: 0 for stage in Stage} | snap["dead_letters"]
        for stage, count in sorted(every_stage.items()):
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

    def start(self, model_version: str) -> None:
        """The learn role's series of a model that serves, at 0 (an existing series keeps its value)."""
        for detector in DETECTORS:
            self.concept_changes.labels(model_version, detector)
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


class ModelCollector(Collector):
    """The model serving now, read from the handler at scrape time (a hot swap shows at the next scrape)."""

    def __init__(self, handler: ScoreHandler) -> None:
        self.handler = handler

    def collect(self) -> Iterator[GaugeMetricFamily]:
        bundle, loaded_at = self.handler.bundle, self.handler.loaded_at
        # no load time among the labels: each load would start a new series (it is the next gauge)
        info = GaugeMetricFamily(
            "streamscore_model_info", "The model this worker serves (always 1)", labels=list(MODEL_LABELS)
        )
        info.add_metric([bundle.name, bundle.version], 1)
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
            "Share of entities a challenger serves (split); 0 in shadow mode, where it only scores, "
            'and 0 with mode="none" and no model labels while no challenger serves',
            labels=[*MODEL_LABELS, "mode"],
        )
        serving = self.handler.serving
        if serving.challenger is not None and serving.mode is not None:
            other = serving.challenger
            challenger.add_metric([other.name, other.version, serving.mode.value], serving.share)
        else:
            challenger.add_metric(["", "", "none"], 0.0)  # Prometheus drops the empty labels
        yield challenger


class RefusalCollector(Collector):
    """Side-topic records refused per topic and reason, and times clamped, read at scrape time."""

    def __init__(self, refusals: Refusals) -> None:
        self.refusals = refusals

    def collect(self) -> Iterator[CounterMetricFamily]:
        refused = CounterMetricFamily(
            "streamscore_records_refused",
            "Records of labels and monitor not used, kept on their dead-letter topic",
            labels=["topic", "reason"],
        )
        for (topic, reason), count in sorted(dict(self.refusals.refused).items()):
            refused.add_metric([topic, reason], count)
        yield refused
        clamped = CounterMetricFamily(
            "streamscore_times_clamped",
            "Event or label times past their record's broker timestamp by more than the allowed skew",
            labels=["topic"],
        )
        for topic, count in sorted(dict(self.refusals.clamped).items()):
            clamped.add_metric([topic], count)
        yield clamped


class RoleCollector(Collector):
    """Each supervised role's state and restarts, and its loop's batches and commit outcomes."""

    def __init__(self, parts: WorkerParts) -> None:
        self.parts = parts

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "streamscore_role_up", "1 while the role runs, 0 while it restarts or failed", labels=["role"]
        )
        restarts = CounterMetricFamily(
            "streamscore_role_restarts", "Times a failed role was started again", labels=["role"]
        )
        commits = CounterMetricFamily(
            "streamscore_commits",
            "Offset commits by outcome: committed, refused (the group moved on), retried, abandoned",
            labels=["role", "outcome"],
        )
        failures = CounterMetricFamily(
            "streamscore_delivery_failures", "Records the broker did not acknowledge", labels=["role"]
        )
        for name, service in sorted(self.parts.roles.items()):
            up.add_metric([name], float(service.health.state == "running"))
            restarts.add_metric([name], service.health.restarts)
            stats = self.parts.loops[name]
            for outcome, count in vars(stats.commits).items():
                commits.add_metric([name, outcome], count)
            failures.add_metric([name], stats.delivery_failures)
        yield from (up, restarts, commits, failures)


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
    roles: frozenset[Role] = field(default_factory=lambda: frozenset(Role))

    def serve(self, serving: Serving) -> None:
        """Call at start and at every change of the models served: their counters exist from then on."""
        for bundle in (serving.champion, serving.challenger):
            if bundle is None:
                continue
            if Role.drift in self.roles:
                self.drift.start(bundle.name, bundle.version)
                self.estimates.start(bundle)
            if Role.learn in self.roles:
                self.kpis.start(bundle.version)


def worker_registry(
    counters: ScoreCounters,
    handler: ScoreHandler,
    roles: frozenset[Role] = frozenset(Role),
    refusals: Refusals | None = None,
) -> WorkerMetrics:
    """The registry of a worker running ``roles``; the series of the models it serves start at 0."""
    registry = CollectorRegistry()
    registry.register(ScoreCollector(counters))
    if refusals is not None:
        registry.register(RefusalCollector(refusals))
    registry.register(ModelCollector(handler))
    lag = LagCollector()
    registry.register(lag)
    estimates = EstimateGauges(registry)
    metrics = WorkerMetrics(registry, DriftGauges(registry), KpiGauges(registry), lag, estimates, roles)
    metrics.kpis.listeners.append(estimates.on_snapshot)
    metrics.serve(handler.serving)
    return metrics
