"""Graceful shutdown: SIGTERM settles the batch in flight, commits and exits within
``STREAMSCORE_SHUTDOWN_TIMEOUT_S``, broker or not (status 1 when the bound cuts it short).

The bound is the product's promise, so these tests keep a wall-clock check: the setting's
value plus ``MARGIN_S`` for a busy machine to schedule the process and reap it. The
worker measures the bound on its own clock; its exit status says which side of it it
stopped on (0: settled in time; 1: cut short by the bound).
"""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest

from streams.kafka.embedded.broker import start_broker
from streams.settings import Settings
from tests.conditions import budget
from tests.integration.kafka_tools import (
    WorkerProcess,
    committed_total,
    distinct_event_ids,
    duplicates,
    event_id_of,
    feature_events,
    produce,
    read_to_end,
    read_topic,
    wait_scored,
)

pytestmark = pytest.mark.integration

DEFAULT_TIMEOUT_S = Settings.model_fields["shutdown_timeout_s"].default  # 9 s, as documented
MARGIN_S = 5.0
# events scored between the /stats read and the signal reaching the loops (a few batches of 500 on
# a busy machine), far below the ~50,000 scored in Faust's stop before the loops stopped at the signal
AFTER_SIGNAL_MAX = 20_000


def _stop(worker: WorkerProcess) -> tuple[int, float]:
    started = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    code = worker.process.wait(60)
    return code, time.monotonic() - started


def test_sigterm_mid_stream_commits_what_it_scored_and_exits_in_time(
    bootstrap, topic_env, agrawal_bundle_dir, tmp_path, workers
):
    # before its loops stopped at the signal, the worker scored on until Faust's stop reached them
    # (about 2.5 s: 50,000 events here, once all of 40,000); enough events to see that it does not
    n = 100_000
    events = feature_events(n, seed=81, prefix="st")
    env = {**topic_env, "STREAMSCORE_ROLES": "score", "STREAMSCORE_BATCH_SIZE": "500"}
    features, group = topic_env["STREAMSCORE_TOPIC_FEATURES"], topic_env["STREAMSCORE_GROUP_ID"]
    first = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "first.log")
    workers.append(first)
    first.wait_ready()
    produce(bootstrap, features, events)
    scored = wait_scored(first, 5000)
    code, seconds = _stop(first)
    committed = committed_total(bootstrap, group, features)
    print(
        f"SIGTERM mid-stream after {scored:,} scored: exit {code} after {seconds:.1f} s "
        f"(bound {DEFAULT_TIMEOUT_S:g} s), {committed:,} of {n:,} committed"
    )
    assert code == 0, "settled within STREAMSCORE_SHUTDOWN_TIMEOUT_S (its deadline exits with 1)"
    assert seconds < DEFAULT_TIMEOUT_S + MARGIN_S
    assert scored <= committed < n, "the SIGTERM came mid-stream and what was scored was committed"
    assert committed - scored <= AFTER_SIGNAL_MAX, (
        "no new batch taken once signalled (the one in flight settled)"
    )

    second = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "second.log")
    workers.append(second)
    second.wait_ready()
    predictions = topic_env["STREAMSCORE_TOPIC_PREDICTIONS"]
    read_topic(bootstrap, predictions, n, timeout_s=budget(n), counted=distinct_event_ids())
    second.wait(lambda: committed_total(bootstrap, group, features), lambda c: c >= n,
                f"the group to commit all {n:,} events", budget(n))  # fmt: skip
    ids = Counter(event_id_of(r) for r in read_to_end(bootstrap, predictions))
    second_scored = second.wait_stats(lambda s: s["scored"] >= n - committed, "the rest scored", budget(n))[
        "scored"
    ]
    print(f"after the restart: {len(ids):,} events predicted, {duplicates(ids)} duplicates; "
          f"the second worker scored {second_scored:,}")  # fmt: skip
    assert len(ids) == n
    assert duplicates(ids) == 0, "a graceful stop commits what it scored: nothing is scored twice"
    assert second_scored == n - committed


def test_sigterm_with_the_broker_unreachable_exits_1_within_the_shutdown_timeout(
    topic_env, agrawal_bundle_dir, tmp_path, workers
):
    """The broker paused mid-stream, then SIGTERM: the worker exits with status 1 once
    ``STREAMSCORE_SHUTDOWN_TIMEOUT_S`` (5 s here, not the default 9 s) has passed, instead of
    hanging in Faust's consumer; the batch it could not settle was not committed, so a new
    worker scores it: nothing is lost."""
    timeout_s, n, batch_size = 5.0, 40_000, 500
    broker = start_broker(log_path=tmp_path / "broker.log")  # a broker of its own, to pause
    try:
        env = {
            **topic_env,
            "STREAMSCORE_KAFKA_BOOTSTRAP": broker.bootstrap,
            "STREAMSCORE_ROLES": "score",
            "STREAMSCORE_BATCH_SIZE": str(batch_size),
            "STREAMSCORE_SHUTDOWN_TIMEOUT_S": str(timeout_s),
        }
        worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "worker.log")
        workers.append(worker)
        worker.wait_ready()
        produce(broker.bootstrap, topic_env["STREAMSCORE_TOPIC_FEATURES"], feature_events(n, 82, "su"))
        scored = wait_scored(worker, 5000)
        broker.process.send_signal(signal.SIGSTOP)
        try:
            code, seconds = _stop(worker)
        finally:
            broker.process.send_signal(signal.SIGCONT)
        log = worker.log_path.read_text(errors="replace")
        print(f"SIGTERM with the broker paused after {scored:,} scored: exit {code} after {seconds:.1f} s "
              f"(STREAMSCORE_SHUTDOWN_TIMEOUT_S={timeout_s:g})")  # fmt: skip
        assert code == 1, worker.log_tail()
        assert f"shutdown took over {timeout_s:.0f} s (broker unreachable?): exiting now" in log
        assert timeout_s <= seconds < timeout_s + MARGIN_S

        second = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "second.log")
        workers.append(second)
        second.wait_ready()
        predictions = topic_env["STREAMSCORE_TOPIC_PREDICTIONS"]
        records = read_topic(
            broker.bootstrap, predictions, n, timeout_s=budget(n), counted=distinct_event_ids()
        )
        predicted = len({event_id_of(r) for r in records})
        print(f"after a new worker: {predicted:,} of {n:,} predicted")
        assert predicted == n
    finally:
        broker.stop()
