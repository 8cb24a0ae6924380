"""The broker paused (SIGSTOP) under load: every role rides it out in the same process and loses nothing.

A pause longer than the session timeout (6 s here) costs each consumer its group session:
on resume its commits are refused (UNKNOWN_MEMBER_ID), it rejoins, and records not yet
committed are read again. None of that may stop the worker (the lost-session crash).
Each test pauses its own broker, so no other test waits on it.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter

import orjson
import pytest

from schemas.drift import DriftReport
from schemas.feedback import MetricsSnapshot
from scoring.model.bundle import ModelBundle
from streams.kafka.embedded.broker import start_broker
from streams.services.score.handler import ScoreHandler
from streams.settings import Settings
from tests.conditions import budget
from tests.integration.kafka_tools import (
    PacedProducer,
    TopicWatcher,
    WorkerProcess,
    committed_total,
    duplicates,
    event_id_of,
    feature_events,
    read_to_end,
    read_topic,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def paused_broker(tmp_path):
    broker = start_broker(log_path=tmp_path / "broker.log")
    try:
        yield broker
    finally:
        broker.process.send_signal(signal.SIGCONT)
        broker.stop()


def _pause(broker, seconds: float) -> None:
    broker.process.send_signal(signal.SIGSTOP)
    time.sleep(seconds)
    broker.process.send_signal(signal.SIGCONT)


def _worker(env: dict, bundle_dir, tmp_path, workers, name: str) -> WorkerProcess:
    worker = WorkerProcess(env, bundle_dir, tmp_path / f"{name}.log")
    workers.append(worker)
    worker.wait_ready(timeout_s=90)
    return worker


def test_pauses_of_3_8_and_20_s_at_random_moments_the_scorer_survives_and_loses_nothing(
    paused_broker, topic_env, agrawal_bundle_dir, tmp_path, workers
):
    """Three pauses at seeded random moments of a paced run: wherever they fall in the batch
    cycle (waiting in consume, scoring, waiting for acks, committing), the same process
    scores every event."""
    env = {**topic_env, "STREAMSCORE_KAFKA_BOOTSTRAP": paused_broker.bootstrap, "STREAMSCORE_ROLES": "score"}
    worker = _worker(env, agrawal_bundle_dir, tmp_path, workers, "scorer")
    pid = worker.process.pid
    n, rate = 90_000, 3000
    payloads = feature_events(n, seed=74, prefix="p3")
    rng = random.Random(23)
    source = PacedProducer(paused_broker.bootstrap, topic_env["STREAMSCORE_TOPIC_FEATURES"], payloads, rate)
    pauses = []
    with TopicWatcher(paused_broker.bootstrap, topic_env["STREAMSCORE_TOPIC_PREDICTIONS"]) as watcher:
        source.start()
        for seconds in (3, 8, 20):
            time.sleep(rng.uniform(1.0, 4.0))
            pauses.append((seconds, len(watcher.first_seen)))
            _pause(paused_broker, seconds)
        source.join(240)
        assert source.undelivered == 0
        everything = [f"p3-{i}" for i in range(n)]
        watcher.wait_for(everything, timeout_s=budget(n), context=worker.log_tail)
    # every event committed: every prediction is in the log (repeats included); read it to the end
    features, group = topic_env["STREAMSCORE_TOPIC_FEATURES"], topic_env["STREAMSCORE_GROUP_ID"]
    worker.wait(lambda: committed_total(paused_broker.bootstrap, group, features), lambda c: c >= n,
                f"the group to commit all {n:,} events", budget(n))  # fmt: skip
    predictions = read_to_end(paused_broker.bootstrap, topic_env["STREAMSCORE_TOPIC_PREDICTIONS"])
    counts = Counter(event_id_of(r) for r in predictions)
    refused = worker.get("/stats")["loops"]["score"]["commits"]["refused"]
    print(
        f"pauses (seconds, predictions before): {pauses}; {len(counts):,} predicted, "
        f"{duplicates(counts):,} duplicates, {refused} commits refused; same pid: {worker.process.pid == pid}"
    )
    assert worker.alive() and worker.process.pid == pid
    assert set(counts) == set(everything), "no event lost"
    assert worker.get("/health")["status"] == "ok"


def _monitor_and_labels(bundle: ModelBundle, n: int, prefix: str) -> tuple[list, list]:
    """Monitoring records exactly as a scorer writes them (the handler, offline) and a label per event."""
    from tests.unit.fake_kafka import FakeRecord

    events = feature_events(n, seed=75, prefix=prefix)
    handler = ScoreHandler(Settings(kafka_bootstrap="unused:1", topic_monitor="monitor"), bundle)
    out: list[tuple[bytes, bytes]] = []
    for start in range(0, n, 1000):
        part = [
            FakeRecord("features", i % 4, i, value_=v)
            for i, (_, v) in enumerate(events[start : start + 1000], start)
        ]
        handler.handle(
            part,
            lambda topic, key, value, headers, partition=None: (
                topic == "monitor" and out.append((key, value))
            ),
        )
    labels = []
    for _, value in events:
        event = orjson.loads(value)
        body = {
            "event_id": event["event_id"],
            "label": float(event["features"]["age"] > 40),
            "label_time": event["event_time"] + 1,
        }
        labels.append((event["event_id"].encode(), orjson.dumps(body)))
    return out, labels


def test_a_drift_only_worker_rides_out_a_20_s_pause(
    paused_broker, topic_env, agrawal_bundle: ModelBundle, agrawal_bundle_dir, tmp_path, workers
):
    n, window = 40_000, 2000
    monitor, _ = _monitor_and_labels(agrawal_bundle, n, "pd")
    env = {
        **topic_env,
        "STREAMSCORE_KAFKA_BOOTSTRAP": paused_broker.bootstrap,
        "STREAMSCORE_ROLES": "drift",
        "STREAMSCORE_DRIFT_WINDOW_EVENTS": str(window),
    }
    worker = _worker(env, agrawal_bundle_dir, tmp_path, workers, "drift")
    pid = worker.process.pid
    source = PacedProducer(paused_broker.bootstrap, topic_env["STREAMSCORE_TOPIC_MONITOR"], monitor, rate=20)
    source.start()
    # the pause lands mid-run: once the drift role has counted a third of the events
    at_pause = worker.wait_stats(
        lambda s: s["drift"]["events"] >= n // 3, "a third of the events read", budget(n)
    )
    _pause(paused_broker, 20)
    source.join(240)
    assert source.undelivered == 0
    reports = [
        DriftReport.model_validate_json(r.value)
        for r in read_topic(
            paused_broker.bootstrap,
            topic_env["STREAMSCORE_TOPIC_DRIFT"],
            n // window,
            timeout_s=budget(n),
            counted=lambda r: r.value is not None and b'"drift_report"' in r.value,
        )
        if b'"drift_report"' in (r.value or b"")
    ]
    counted = sum(r.events for r in reports)
    print(
        f"drift-only, 20 s pause after {at_pause['drift']['events']:,} events read: {len(reports)} windows "
        f"reported over {counted:,} events (sent {n:,})"
    )
    assert at_pause["drift"]["events"] < n, "the pause came mid-run"
    assert worker.alive() and worker.process.pid == pid
    assert counted >= n - window, "every event counted in a window (the last may still be open)"
    assert worker.get("/health")["status"] == "ok"


def test_a_learn_only_worker_rides_out_a_20_s_pause_and_joins_every_label(
    paused_broker, topic_env, agrawal_bundle: ModelBundle, agrawal_bundle_dir, tmp_path, workers
):
    n = 20_000
    monitor, labels = _monitor_and_labels(agrawal_bundle, n, "pl")
    env = {
        **topic_env,
        "STREAMSCORE_KAFKA_BOOTSTRAP": paused_broker.bootstrap,
        "STREAMSCORE_ROLES": "learn",
        "STREAMSCORE_METRICS_INTERVAL_S": "1",
    }
    worker = _worker(env, agrawal_bundle_dir, tmp_path, workers, "learn")
    pid = worker.process.pid
    sources = [
        PacedProducer(paused_broker.bootstrap, topic_env["STREAMSCORE_TOPIC_MONITOR"], monitor, rate=10),
        PacedProducer(paused_broker.bootstrap, topic_env["STREAMSCORE_TOPIC_LABELS"], labels, rate=2000),
    ]
    for source in sources:
        source.start()
    # the pause lands mid-run: once the learner has joined its first labels
    at_pause = worker.wait_stats(lambda s: s["learn"]["matched"] > 0, "the first labels joined", budget())
    _pause(paused_broker, 20)
    for source in sources:
        source.join(240)
        assert source.undelivered == 0
    worker.wait_stats(lambda s: s["learn"]["matched"] >= n, f"all {n:,} labels joined", budget(n))
    snapshots = [
        MetricsSnapshot.model_validate_json(r.value)
        for r in read_topic(
            paused_broker.bootstrap,
            topic_env["STREAMSCORE_TOPIC_METRICS"],
            1,
            timeout_s=budget(),
            counted=lambda r: MetricsSnapshot.model_validate_json(r.value).labels.matched >= n,
        )
    ]
    matched = max(s.labels.matched for s in snapshots)
    same = worker.process.pid == pid
    print(
        f"learn-only, 20 s pause after {at_pause['learn']['matched']:,} labels joined: {matched:,} labels "
        f"joined of {n:,}; same pid {same}"
    )
    assert at_pause["learn"]["matched"] < n, "the pause came mid-run"
    assert worker.alive() and worker.process.pid == pid
    assert matched == n, "each label joined exactly once"
    assert worker.get("/health")["status"] == "ok"
