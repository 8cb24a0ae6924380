"""Collectors that read a worker's plain counters when Prometheus scrapes (the hot path never
touches a Prometheus object): the score path, the serving model, refused side-topic records,
the supervised roles and their loops, consumer lag.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from scoring.errors import Stage
from streams.kafka.lag import PartitionLag
from streams.services.loop.stats import LoopStats
from streams.services.parts import WorkerParts
from streams.services.score.handler import ScoreHandler
from streams.services.score.telemetry import ScoreCounters
from streams.services.shared.intake import Refusals
from streams.web.gauges import MODEL_LABELS


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
    """Side- and state-topic records refused per topic and reason, and times clamped, read at scrape time."""

    def __init__(self, refusals: Refusals) -> None:
        self.refusals = refusals

    def collect(self) -> Iterator[CounterMetricFamily]:
        refused = CounterMetricFamily(
            "streamscore_records_refused",
            "Records not used: of labels and monitor (kept on their dead-letter topic), "
            "and of drift-partials and checkpoints (counted only)",
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
