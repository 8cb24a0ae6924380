"""The score path end to end on a real broker, for both score paths (batch service, Faust agent)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import orjson
import pytest

from schemas.messages import Prediction
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import agrawal_frame, events_from_frame, interleave_invalid
from tests.conditions import budget
from tests.integration.kafka_tools import (
    WorkerProcess,
    committed_offsets,
    committed_total,
    distinct_event_ids,
    duplicates,
    event_id_of,
    produce,
    read_to_end,
    read_topic,
    score_group,
    wait_scored,
)

pytestmark = pytest.mark.integration

PATHS = ["batch", "agent"]
# events a second each path keeps up on a busy machine with batches of 200 (the agent path, Faust's
# per-event machinery, fell to about 250 a second beside a CPU hog; the batch path stays far above)
BUSY_RATE = {"batch": 1000, "agent": 100}

EXPECTED_STAGE = {
    "malformed_json": "decode",
    "nan": "decode",
    "infinity": "decode",
    "bad_utf8": "decode",
    "null_value": "decode",
    "not_an_object": "validate",
    "missing_event_id": "validate",
    "missing_feature": "validate",
    "wrong_type": "validate",
    "bad_event_time": "validate",
    "unknown_feature": "validate",
}


def _events(n: int, seed: int, prefix: str) -> tuple[list[dict], np.ndarray]:
    frame = agrawal_frame(n, seed=seed, classification_function=2).drop(columns=["approved"])
    return list(events_from_frame(frame, prefix=prefix)), frame


def _start(topic_env, bundle_dir, tmp_path, workers, path: str, **env) -> WorkerProcess:
    worker = WorkerProcess(
        {**topic_env, "STREAMSCORE_SCORE_PATH": path, **env},
        bundle_dir,
        tmp_path / f"worker{len(workers)}.log",
    )
    workers.append(worker)
    worker.wait_ready()
    return worker


@pytest.mark.parametrize("path", PATHS)
def test_every_event_scored_once_and_equal_to_offline_predict(
    path, bootstrap, topic_env, agrawal_bundle: ModelBundle, agrawal_bundle_dir, tmp_path, workers
):
    events, frame = _events(10_000, seed=11, prefix=f"ok-{path}")
    produce(
        bootstrap,
        topic_env["STREAMSCORE_TOPIC_FEATURES"],
        [(e["entity_id"].encode(), orjson.dumps(e)) for e in events],
    )
    _start(topic_env, agrawal_bundle_dir, tmp_path, workers, path)

    records = read_topic(bootstrap, topic_env["STREAMSCORE_TOPIC_PREDICTIONS"], len(events), idle_s=2.0)
    predictions = [Prediction.model_validate_json(r.value) for r in records]
    counts = Counter(p.event_id for p in predictions)
    assert set(counts) == {e["event_id"] for e in events}
    assert max(counts.values()) == 1, "an event was scored twice without any crash"

    offline = agrawal_bundle.booster.predict(agrawal_bundle.spec.encode_frame(frame))
    expected = {e["event_id"]: s for e, s in zip(events, offline, strict=True)}
    worst = max(abs(p.score - expected[p.event_id]) for p in predictions)
    print(f"{path}: {len(predictions)} predictions, max |stream - offline| = {worst:.3g}")
    assert worst <= 1e-9
    assert {p.model_version for p in predictions} == {agrawal_bundle.version}
    assert all(r.key == p.entity_id.encode() for r, p in zip(records, predictions, strict=True))
    assert all(r.headers["ce_id"] == p.event_id.encode() for r, p in zip(records, predictions, strict=True))


@pytest.mark.parametrize("path", PATHS)
def test_invalid_events_are_dead_lettered_with_reason_and_bytes(
    path, bootstrap, topic_env, agrawal_bundle_dir, tmp_path, workers
):
    events, _ = _events(3000, seed=12, prefix=f"mix-{path}")
    for e in events[:100]:  # never-seen categories are scored through LightGBM's unseen branch
        e["features"]["car"] = "car-from-the-future"
    mixed = interleave_invalid(events, 490, feature="salary", seed=5)
    for i in range(10):
        extra = {**events[i], "event_id": f"bad-unknown_feature-{i}"}
        extra["features"] = {**extra["features"], "surprise": 1.0}
        mixed.insert(100 * i, ("unknown_feature", extra, orjson.dumps(extra)))
    invalid = [(kind, payload) for kind, _, payload in mixed if kind != "valid"]
    assert len(invalid) == 500 and {k for k, _ in invalid} == set(EXPECTED_STAGE)

    produce(
        bootstrap,
        topic_env["STREAMSCORE_TOPIC_FEATURES"],
        [(e["entity_id"].encode(), p) for _, e, p in mixed],
    )
    worker = _start(
        topic_env, agrawal_bundle_dir, tmp_path, workers, path, STREAMSCORE_UNKNOWN_FEATURES="reject"
    )

    dead = read_topic(bootstrap, topic_env["STREAMSCORE_TOPIC_DLQ"], len(invalid), idle_s=1.0)
    scored = read_topic(bootstrap, topic_env["STREAMSCORE_TOPIC_PREDICTIONS"], len(events), idle_s=1.0)

    assert len(dead) == len(invalid)
    expected_by_value = Counter(payload for _, payload in invalid)
    assert Counter(r.value for r in dead) == expected_by_value, "dead letters must carry the original bytes"
    stage_of = {payload: EXPECTED_STAGE[kind] for kind, payload in invalid}
    for record in dead:
        assert record.headers["streamscore.errors.stage"].decode() == stage_of[record.value]
        assert record.headers["streamscore.errors.exception.message"], "every dead letter names its reason"
        assert record.headers["streamscore.errors.topic"].decode() == topic_env["STREAMSCORE_TOPIC_FEATURES"]
        assert int(record.headers["streamscore.errors.offset"]) >= 0
    reasons = Counter(r.headers["streamscore.errors.exception.message"].decode().split(" ")[0] for r in dead)
    print(f"{path}: dead letters by first word of reason: {dict(reasons)}")

    assert {Prediction.model_validate_json(r.value).event_id for r in scored} == {
        e["event_id"] for e in events
    }
    assert worker.alive()
    stats = worker.get("/stats")
    assert stats["dead_letters_total"] == len(invalid)
    assert stats["scored"] == len(events)


@pytest.mark.parametrize("path", PATHS)
def test_sigkill_mid_stream_loses_nothing(path, bootstrap, topic_env, agrawal_bundle_dir, tmp_path, workers):
    """A SIGKILL mid-stream, then a new worker: every event is predicted, and what is predicted twice
    lies past the group's last commit at the kill (docs/reliability.md). On the batch path that is at
    most two batches: the one waiting for its acknowledgements and the one being scored (``AfterAcks``
    in streams/services/loop/policies.py); on the agent path, what Faust had not committed yet."""
    n, batch_size = 30_000, 200
    events, _ = _events(n, seed=13, prefix=f"kill-{path}")
    features = topic_env["STREAMSCORE_TOPIC_FEATURES"]
    produce(bootstrap, features, [(e["entity_id"].encode(), orjson.dumps(e)) for e in events])
    # small batches so the kill lands mid-stream; no drift agent competing for /stats' event loop
    env = {"STREAMSCORE_BATCH_SIZE": str(batch_size), "STREAMSCORE_ROLES": "score"}
    first = _start(topic_env, agrawal_bundle_dir, tmp_path, workers, path, **env)
    scored_at_kill = wait_scored(first, 3000)
    first.process.kill()
    first.process.wait(10)
    assert scored_at_kill < n, "the kill must land mid-stream"
    group = score_group({**topic_env, "STREAMSCORE_SCORE_PATH": path, **env})
    committed = committed_offsets(bootstrap, group, features)

    second = _start(topic_env, agrawal_bundle_dir, tmp_path, workers, path, **env)
    predictions = topic_env["STREAMSCORE_TOPIC_PREDICTIONS"]
    deadline = budget(n, per_s=BUSY_RATE[path])
    read_topic(bootstrap, predictions, n, timeout_s=deadline, counted=distinct_event_ids())
    # once the group committed every event, every output it will make is in the log: read to its end
    second.wait(lambda: committed_total(bootstrap, group, features), lambda c: c >= n,
                f"the group to commit all {n:,} events", deadline)  # fmt: skip
    ids = Counter(event_id_of(r) for r in read_to_end(bootstrap, predictions))
    at = {event_id_of(r): (r.partition, r.offset) for r in read_topic(bootstrap, features, n)}
    missing = {e["event_id"] for e in events} - set(ids)
    repeated = duplicates(ids)
    before_commit = sorted(e for e, c in ids.items() if c > 1 and at[e][1] < committed[at[e][0]])
    print(
        f"{path}: killed after {scored_at_kill:,} scored, {sum(committed.values()):,} committed; "
        f"{len(ids):,} distinct predictions, {repeated:,} duplicates, {len(before_commit)} before the commit"
    )
    assert not missing, f"{len(missing)} events never scored"
    assert before_commit == [], "an event the group had committed was scored again"
    if path == "batch":
        assert repeated <= 2 * batch_size
