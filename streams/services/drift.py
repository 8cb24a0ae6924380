"""The drift path: reads ``monitor``, keeps windows (``scoring.drift``), writes ``drift``.

Each closed window gives its ``DriftReport`` and, when the model version's bundle can
estimate its KPIs, a ``PerformanceEstimate`` of the same events as a message of its own
(docs/estimation.md says why); a window's estimated KPI past the alert threshold adds an
``EstimatedKpiAlert`` and a ``RetrainRequest`` (trigger ``estimated``).

Two ways to run it, as for scoring: a service in the worker with its own
confluent-kafka consumer (the default), or a plain Faust agent. Either has its own
consumer group, so the score path never waits on it. A monitoring message it cannot
read is counted and logged, never raised.

Windows live in memory: a restart starts fresh windows (the events of an open
window at a crash are not reported); reports and alerts are derived data.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import faust
import numpy as np
import orjson
from confluent_kafka import Consumer, Message, Producer

from schemas import headers as h
from schemas.drift import DriftReport
from schemas.estimation import EstimatedKpiAlert, PerformanceEstimate
from scoring.drift import DriftMonitor, MonitorColumns, alert_for
from scoring.retrain import EstimateWatch, from_drift, from_estimate
from streams.kafka.config import group_consumer_config, producer_config
from streams.kafka.names import groups
from streams.services.loop import (
    ClientCallbacks,
    ClientFactory,
    LoopContext,
    LoopStats,
    ServiceLoop,
    Step,
    Subscribe,
)
from streams.services.policies import Periodic
from streams.settings import Settings

log = logging.getLogger(__name__)

COMMIT_EVERY_S = 5.0


@dataclass
class DriftCounters:
    messages: int = 0
    events: int = 0
    unreadable: int = 0
    reports: int = 0
    alerts: int = 0
    estimates: int = 0
    estimate_alerts: int = 0


def decode_monitor(value: bytes) -> MonitorColumns:
    """A ``MonitorBatch`` message as numpy columns (null cells become NaN)."""
    body = orjson.loads(value)
    rows = np.array(body["rows"], dtype=float)
    scores = np.asarray(body["scores"], dtype=float)
    n = len(scores)
    if rows.shape != (n, len(body["feature_names"])) or not (
        len(body["offsets"]) == len(body["event_ids"]) == len(body["event_times"]) == n
    ):
        raise ValueError(f"monitor columns disagree in length: {n} scores, rows {rows.shape}")
    shadow = body.get("shadow_scores")
    shadow_scores = None if shadow is None else np.array(shadow, dtype=float)
    if shadow_scores is not None and shadow_scores.shape != (n,):
        raise ValueError(f"{len(shadow)} shadow scores for {n} rows")
    return MonitorColumns(
        model_name=body["model_name"],
        model_version=body["model_version"],
        source_topic=body["source_topic"],
        partition=int(body["partition"]),
        offsets=body["offsets"],
        event_ids=body["event_ids"],
        event_times=body["event_times"],
        scores=scores,
        rows=rows,
        shadow_model=f"{body['shadow_model_name']}:{body['shadow_model_version']}" if shadow else None,
        shadow_scores=shadow_scores,
    )


Out = tuple[str, bytes, bytes, list[tuple[str, bytes]] | None]  # topic, key, value, headers
ReportListener = Callable[[DriftReport, bool], None]  # a closed window's report; True if it alerted
EstimateListener = Callable[[PerformanceEstimate, EstimatedKpiAlert | None], None]


class DriftStep(Step):
    """One monitoring message in; the reports, alerts and retrain requests it causes out.

    Shared by the two drift paths: the Faust agent (``__call__``) and the service loop (``process``).
    """

    def __init__(
        self,
        settings: Settings,
        monitor: DriftMonitor,
        on_report: ReportListener | None = None,
        on_estimate: EstimateListener | None = None,
    ) -> None:
        self.settings = settings
        self.monitor = monitor
        self.on_report = on_report  # e.g. the /metrics gauges
        self.on_estimate = on_estimate
        self.estimate_watch = EstimateWatch(settings.alert_kpi_metric, settings.alert_kpi_min)
        self.counters = DriftCounters()

    def __call__(self, value: bytes | None) -> list[Out]:
        counters, topic = self.counters, self.settings.topic_drift
        counters.messages += 1
        try:
            columns = decode_monitor(value or b"")
            closed = self.monitor.observe_windows(columns)
        except Exception:
            counters.unreadable += 1
            log.exception("unreadable monitoring message skipped")
            return []
        counters.events += len(columns)
        out: list[Out] = []
        for window in closed:
            report = window.report
            key = f"{report.model_name}:{report.model_version}".encode()
            ce_id = f"{report.model_name}:{report.model_version}:{report.window}"
            headers = _ce(h.DRIFT_REPORT_CE_TYPE, ce_id, report.created_at)
            out.append((topic, key, report.model_dump_json().encode(), headers))
            counters.reports += 1
            if window.estimate is not None:
                out += self._estimate(window.estimate, key, ce_id)
            alert = alert_for(report)
            if self.on_report is not None:
                self.on_report(report, alert is not None)
            if alert is None:
                continue
            headers = _ce(h.DRIFT_ALERT_CE_TYPE, ce_id + ":alert", report.created_at)
            out.append((topic, key, alert.model_dump_json().encode(), headers))
            out.append(
                (self.settings.topic_retrain, b"drift", from_drift(alert).model_dump_json().encode(), None)
            )
            counters.alerts += 1
            log.warning("drift alert: %s", alert.message)
        return out

    def _estimate(self, estimate: PerformanceEstimate, key: bytes, ce_id: str) -> list[Out]:
        """A window's estimate, and an alert and a retrain request if its KPI crossed the threshold."""
        topic, at = self.settings.topic_drift, estimate.created_at
        headers = _ce(h.ESTIMATE_CE_TYPE, ce_id + ":estimate", at)
        out: list[Out] = [(topic, key, estimate.model_dump_json().encode(), headers)]
        self.counters.estimates += 1
        alert = self.estimate_watch.check(estimate)
        if self.on_estimate is not None:
            self.on_estimate(estimate, alert)
        if alert is None:
            return out
        headers = _ce(h.ESTIMATE_ALERT_CE_TYPE, ce_id + ":estimate-alert", at)
        out.append((topic, key, alert.model_dump_json().encode(), headers))
        request = from_estimate(alert).model_dump_json().encode()
        out.append((self.settings.topic_retrain, b"estimated", request, None))
        self.counters.estimate_alerts += 1
        log.warning("estimated KPI alert: %s", alert.message)
        return out

    def process(self, records: list[Message], context: LoopContext) -> None:
        emit = context.emit
        for record in records:
            for topic, key, body, headers in self(record.value()):
                emit(topic, key, body, headers)


def register_drift_agent(app: faust.App, settings: Settings, step: DriftStep) -> None:
    """The drift path as a plain Faust agent over ``monitor`` (``STREAMSCORE_DRIFT_PATH=agent``)."""
    source = app.topic(settings.topic_monitor, key_serializer="raw", value_serializer="raw")
    sinks = {
        name: app.topic(name, key_serializer="raw", value_serializer="raw")
        for name in (settings.topic_drift, settings.topic_retrain)
    }

    @app.agent(source, name="drift", concurrency=1)
    async def drift(stream: faust.StreamT) -> None:
        async for value in stream:
            for topic, key, body, headers in step(value):
                await sinks[topic].send(key=key, value=body, headers=headers)


def drift_clients(settings: Settings) -> ClientFactory:
    def make(callbacks: ClientCallbacks) -> tuple[Consumer, Producer]:
        config = group_consumer_config(settings, groups(settings).drift, fetch_wait_max_ms=100)
        return Consumer({**config, **callbacks.consumer}), Producer(
            {**producer_config(settings), **callbacks.producer}
        )

    return make


def run_drift(
    settings: Settings, step: DriftStep, stats: LoopStats, clients: ClientFactory | None = None
) -> Callable[[threading.Event], None]:
    """The drift path on its own confluent-kafka consumer (``STREAMSCORE_DRIFT_PATH=batch``).

    Faust's consumer costs most of the drift agent's time (it read 81,800 events/s
    alone, while decoding and windows cost 3.6 us per event); librdkafka does the
    fetching in C, off the interpreter lock. Offsets are committed every few seconds
    after the outputs before them are acknowledged; windows live in memory either way.
    """

    def run(stopping: threading.Event) -> None:
        ServiceLoop(
            "drift",
            clients or drift_clients(settings),
            step,
            Periodic(COMMIT_EVERY_S),
            Subscribe([settings.topic_monitor]),
            stopping,
            batch_size=100,
            linger_s=0.2,
            stats=stats,
            commit_deadline_s=settings.session_timeout_s,
        ).run()

    return run


def _ce(ce_type: str, ce_id: str, at_ms: int) -> list[tuple[str, bytes]]:
    return h.ce_headers(ce_type, ce_id, at_ms, source="streamscore/drift")
