"""The drift path: reads ``monitor``, keeps windows (``scoring.drift``), writes ``drift``.

Two ways to run it, as for scoring: a service in the worker with its own
confluent-kafka consumer (the default), or a plain Faust agent. Either has its own
consumer group, so the score path never waits on it. A monitoring message it cannot
read is counted and logged, never raised.

Each closed window gives its ``DriftReport`` and, when the model version's bundle can
estimate its KPIs, a ``PerformanceEstimate`` of the same events as a message of its own
(docs/estimation.md says why). Alerts go out per episode (``scoring.alerts``): a
``DriftAlert`` when a version's windows start drifting and when they stop, an
``EstimatedKpiAlert`` when its estimated KPI crosses the alert threshold and when it is
back; a firing one also asks for retraining (``RetrainRequest``, trigger ``drift`` or
``estimated``). A cool-down per alert kind and model version holds back a flapping one.

Windows live in memory: a restart starts fresh windows (the events of an open
window at a crash are not reported); reports and alerts are derived data. Their
CloudEvents ids are ``name:version:epoch:window`` (``epoch``: when these windows started, in
epoch milliseconds), so windows numbered from 0 again after a restart get ids of their own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Message, TopicPartition

from schemas import headers as h
from schemas.drift import DriftReport
from schemas.estimation import EstimatedKpiAlert, PerformanceEstimate
from schemas.keys import ModelKey
from scoring.alerts import DriftAlerting
from scoring.drift import DriftMonitor, DriftThresholds
from scoring.lifecycle.retrain import EstimateWatch, from_drift, from_estimate
from scoring.model.bundle import ModelBundle
from scoring.model.monitor_rows import RecordShape
from streams.kafka.config import SIDE_PREFETCH_KBYTES, group_consumer_config, producer_config
from streams.kafka.names import groups
from streams.kafka.records import Emit, KafkaRecord
from streams.services.loop.policies import Never, Periodic
from streams.services.loop.runner import kafka_clients, runner
from streams.services.loop.service_loop import ClientFactory
from streams.services.loop.stats import LoopStats
from streams.services.loop.step import LoopContext, Step, Subscribe
from streams.services.shared.intake import MonitorIntake, Refusal, Refusals
from streams.services.shared.monitor_decodes import MonitorDecodes
from streams.settings import Settings

log = logging.getLogger(__name__)

COMMIT_EVERY_S = 5.0


def drift_thresholds(settings: Settings) -> DriftThresholds:
    """How the windows' tests are flagged, as the settings say (``STREAMSCORE_DRIFT_*``)."""
    return DriftThresholds(
        psi=settings.drift_psi_threshold,
        p_value=settings.drift_p_value,
        psi_floor=settings.drift_psi_floor,
        correction=settings.drift_correction,
    )


@dataclass
class DriftCounters:
    messages: int = 0
    events: int = 0
    unreadable: int = 0
    reports: int = 0
    alerts: int = 0  # firing drift alerts sent
    resolved: int = 0  # resolved drift alerts sent
    estimates: int = 0
    estimate_alerts: int = 0


ReportListener = Callable[[DriftReport, bool], None]  # a closed window's report; True if it alerted
EstimateListener = Callable[[PerformanceEstimate, EstimatedKpiAlert | None], None]


class DriftStep(Step):
    """One monitoring record in; the reports, alerts and retrain requests it causes out.

    Shared by the two drift paths: the Faust agent and the service loop. A record the
    intake refuses goes to ``monitor.dlq``; a record the windows raise on is dead-lettered
    too (a defect, kept for a look): the drift role goes on with the next.
    """

    commits_itself = False  # True: the step commits the offsets it made durable (no periodic commit)

    def __init__(
        self,
        settings: Settings,
        monitor: DriftMonitor,
        refusals: Refusals,
        on_report: ReportListener | None = None,
        on_estimate: EstimateListener | None = None,
        decodes: MonitorDecodes | None = None,
    ) -> None:
        self.settings = settings
        self.monitor = monitor
        self.on_report = on_report  # e.g. the /metrics gauges
        self.on_estimate = on_estimate
        cooldown_ms = int(settings.alert_cooldown_seconds * 1000)
        self.estimate_watch = EstimateWatch(
            settings.alert_kpi_metric, settings.alert_kpi_min, cooldown_ms=cooldown_ms
        )
        self.drift_alerts = DriftAlerting(cooldown_ms)
        self.counters = DriftCounters()
        self.epoch = int(time.time() * 1000)  # when these windows started: in the reports' ids
        self.shapes: dict[tuple[str, str], RecordShape] = {}
        self.intake = MonitorIntake(settings, refusals, lambda n, v: self.shapes.get((n, v)), decodes)

    def assigned(self, partitions: list[TopicPartition]) -> None:
        owned = sorted(tp.partition for tp in partitions if tp.topic == self.settings.topic_monitor)
        if owned and len(owned) < self.settings.partitions:
            log.warning(
                "this drift worker's windows cover monitor partitions %s of %d: another drift worker has the "
                "rest, so each reports windows of its share; set STREAMSCORE_DRIFT_WINDOWS=partitions on "
                "every drift worker to merge them",
                owned,
                self.settings.partitions,
            )

    def register(self, bundle: ModelBundle) -> None:
        """Watch a model version: its windows, and its spec for checking the records that name it."""
        self.monitor.register(bundle)
        self.shapes[(bundle.name, bundle.version)] = RecordShape(bundle.spec, bundle.class_names)

    def stats(self) -> dict:
        """The windows' figures for ``/stats``, beside the counters."""
        return {
            "open_window_events": self.monitor.open_events(),
            "unknown_version_events": self.monitor.unknown_version_events,
            "windows_without_estimate": self.monitor.windows_without_estimate(),
            **self.intake.decode_stats(),
        }

    def process(self, records: list[Message], context: LoopContext) -> None:
        for record in records:
            self.handle(record, context.emit)

    def handle(self, record: KafkaRecord, emit: Emit) -> None:
        counters = self.counters
        counters.messages += 1
        columns = self.intake.decode(record, emit)
        if columns is None:
            counters.unreadable += 1
            return
        try:
            closed = self.monitor.observe_windows(columns)
        except Exception as exc:
            log.exception("the drift windows failed on a monitoring record")
            counters.unreadable += 1
            self.intake.refuse(record, Refusal.failed, repr(exc), emit, type(exc).__name__)
            return
        counters.events += len(columns)
        for window in closed:
            self._publish(window.report, emit)
            if window.estimate is not None:
                self._estimate(window.estimate, emit)

    def _publish(self, report: DriftReport, emit: Emit) -> None:
        topic, counters = self.settings.topic_drift, self.counters
        model = ModelKey(report.model_name, report.model_version)
        key, ce_id = str(model).encode(), f"{model}:{self.epoch}:{report.window}"
        emit(
            topic,
            key,
            report.model_dump_json().encode(),
            _ce(h.DRIFT_REPORT_CE_TYPE, ce_id, report.created_at),
        )
        counters.reports += 1
        alert = self.drift_alerts.on_report(report)
        firing = alert is not None and alert.status == "firing"
        if self.on_report is not None:
            self.on_report(report, firing)
        if alert is None:
            return
        headers = _ce(h.DRIFT_ALERT_CE_TYPE, f"{ce_id}:alert:{alert.status}", report.created_at)
        emit(topic, key, alert.model_dump_json().encode(), headers)
        if firing:
            emit(self.settings.topic_retrain, b"drift", from_drift(alert).model_dump_json().encode(), None)
            counters.alerts += 1
        else:
            counters.resolved += 1
        log.warning("drift alert %s: %s", alert.status, alert.message)

    def _estimate(self, estimate: PerformanceEstimate, emit: Emit) -> None:
        """A window's estimate, and an alert and a retrain request if its KPI crossed the threshold."""
        topic, at = self.settings.topic_drift, estimate.created_at
        model = ModelKey(estimate.model_name, estimate.model_version)
        key, ce_id = str(model).encode(), f"{model}:{self.epoch}:{estimate.window}"
        emit(
            topic, key, estimate.model_dump_json().encode(), _ce(h.ESTIMATE_CE_TYPE, ce_id + ":estimate", at)
        )
        self.counters.estimates += 1
        alert = self.estimate_watch.check(estimate)
        if self.on_estimate is not None:  # the gauges and the dashboard count firing alerts
            self.on_estimate(estimate, alert if alert is not None and alert.status == "firing" else None)
        if alert is None:
            return
        emit(
            topic,
            key,
            alert.model_dump_json().encode(),
            _ce(h.ESTIMATE_ALERT_CE_TYPE, f"{ce_id}:estimate-alert:{alert.status}", at),
        )
        if alert.status == "firing":
            emit(
                self.settings.topic_retrain,
                b"estimated",
                from_estimate(alert).model_dump_json().encode(),
                None,
            )
            self.counters.estimate_alerts += 1
        log.warning("estimated KPI alert %s: %s", alert.status, alert.message)


def run_drift(
    settings: Settings, step: DriftStep, stats: LoopStats, clients: ClientFactory | None = None
) -> Callable[[threading.Event], None]:
    """The drift path on its own confluent-kafka consumer (``STREAMSCORE_DRIFT_PATH=batch``).

    Faust's consumer costs most of the drift agent's time (it read 81,800 events/s
    alone, while decoding and windows cost 3.6 us per event); librdkafka does the
    fetching in C, off the interpreter lock. Offsets are committed every few seconds
    after the outputs before them are acknowledged; windows live in memory either way.
    """
    consumer = group_consumer_config(
        settings, groups(settings).drift, fetch_wait_max_ms=100, prefetch_kbytes=SIDE_PREFETCH_KBYTES
    )
    clients = clients or kafka_clients(consumer, producer_config(settings))
    subscribe = Subscribe([settings.topic_monitor])
    policy = Never if step.commits_itself else lambda: Periodic(COMMIT_EVERY_S)
    return runner(
        "drift", clients, step, policy, lambda: subscribe, stats, 100, 0.2, settings.session_timeout_s
    )


def _ce(ce_type: str, ce_id: str, at_ms: int) -> list[tuple[str, bytes]]:
    return h.ce_headers(ce_type, ce_id, at_ms, source="streamscore/drift")
