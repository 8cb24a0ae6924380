"""Graceful shutdown: SIGTERM settles the batch in flight, commits and exits within 10 s, broker or not."""

from __future__ import annotations

import signal
import time
from collections import Counter

import orjson
import pytest

from scoring.offline.synthetic import agrawal_frame, events_from_frame
from streams.kafka.embedded.broker import start_broker
from tests.integration.kafka_tools import WorkerProcess, produce, read_topic

pytestmark = pytest.mark.integration


def _stop(worker: WorkerProcess) -> tuple[int, float]:
    started = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    code = worker.process.wait(30)
    return code, time.monotonic() - started


def test_sigterm_mid_stream_commits_what_it_scored_and_exits_in_time(
    bootstrap, topic_env, agrawal_bundle_dir, tmp_path, workers
):
    frame = agrawal_frame(40_000, seed=81, classification_function=2).drop(columns=["approved"])
    events = [(e["entity_id"].encode(), orjson.dumps(e)) for e in events_from_frame(frame, prefix="st")]
    env = {**topic_env, "STREAMSCORE_ROLES": "score", "STREAMSCORE_BATCH_SIZE": "500"}
    first = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "first.log")
    workers.append(first)
    first.wait_ready()
    produce(bootstrap, topic_env["STREAMSCORE_TOPIC_FEATURES"], events)
    deadline = time.monotonic() + 60
    while first.get("/stats")["scored"] < 5000 and time.monotonic() < deadline:
        time.sleep(0.01)
    code, seconds = _stop(first)
    print(f"SIGTERM mid-stream: exit {code} after {seconds:.1f} s")
    assert code == 0 and seconds < 10

    second = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "second.log")
    workers.append(second)
    second.wait_ready()
    records = read_topic(bootstrap, topic_env["STREAMSCORE_TOPIC_PREDICTIONS"], len(events), idle_s=2.0)
    ids = Counter(orjson.loads(r.value)["event_id"] for r in records)
    duplicates = sum(c - 1 for c in ids.values())
    print(f"after the restart: {len(ids):,} events predicted, {duplicates} duplicates")
    assert len(ids) == len(events)
    assert duplicates == 0, "a graceful stop commits what it scored: nothing is scored twice"


def test_sigterm_with_the_broker_unreachable_exits_within_10_s(
    topic_env, agrawal_bundle_dir, tmp_path, workers
):
    broker = start_broker()  # a broker of its own, to pause
    try:
        env = {**topic_env, "STREAMSCORE_KAFKA_BOOTSTRAP": broker.bootstrap, "STREAMSCORE_ROLES": "score"}
        worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "worker.log")
        workers.append(worker)
        worker.wait_ready()
        broker.process.send_signal(signal.SIGSTOP)
        try:
            code, seconds = _stop(worker)
        finally:
            broker.process.send_signal(signal.SIGCONT)
        print(f"SIGTERM with the broker paused: exit {code} after {seconds:.1f} s")
        assert seconds < 10
        assert "exiting now" in worker.log_tail() or code == 0
    finally:
        broker.stop()
