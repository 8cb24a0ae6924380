"""Helpers for the side-topic tests: a worker's counters, dead letters, and proof that every role works.

``roles_work`` is what "the worker still works" means in these tests: new events scored,
their labels joined by the learner, and a drift window closed and reported on ``drift``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from prometheus_client.parser import text_string_to_metric_families

from schemas import headers as h
from scoring.offline.synthetic import agrawal_frame, events_from_frame
from tests.integration.kafka_tools import Record, WorkerProcess, produce, read_topic

DRIFT_WINDOW = 2000  # STREAMSCORE_DRIFT_WINDOW_EVENTS of the workers here


def side_env(topic_env: dict[str, str], **extra: str) -> dict[str, str]:
    """A worker with every role, one partition per topic (so counts are exact), snapshots every second."""
    return {
        **topic_env,
        "STREAMSCORE_ROLES": "drift,learn,score",
        "STREAMSCORE_PARTITIONS": "1",
        "STREAMSCORE_METRICS_INTERVAL_S": "1",
        "STREAMSCORE_DRIFT_WINDOW_EVENTS": str(DRIFT_WINDOW),
        "STREAMSCORE_DRIFT_WINDOW_SECONDS": "86400",
        **extra,
    }


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, worker: WorkerProcess) -> float:
    """Poll ``predicate`` until it holds; the seconds it took. Fails with the worker's log if it dies
    (``tests/conditions.py``: the deadline scales with ``STREAMSCORE_TEST_TIME_SCALE``)."""
    started = time.monotonic()
    worker.wait(predicate, bool, what, timeout_s)
    return time.monotonic() - started


def metric(worker: WorkerProcess, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples on /metrics whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(worker.get_text("/metrics")):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def refused(worker: WorkerProcess, topic: str, reason: str | None = None) -> int:
    labels = {"topic": topic} | ({"reason": reason} if reason else {})
    return int(metric(worker, "streamscore_records_refused_total", **labels))


def dead_letters(bootstrap: str, topic: str, count: int, timeout_s: float = 60) -> list[Record]:
    """The records of a dead-letter topic, once at least ``count`` arrived (then a second more)."""
    return read_topic(bootstrap, topic, count, timeout_s=timeout_s, idle_s=1.0)


def reason_of(record: Record) -> tuple[str, str]:
    """(stage, message) of a dead letter."""
    return record.headers[h.DLQ_STAGE].decode(), record.headers[h.DLQ_MESSAGE].decode()


def labelled_events(
    n: int, prefix: str, seed: int, start_ms: int | None = None, spacing_ms: int = 1
) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """``n`` loan events ending now (``spacing_ms`` apart) and a label for each, timed a second after it."""
    frame = agrawal_frame(n, seed=seed, classification_function=2)
    start = start_ms if start_ms is not None else int(time.time() * 1000) - n * spacing_ms
    events = list(events_from_frame(frame.drop(columns=["approved"]), prefix=prefix, start_ms=start))
    for i, event in enumerate(events):
        event["event_time"] = start + i * spacing_ms
    features = [(e["entity_id"].encode(), orjson.dumps(e)) for e in events]
    labels = [
        (
            e["event_id"].encode(),
            orjson.dumps(
                {"event_id": e["event_id"], "label": float(y), "label_time": e["event_time"] + 1000}
            ),
        )
        for e, y in zip(events, frame["approved"], strict=True)
    ]
    return features, labels


def settled(worker: WorkerProcess, timeout_s: float = 60) -> dict:
    """/stats once the drift role has read the monitoring records of every event scored so far."""
    stats: dict = {}

    def caught_up() -> bool:
        nonlocal stats
        stats = worker.get("/stats")
        return stats["drift"]["events"] >= stats["scored"]

    wait_until(caught_up, timeout_s, "the drift role to catch up with the scorer", worker)
    return stats


@dataclass(frozen=True)
class Progress:
    """What the roles did with a fresh batch of labelled events."""

    events: int
    scored: int
    joined: int
    windows: int
    snapshots: int
    reports_on_topic: int

    def __str__(self) -> str:
        return (
            f"{self.events:,} new events: {self.scored:,} scored, {self.joined:,} labels joined, "
            f"{self.windows} drift window(s) closed ({self.reports_on_topic} reports on the drift topic), "
            f"{self.snapshots} learner snapshots"
        )


def roles_work(
    worker: WorkerProcess, bootstrap: str, env: dict[str, str], prefix: str, n: int = 1000, seed: int = 7
) -> Progress:
    """Send at least ``n`` labelled events (enough to close a drift window) and wait for every role.

    The events needed to close a window are counted from the open window; after model swaps
    several versions have windows open, so 250 more are sent until one closes.
    """
    before = settled(worker)
    extra = -(before["drift"]["open_window_events"] + n) % DRIFT_WINDOW
    total, after, batch = 0, {}, 0
    while total < n + extra or after["drift"]["reports"] == before["drift"]["reports"]:
        assert total < n + extra + DRIFT_WINDOW, "no drift window closed"
        features, labels = labelled_events(n + extra if not total else 250, f"{prefix}-{batch}", seed + batch)
        produce(bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], features)
        produce(bootstrap, env["STREAMSCORE_TOPIC_LABELS"], labels)
        total, batch = total + len(features), batch + 1
        after = _all_used(worker, before, total)
    records = read_topic(
        bootstrap,
        env["STREAMSCORE_TOPIC_DRIFT"],
        after["drift"]["reports"],
        timeout_s=30,
        counted=lambda r: r.headers.get(h.CE_TYPE) == h.DRIFT_REPORT_CE_TYPE.encode(),
    )
    return Progress(
        events=total,
        scored=after["scored"] - before["scored"],
        joined=after["learn"]["matched"] - before["learn"]["matched"],
        windows=after["drift"]["reports"] - before["drift"]["reports"],
        snapshots=after["learn"]["snapshots"] - before["learn"]["snapshots"],
        reports_on_topic=sum(r.headers.get(h.CE_TYPE) == h.DRIFT_REPORT_CE_TYPE.encode() for r in records),
    )


def _all_used(worker: WorkerProcess, before: dict, total: int) -> dict:
    """/stats once ``total`` events sent since ``before`` are scored, joined and in the drift windows."""
    after: dict = {}

    def done() -> bool:
        nonlocal after
        after = worker.get("/stats")
        return (
            after["scored"] >= before["scored"] + total
            and after["learn"]["matched"] >= before["learn"]["matched"] + total
            and after["drift"]["events"] >= before["drift"]["events"] + total
            and after["learn"]["snapshots"] > before["learn"]["snapshots"]
        )

    wait_until(done, 120, f"{total:,} events scored, joined and in the drift windows", worker)
    return after


def a_monitor_record(bootstrap: str, env: dict[str, str]) -> dict:
    """The first monitoring record the worker wrote, decoded: a template for hand-made ones."""
    records = read_topic(bootstrap, env["STREAMSCORE_TOPIC_MONITOR"], 1, timeout_s=30)
    return orjson.loads(records[0].value)
