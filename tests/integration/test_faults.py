"""Faults under load on the batch score path: repeated SIGKILLs, a paused broker, a rebalance.

Each test prints what it measured; docs/reliability.md carries the figures.
"""

from __future__ import annotations

import itertools
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator

import orjson
import pytest

from streams.kafka.embedded.broker import start_broker
from tests.conditions import budget
from tests.integration.kafka_tools import (
    PacedProducer,
    TopicWatcher,
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


def _start(env: dict, bundle_dir, tmp_path, workers: list[WorkerProcess]) -> WorkerProcess:
    worker = WorkerProcess(env, bundle_dir, tmp_path / f"worker{len(workers)}.log")
    workers.append(worker)
    worker.wait_ready(timeout_s=90)
    return worker


def test_five_random_sigkills_over_200k_events_lose_nothing(
    bootstrap, topic_env, agrawal_bundle_dir, tmp_path, workers
):
    """SIGKILL the worker five times at seeded random moments; a new one is started after each.

    What a kill can repeat, from streams/services/score/step.py: outputs are produced for the batch being
    handled while the batch before it (pending) waits for its acknowledgements; offsets
    are committed after those. So at most two batches per kill are scored again:
    duplicates <= kills * 2 * batch_size.
    """
    n, batch_size, kills = 200_000, 1000, 5
    payloads = feature_events(n, seed=71, prefix="k5")
    produce(bootstrap, topic_env["STREAMSCORE_TOPIC_FEATURES"], payloads)
    rng = random.Random(8_2026)
    # each incarnation is killed after scoring this many of its own: all kills land before the end
    kill_after = [rng.randint(4_000, 30_000) for _ in range(kills)]
    env = {**topic_env, "STREAMSCORE_ROLES": "score", "STREAMSCORE_BATCH_SIZE": str(batch_size)}
    started = time.monotonic()
    moments = []
    for i, threshold in enumerate(kill_after, 1):
        worker = _start(env, agrawal_bundle_dir, tmp_path, workers)
        scored = wait_scored(worker, threshold)
        worker.process.kill()
        worker.process.wait(10)
        moments.append((round(time.monotonic() - started, 1), scored))
        print(f"kill {i}: SIGKILL at t={moments[-1][0]} s, after this incarnation scored {scored:,}")
    assert sum(s for _, s in moments) < n, "every kill must land mid-run"
    _start(env, agrawal_bundle_dir, tmp_path, workers)

    counted = distinct_event_ids()
    records = read_topic(
        bootstrap, topic_env["STREAMSCORE_TOPIC_PREDICTIONS"], n, timeout_s=240, idle_s=2.0, counted=counted
    )
    ids = Counter(event_id_of(r) for r in records)
    missing = {f"k5-{i}" for i in range(n)} - set(ids)
    repeated = duplicates(ids)
    print(
        f"five SIGKILLs (seed 82026, thresholds {kill_after}): {len(ids):,} events predicted, "
        f"{len(missing)} missing, {repeated:,} duplicates (bound {kills * 2 * batch_size:,}), "
        f"done in {time.monotonic() - started:.0f} s"
    )
    assert not missing, f"{len(missing)} events never scored"
    assert repeated <= kills * 2 * batch_size


def test_broker_paused_for_20_s_mid_run_worker_survives_and_catches_up(
    topic_env, agrawal_bundle_dir, tmp_path, workers
):
    broker = start_broker(log_path=tmp_path / "broker.log")  # our own: pausing it stops no other test
    try:
        env = {**topic_env, "STREAMSCORE_KAFKA_BOOTSTRAP": broker.bootstrap, "STREAMSCORE_ROLES": "score"}
        worker = _start(env, agrawal_bundle_dir, tmp_path, workers)
        pid = worker.process.pid
        n, rate = 100_000, 4000
        payloads = feature_events(n, seed=72, prefix="pause")
        source = PacedProducer(broker.bootstrap, topic_env["STREAMSCORE_TOPIC_FEATURES"], payloads, rate)
        with TopicWatcher(broker.bootstrap, topic_env["STREAMSCORE_TOPIC_PREDICTIONS"]) as watcher:
            source.start()
            watcher.wait_for(
                [f"pause-{i}" for i in range(5000)], timeout_s=budget(5000), context=worker.log_tail
            )
            broker.process.send_signal(signal.SIGSTOP)
            paused_at = time.monotonic()
            scored_before = len(watcher.first_seen)
            time.sleep(20)
            broker.process.send_signal(signal.SIGCONT)
            resumed_at = time.monotonic()
            sent_before_resume = source.sent
            backlog = [f"pause-{i}" for i in range(sent_before_resume)]
            watcher.wait_for(backlog, timeout_s=budget(len(backlog)), context=worker.log_tail)
            caught_up = max(watcher.first_seen[e] for e in backlog) - resumed_at
            source.join(180)
            assert source.undelivered == 0
            everything = [f"pause-{i}" for i in range(n)]
            watcher.wait_for(everything, timeout_s=budget(n), context=worker.log_tail)
        # every event committed: every prediction is in the log (repeats included); read it to the end
        features, group = topic_env["STREAMSCORE_TOPIC_FEATURES"], topic_env["STREAMSCORE_GROUP_ID"]
        worker.wait(lambda: committed_total(broker.bootstrap, group, features), lambda c: c >= n,
                    f"the group to commit all {n:,} events", budget(n))  # fmt: skip
        predictions = read_to_end(broker.bootstrap, topic_env["STREAMSCORE_TOPIC_PREDICTIONS"])
        counts = Counter(event_id_of(r) for r in predictions)
        print(
            f"broker paused {resumed_at - paused_at:.1f} s with {scored_before:,} scored; "
            f"{sent_before_resume - scored_before:,} events waiting at resume; caught up "
            f"{caught_up:.1f} s after SIGCONT; {len(counts):,} predicted, {duplicates(counts):,} duplicates"
        )
        assert worker.alive() and worker.process.pid == pid, "the worker must ride out the pause"
        assert set(counts) == set(everything)
        # the session is lost in the pause: what was not committed before it (one batch
        # pending, one handled; 2,000 each by default) is consumed again after the rejoin
        assert duplicates(counts) <= 2 * 2000
        assert worker.get("/stats")["scored"] >= n
    finally:
        broker.stop()


def test_a_second_worker_joins_and_leaves_under_load_nothing_lost(
    bootstrap, topic_env, agrawal_bundle_dir, tmp_path, workers
):
    """A second worker joins while events arrive at 4,000/s and leaves by SIGTERM while they still do:
    the source runs until the second worker has left, then sends 10,000 more and stops."""
    rate, batch_size, tail = 4000, 1000, 10_000
    env = {**topic_env, "STREAMSCORE_ROLES": "score", "STREAMSCORE_BATCH_SIZE": str(batch_size)}
    first = _start(env, agrawal_bundle_dir, tmp_path, workers)
    left = threading.Event()
    source = PacedProducer(
        bootstrap, topic_env["STREAMSCORE_TOPIC_FEATURES"], _until(left, tail, prefix="rb", seed=73), rate
    )
    source.start()
    wait_scored(first, 10_000)
    second = _start(env, agrawal_bundle_dir, tmp_path, workers)
    joined_at_sent = source.sent
    scored_by_second = wait_scored(second, 5_000)
    code = second.terminate(timeout_s=30)
    left_at_sent = source.sent
    left.set()
    print(f"second worker scored {scored_by_second:,} when sent SIGTERM; exit {code}")
    assert code == 0
    assert source.is_alive(), "the second worker must leave while events still arrive"
    source.join(budget(tail, per_s=rate / 2))
    assert source.undelivered == 0
    n = source.sent

    counted = distinct_event_ids()
    read_topic(bootstrap, topic_env["STREAMSCORE_TOPIC_PREDICTIONS"], n, timeout_s=budget(n), counted=counted)
    features, group = topic_env["STREAMSCORE_TOPIC_FEATURES"], topic_env["STREAMSCORE_GROUP_ID"]
    first.wait(lambda: committed_total(bootstrap, group, features), lambda c: c >= n,
               f"the group to commit all {n:,} events", budget(n))  # fmt: skip
    ids = Counter(event_id_of(r) for r in read_to_end(bootstrap, topic_env["STREAMSCORE_TOPIC_PREDICTIONS"]))
    missing = {f"rb-{i}" for i in range(n)} - set(ids)
    print(
        f"rebalance: second joined after {joined_at_sent:,} sent, left after {left_at_sent:,} of {n:,}; "
        f"{len(ids):,} predicted, {len(missing)} missing, {duplicates(ids):,} duplicates; "
        f"first worker scored {first.get('/stats')['scored']:,} over {_assignments(first)} assignments"
    )
    assert not missing, f"{len(missing)} events never scored"
    assert duplicates(ids) <= 2 * 2 * batch_size  # two rebalances, at most two batches each
    assert first.alive()


def _until(done: threading.Event, tail: int, prefix: str, seed: int) -> Iterator[tuple[bytes, bytes]]:
    """Loan events ``{prefix}-0``, ``{prefix}-1``, ... as (key, value) until ``done`` is set, then ``tail``
    more."""
    template = [orjson.loads(v) for _, v in feature_events(20_000, seed=seed, prefix=prefix)]
    left = None
    for i in itertools.count():
        if left is None and done.is_set():
            left = tail
        if left == 0:
            return
        event = {**template[i % len(template)], "event_id": f"{prefix}-{i}"}
        yield event["entity_id"].encode(), orjson.dumps(event)
        left = None if left is None else left - 1


def _assignments(worker: WorkerProcess) -> int:
    """How many partition assignments the worker logged: one per rebalance it took part in."""
    return sum("assigned [" in line for line in worker.log_path.read_text(errors="replace").splitlines())
