"""The drift agent: reads ``monitor``, keeps windows (``scoring.drift``), writes ``drift``.

It runs in the worker's Faust app on its own consumer group (the app id), so the
score path never waits on it. A monitoring message it cannot read is counted and
logged, never raised: an exception leaving a Faust agent would stop it.

Windows live in memory: a restart starts fresh windows (the events of an open
window at a crash are not reported); reports and alerts are derived data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faust
import numpy as np
import orjson

from schemas import headers as h
from scoring.drift import DriftMonitor, MonitorColumns, alert_for
from scoring.retrain import from_drift
from streams.metrics import DriftGauges
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class DriftCounters:
    messages: int = 0
    events: int = 0
    unreadable: int = 0
    reports: int = 0
    alerts: int = 0


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


def register_drift_agent(
    app: faust.App, settings: Settings, monitor: DriftMonitor, gauges: DriftGauges
) -> DriftCounters:
    source = app.topic(settings.topic_monitor, key_serializer="raw", value_serializer="raw")
    sink = app.topic(settings.topic_drift, key_serializer="raw", value_serializer="raw")
    retrain = app.topic(settings.topic_retrain, key_serializer="raw", value_serializer="raw")
    counters = DriftCounters()

    @app.agent(source, name="drift", concurrency=1)
    async def drift(stream: faust.StreamT) -> None:
        async for value in stream:
            counters.messages += 1
            try:
                columns = decode_monitor(value)
                reports = monitor.observe(columns)
            except Exception:
                counters.unreadable += 1
                log.exception("unreadable monitoring message skipped")
                continue
            counters.events += len(columns)
            for report in reports:
                key = f"{report.model_name}:{report.model_version}".encode()
                ce_id = f"{report.model_name}:{report.model_version}:{report.window}"
                await sink.send(
                    key=key,
                    value=report.model_dump_json().encode(),
                    headers=_ce(h.DRIFT_REPORT_CE_TYPE, ce_id, report.created_at),
                )
                counters.reports += 1
                gauges.record(report)
                alert = alert_for(report)
                if alert is not None:
                    await sink.send(
                        key=key,
                        value=alert.model_dump_json().encode(),
                        headers=_ce(h.DRIFT_ALERT_CE_TYPE, ce_id + ":alert", report.created_at),
                    )
                    await retrain.send(key=b"drift", value=from_drift(alert).model_dump_json().encode())
                    counters.alerts += 1
                    gauges.alerts.labels(report.model_name, report.model_version).inc()
                    log.warning("drift alert: %s", alert.message)

    return counters


def _ce(ce_type: str, ce_id: str, at_ms: int) -> list[tuple[str, bytes]]:
    """CloudEvents binary-mode headers, as on predictions."""
    return [
        (h.CE_SPECVERSION, b"1.0"),
        (h.CE_ID, ce_id.encode()),
        (h.CE_TYPE, ce_type.encode()),
        (h.CE_SOURCE, b"streamscore/drift"),
        (h.CE_TIME, h.ce_time(at_ms)),
    ]
