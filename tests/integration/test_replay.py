"""Backfill on a real broker: re-score an offset range and a time range into another topic, and only there."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest
from confluent_kafka import Producer

from schemas.messages import Prediction
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import agrawal_frame, events_from_frame
from streams.kafka.topics import ensure_topics
from streams.services.score.replay import Range, replay
from streams.settings import Settings
from tests.integration.kafka_tools import read_to_end, read_topic

pytestmark = pytest.mark.integration

T0 = 1_750_000_000_000


def test_replay_rescores_exactly_the_range_asked(
    bootstrap, topic_env, agrawal_bundle: ModelBundle, agrawal_bundle_dir
):
    settings = Settings(
        **{k.removeprefix("STREAMSCORE_").lower(): v for k, v in topic_env.items()}, partitions=1
    )
    ensure_topics(settings)
    frame = agrawal_frame(3000, seed=41, classification_function=2).drop(columns=["approved"])
    events = list(events_from_frame(frame, prefix="r"))
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, event in enumerate(events):
        value = b'{"event_id": "broken' if i == 1500 else orjson.dumps(event)
        producer.produce(settings.topic_features, value, event["entity_id"].encode(), timestamp=T0 + 10 * i)
    assert producer.flush(30) == 0
    offline = agrawal_bundle.predict(agrawal_bundle.spec.encode_frame(frame))

    out = f"{settings.topic_predictions}-replay"
    stats = replay(settings, agrawal_bundle, out, Range(from_offset=1000, to_offset=1999))
    print(f"offset range: {stats}")
    assert (stats.read, stats.scored, stats.invalid) == (1000, 999, 1)
    assert stats.partitions == {0: (1000, 1999)}
    predictions = [
        Prediction.model_validate_json(r.value) for r in read_topic(bootstrap, out, 999, idle_s=1.0)
    ]
    assert sorted(int(p.event_id[2:]) for p in predictions) == [i for i in range(1000, 2000) if i != 1500]
    assert max(abs(p.score - offline[int(p.event_id[2:])]) for p in predictions) <= 1e-12

    out_time = f"{settings.topic_predictions}-replay-time"
    cli = [
        *(sys.executable, "-m", "streams", "replay", "--model", str(agrawal_bundle_dir)),
        *("--out-topic", out_time, "--bootstrap", bootstrap),
        *("--from-time", str(T0 + 10 * 2500), "--to-time", str(T0 + 10 * 2699)),
    ]
    env = {**os.environ, **topic_env}
    done = subprocess.run(cli, capture_output=True, text=True, timeout=120, check=False, env=env)
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    timed = [
        Prediction.model_validate_json(r.value) for r in read_topic(bootstrap, out_time, 200, idle_s=1.0)
    ]
    assert sorted(int(p.event_id[2:]) for p in timed) == list(range(2500, 2700))

    # no worker ran: whatever is on these topics now, the two replays wrote (both are done: read to the end)
    written = {
        topic: len(read_to_end(bootstrap, topic))
        for topic in (settings.topic_monitor, settings.topic_dlq, settings.topic_predictions)
    }
    print(f"records on the live topics after both replays: {written}")
    assert written == dict.fromkeys(written, 0), (
        "a replay writes only to --out-topic: no monitor, no dead letter"
    )
