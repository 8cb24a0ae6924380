"""The score path end to end on a real broker, for both score paths (batch service, Faust agent)."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import orjson
import pytest

from schemas.messages import Prediction
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import agrawal_frame, events_from_frame, interleave_invalid
from tests.integration.kafka_tools import WorkerProcess, produce, read_topic

pytestmark = pytest.mark.integration

PATHS = ["batch", "agent"]

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
    events, _ = _events(30_000, seed=13, prefix=f"kill-{path}")
    produce(
        bootstrap,
        topic_env["STREAMSCORE_TOPIC_FEATURES"],
        [(e["entity_id"].encode(), orjson.dumps(e)) for e in events],
    )
    # small batches so the kill lands mid-stream; no drift agent competing for /stats' event loop
    env = {"STREAMSCORE_BATCH_SIZE": "200", "STREAMSCORE_ROLES": "score"}
    first = _start(topic_env, agrawal_bundle_dir, tmp_path, workers, path, **env)
    deadline = time.monotonic() + 60
    scored_at_kill = 0
    while scored_at_kill < 3000 and time.monotonic() < deadline:
        scored_at_kill = first.get("/stats")["scored"]
        time.sleep(0.01)
    first.process.kill()
    first.process.wait(10)
    assert 3000 <= scored_at_kill < len(events), "the kill must land mid-stream"

    _start(topic_env, agrawal_bundle_dir, tmp_path, workers, path, **env)
    records = read_topic(bootstrap, topic_env["STREAMSCORE_TOPIC_PREDICTIONS"], len(events), idle_s=2.0)
    ids = Counter(orjson.loads(r.value)["event_id"] for r in records)
    missing = {e["event_id"] for e in events} - set(ids)
    duplicates = sum(c - 1 for c in ids.values())
    print(
        f"{path}: killed after {scored_at_kill} scored; "
        f"{len(ids)} distinct predictions, {duplicates} duplicates"
    )
    assert not missing, f"{len(missing)} events never scored"
