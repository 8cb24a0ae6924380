"""The feedback loop on a real broker: labels joined to monitored events, KPIs, River challenger.

One partition per topic, so events are scored in the order produced and the
challenger learns in that order (what progressive validation compares against).
"""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest
from confluent_kafka import Producer
from river import compose, datasets, evaluate, linear_model, metrics, preprocessing

from schemas.feedback import ConceptDriftAlert, MetricsSnapshot
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import agrawal_frame, events_from_frame
from scoring.offline.training import train_bundle
from tests.conditions import budget
from tests.integration.kafka_tools import Record, WorkerProcess, produce, read_topic

pytestmark = pytest.mark.integration

BASE_MS = 1_700_000_000_000


@pytest.fixture(scope="module")
def loans_f0(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    frame = agrawal_frame(20_000, seed=1, classification_function=0)
    return train_bundle(
        frame, "approved", tmp_path_factory.mktemp("f0") / "loans", name="loans", num_trees=50
    )


def _worker(topic_env, bundle_dir, tmp_path, workers, name: str, roles: str, **env) -> WorkerProcess:
    settings = {
        "STREAMSCORE_PARTITIONS": "1",
        "STREAMSCORE_ROLES": roles,
        "STREAMSCORE_METRICS_INTERVAL_S": "1",
        **env,
    }
    worker = WorkerProcess({**topic_env, **settings}, bundle_dir, tmp_path / f"{name}.log")
    workers.append(worker)
    worker.wait_ready()
    return worker


def _produce_with_labels(bootstrap, topic_env, frame: pd.DataFrame, labels, delay: int, prefix: str) -> None:
    """Event i, then the label of event i - delay; the last ``delay`` labels at the end."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10})
    features, label_topic = topic_env["STREAMSCORE_TOPIC_FEATURES"], topic_env["STREAMSCORE_TOPIC_LABELS"]

    def send(topic: str, key: str, value: bytes) -> None:
        while True:
            try:
                producer.produce(topic, value, key.encode())
                return
            except BufferError:
                producer.poll(0.05)

    def label(i: int) -> None:
        event_id = f"{prefix}-{i}"
        body = {"event_id": event_id, "label": float(labels[i]), "label_time": BASE_MS + i + delay}
        send(label_topic, event_id, orjson.dumps(body))

    for i, event in enumerate(events_from_frame(frame, prefix=prefix, start_ms=BASE_MS)):
        send(features, event["entity_id"], orjson.dumps(event))
        if i >= delay:
            label(i - delay)
    for i in range(max(0, len(frame) - delay), len(frame)):
        label(i)
    assert producer.flush(60) == 0


def _snapshots(bootstrap, topic_env, done, labels: int) -> list[MetricsSnapshot]:
    """Metrics snapshots from the start up to the first for which ``done(snapshot)`` holds (the last
    one returned); fails naming what it read if none does within the time ``labels`` labels take."""
    snapshots: list[MetricsSnapshot] = []
    for record in read_topic(
        bootstrap,
        topic_env["STREAMSCORE_TOPIC_METRICS"],
        1,
        timeout_s=budget(labels),
        counted=lambda r: done(MetricsSnapshot.model_validate_json(r.value)),
    ):
        snapshots.append(MetricsSnapshot.model_validate_json(record.value))
        if done(snapshots[-1]):
            return snapshots
    raise AssertionError("unreachable: read_topic returned without the snapshot it counted")


def _overall(snapshot: MetricsSnapshot, model: str):
    return next(r for r in snapshot.kpis if r.model == model and r.segment_feature == "all")


def test_concept_change_lightgbm_falls_river_recovers_and_one_alert_says_so(
    bootstrap, topic_env, loans_f0, tmp_path, workers
):
    n, switch, delay = 40_000, 20_000, 1_000
    before = agrawal_frame(n, seed=9, classification_function=0)
    after = agrawal_frame(n, seed=9, classification_function=7)  # the same applicants, relabelled
    labels = np.where(np.arange(n) < switch, before["approved"], after["approved"])
    worker = _worker(topic_env, loans_f0.path, tmp_path, workers, "worker", "score,learn",
                     STREAMSCORE_SEGMENT_FEATURES="elevel")  # fmt: skip
    _produce_with_labels(bootstrap, topic_env, before.drop(columns=["approved"]), labels, delay, "ag")

    champion = f"{loans_f0.name}:{loans_f0.version}"
    snapshots = _snapshots(bootstrap, topic_env, lambda s: s.labels.matched == n and s.kpis, n)
    final = snapshots[-1]
    challenger = final.challenger
    pre = max((s for s in snapshots if s.kpis and 10_000 <= _overall(s, champion).count <= switch),
              key=lambda s: _overall(s, champion).count)  # fmt: skip
    lgbm_before = _overall(pre, champion).rolling["accuracy"]
    lgbm_after = _overall(final, champion).rolling["accuracy"]
    river_after = _overall(final, challenger).rolling["accuracy"]
    print(f"rolling accuracy: LightGBM {lgbm_before:.3f} before the switch, {lgbm_after:.3f} at the end; "
          f"River {river_after:.3f} at the end; {len(snapshots)} snapshots")  # fmt: skip
    assert _overall(final, champion).count == n and _overall(final, challenger).count == n
    assert lgbm_before > 0.9 and lgbm_after < lgbm_before - 0.2
    assert river_after > lgbm_after + 0.1
    assert {r.segment_feature for r in final.kpis} == {"all", "elevel"}

    def firing_at(record: Record) -> int | None:
        """The index of the event where a firing concept-drift alert saw the change."""
        alert = ConceptDriftAlert.model_validate_json(record.value)
        return int(alert.change.event_id.split("-")[1]) if alert.status == "firing" else None

    # every alert up to the first one at or after the switch, in the order the learner sent them
    records = read_topic(bootstrap, topic_env["STREAMSCORE_TOPIC_DRIFT"], 1, timeout_s=budget(),
                         counted=lambda r: (firing_at(r) or -1) >= switch)  # fmt: skip
    firing = [a for a in map(ConceptDriftAlert.model_validate_json, (r.value for r in records))]
    firing = [a for a in firing if a.status == "firing"]
    at = [int(a.change.event_id.split("-")[1]) for a in firing]
    print(f"concept-drift alerts at events {at}: {[a.message for a in firing]}")
    assert at and switch <= at[0] < switch + 2_000, "the first alert: the switch, within 2,000 events"
    assert firing[0].change.detector == "cusum" and firing[0].error_after > firing[0].error_before + 0.2

    scraped = worker.get_text("/metrics").splitlines()
    gauge = [
        ln
        for ln in scraped
        if ln.startswith("streamscore_kpi_cumulative{")
        and f'model="{challenger}"' in ln
        and 'metric="accuracy"' in ln
        and 'segment_feature="all"' in ln
    ]
    assert len(gauge) == 1
    assert float(gauge[0].split()[-1]) == pytest.approx(_overall(final, challenger).cumulative["accuracy"])


def test_progressive_validation_on_phishing_equals_river(bootstrap, topic_env, tmp_path, workers):
    data = list(datasets.Phishing())
    frame = pd.DataFrame([x for x, _ in data]).astype(float)
    labels = np.array([int(y) for _, y in data])
    bundle = train_bundle(frame.assign(y=labels), "y", tmp_path / "phish", name="phish", num_trees=10)
    _worker(topic_env, bundle.path, tmp_path, workers, "worker", "score,learn")
    _produce_with_labels(bootstrap, topic_env, frame, labels, 0, "ph")

    final = _snapshots(bootstrap, topic_env, lambda s: s.labels.matched == len(data), len(data))[-1]
    ours = _overall(final, final.challenger).cumulative["accuracy"]
    model = (
        compose.Select(*frame.columns) | preprocessing.StandardScaler() | linear_model.LogisticRegression()
    )
    theirs = evaluate.progressive_val_score(datasets.Phishing(), model, metrics.Accuracy()).get()
    print(f"Phishing through Kafka: progressive accuracy {ours:.10f}, river.evaluate {theirs:.10f}")
    assert abs(ours - theirs) <= 1e-9


def test_learner_restart_continues_from_its_checkpoint(bootstrap, topic_env, loans_f0, tmp_path, workers):
    n = 60_000
    frame = agrawal_frame(n, seed=4, classification_function=0)
    env = {"STREAMSCORE_METRICS_EVERY_LABELS": "2000"}
    _worker(topic_env, loans_f0.path, tmp_path, workers, "scorer", "score")
    learner = _worker(topic_env, loans_f0.path, tmp_path, workers, "learner", "learn", **env)
    _produce_with_labels(
        bootstrap, topic_env, frame.drop(columns=["approved"]), frame["approved"], 1000, "rs"
    )

    seen = learner.wait(lambda: learner.get("/stats")["learn"]["labels"], lambda labels: labels >= 10_000,
                        "10,000 labels read", budget(n), interval_s=0.01)  # fmt: skip
    learner.process.kill()
    learner.process.wait(10)
    assert 10_000 <= seen < n, "the kill must land mid-stream"

    restarted = _worker(topic_env, loans_f0.path, tmp_path, workers, "learner2", "learn", **env)
    snapshots = _snapshots(bootstrap, topic_env, lambda s: s.labels.matched >= n, n)
    champion = f"{loans_f0.name}:{loans_f0.version}"
    counts = [_overall(s, champion).count for s in snapshots if s.kpis]
    print(f"killed after {seen} labels; snapshot counts {counts[:3]} ... {counts[-3:]}")
    assert restarted.get("/stats")["learn"]["restored"] == 1
    assert counts == sorted(counts), "a count went back: the restart reset the KPIs"
    assert counts[-1] == n, f"{counts[-1] - n:+} labels counted twice or lost"
    final = snapshots[-1]
    assert _overall(final, final.challenger).count == n


def test_events_without_labels_leave_only_the_ttls_worth(bootstrap, topic_env, loans_f0, tmp_path, workers):
    n, ttl_s = 100_000, 10  # events are 1 ms apart in event time: the TTL holds 10,000
    frame = agrawal_frame(n, seed=5, classification_function=0).drop(columns=["approved"])
    _worker(topic_env, loans_f0.path, tmp_path, workers, "worker", "score,learn",
            STREAMSCORE_LABEL_TTL_SECONDS=str(ttl_s))  # fmt: skip
    events = events_from_frame(frame, prefix="nl", start_ms=BASE_MS)
    produce(
        bootstrap,
        topic_env["STREAMSCORE_TOPIC_FEATURES"],
        [(e["entity_id"].encode(), orjson.dumps(e)) for e in events],
    )
    final = _snapshots(
        bootstrap, topic_env, lambda s: s.labels.pending_events + s.labels.expired_events >= n, n
    )[-1]
    print(f"100,000 events, no labels: {final.labels}")
    assert final.labels.pending_events <= ttl_s * 1000 + 1
    assert final.labels.expired_events >= n - ttl_s * 1000 - 1
    assert final.labels.matched == 0
