"""ScoreHandler without Kafka: records in, predictions, dead letters and monitor batches out."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import orjson
import pandas as pd
import pytest

from schemas import MonitorBatch, Prediction
from schemas import headers as h
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import (
    INVALID_KINDS,
    agrawal_frame,
    events_from_frame,
    invalid_payload,
    numeric_frame,
)
from scoring.offline.training import train_bundle
from streams.services.score.handler import ScoreHandler
from streams.settings import Settings

DECODE_KINDS = {"malformed_json", "nan", "infinity", "bad_utf8", "null_value"}
RECORD_TIME_MS = 1_700_000_000_000
SENTINEL = -999.0


@dataclass
class Record:
    """The read side of a consumed Kafka message, as confluent_kafka.Message shows it."""

    value_: bytes | None
    key_: bytes | None = b"key"
    topic_: str = "features"
    partition_: int = 0
    offset_: int = 0
    headers_: list[tuple[str, bytes]] | None = None
    timestamp_: tuple[int, int] = (1, RECORD_TIME_MS)

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self.headers_

    def timestamp(self) -> tuple[int, int]:
        return self.timestamp_


@dataclass
class Out:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None


@dataclass
class Sink:
    emitted: list[Out] = field(default_factory=list)

    def emit(self, topic: str, key: bytes | None, value: bytes | None, headers, partition=None) -> None:
        self.emitted.append(Out(topic, key, value, headers))

    def on(self, topic: str) -> list[Out]:
        return [o for o in self.emitted if o.topic == topic]


class PoisonBundle(ModelBundle):
    def predict(self, matrix: np.ndarray, num_threads: int = 1) -> np.ndarray:
        if (matrix[:, 0] == SENTINEL).any():
            raise ValueError("poison row")
        return super().predict(matrix, num_threads)


SETTINGS = Settings(kafka_bootstrap="x:1")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return agrawal_frame(12, seed=31, classification_function=2).drop(columns=["approved"])


@pytest.fixture(scope="module")
def events(frame: pd.DataFrame) -> list[dict]:
    return list(events_from_frame(frame, prefix="h"))


@pytest.fixture(scope="module")
def optional_bundle() -> ModelBundle:
    """A small model with an optional feature, so encoded rows hold NaN."""
    data = numeric_frame(400, n_features=4, seed=1)
    data.loc[data.index % 7 == 0, "f01"] = np.nan
    return train_bundle(data, "y", num_trees=5, name="opt")


def _valid_records(events: list[dict]) -> list[Record]:
    """Even events on partition 0, odd on partition 1, offsets counting per partition."""
    return [
        Record(orjson.dumps(e), e["entity_id"].encode(), partition_=i % 2, offset_=100 + i // 2)
        for i, e in enumerate(events)
    ]


def _invalid_records(events: list[dict]) -> list[tuple[str, Record]]:
    return [
        (
            kind,
            Record(
                invalid_payload(kind, events[i % len(events)], "salary"),
                f"bad-{kind}".encode(),
                partition_=0,
                offset_=500 + i,
                headers_=[("trace-id", f"t{i}".encode()), ("origin", b"unit")],
            ),
        )
        for i, kind in enumerate(INVALID_KINDS)
    ]


def _mixed(events: list[dict]) -> tuple[list[Record], list[tuple[str, Record]]]:
    valid = _valid_records(events)
    invalid = _invalid_records(events)
    records = list(valid)
    for position, (_, record) in zip([0, 3, 3, 5, 8, 9, 10, 11, 14, 20], invalid, strict=True):
        records.insert(position, record)
    return records, invalid


def test_one_prediction_per_valid_record_equal_to_offline_predict(agrawal_bundle, frame, events) -> None:
    records, _ = _mixed(events)
    sink = Sink()

    ScoreHandler(SETTINGS, agrawal_bundle).handle(records, sink.emit)

    predictions = sink.on(SETTINGS.topic_predictions)
    assert len(predictions) == len(events)
    offline = dict(
        zip(
            [e["event_id"] for e in events],
            agrawal_bundle.booster.predict(agrawal_bundle.spec.encode_frame(frame)),
            strict=True,
        )
    )
    by_id = {e["event_id"]: (e, r) for e, r in zip(events, _valid_records(events), strict=True)}
    for out in predictions:
        prediction = Prediction.model_validate_json(out.value)
        event, record = by_id[prediction.event_id]
        assert out.key == event["entity_id"].encode() == prediction.entity_id.encode()
        assert prediction.score == pytest.approx(offline[prediction.event_id], abs=1e-12)
        assert prediction.label == (prediction.score >= agrawal_bundle.metadata.threshold)
        assert (prediction.model_name, prediction.model_version) == ("loans", agrawal_bundle.version)
        assert prediction.event_time == event["event_time"]
        assert (prediction.topic, prediction.partition, prediction.offset) == (
            "features",
            record.partition_,
            record.offset_,
        )
        assert prediction.latency_ms == prediction.scored_at - RECORD_TIME_MS


def test_predictions_carry_cloudevents_headers(agrawal_bundle, events) -> None:
    sink = Sink()

    ScoreHandler(SETTINGS, agrawal_bundle).handle(_valid_records(events), sink.emit)

    for out in sink.on(SETTINGS.topic_predictions):
        headers = dict(out.headers)
        assert headers[h.CE_ID] == orjson.loads(out.value)["event_id"].encode()
        assert headers[h.CE_SPECVERSION] == b"1.0"
        assert headers[h.CE_TYPE] == b"io.streamscore.prediction.v1"
        assert headers[h.CE_SOURCE] == f"streamscore/loans/{agrawal_bundle.version}".encode()
        assert headers[h.CE_TIME].startswith(b"20")
        assert headers["content-type"] == b"application/json"


def test_predictions_have_no_cloudevents_headers_when_turned_off(agrawal_bundle, events) -> None:
    sink = Sink()
    settings = Settings(kafka_bootstrap="x:1", prediction_headers=False)

    ScoreHandler(settings, agrawal_bundle).handle(_valid_records(events), sink.emit)

    predictions = sink.on(settings.topic_predictions)
    assert len(predictions) == len(events)
    assert all(not any(name.startswith("ce_") for name, _ in out.headers or []) for out in predictions)


def test_one_dead_letter_per_invalid_record_keeping_the_original_message(agrawal_bundle, events) -> None:
    records, invalid = _mixed(events)
    sink = Sink()

    ScoreHandler(SETTINGS, agrawal_bundle).handle(records, sink.emit)

    dead = sink.on(SETTINGS.topic_dlq)
    assert sorted(o.key for o in dead) == sorted(record.key_ for _, record in invalid)
    by_key = {record.key_: (kind, record) for kind, record in invalid}
    for out in dead:
        kind, record = by_key[out.key]
        assert (out.key, out.value) == (record.key_, record.value_)
        original = record.headers_
        assert out.headers[: len(original)] == original
        context = dict(out.headers[len(original) :])
        assert all(name.startswith(h.DLQ_PREFIX) for name in context)
        assert context[h.DLQ_STAGE] == (b"decode" if kind in DECODE_KINDS else b"validate")
        assert context[h.DLQ_CLASS] == b"InvalidEvent"
        assert context[h.DLQ_MESSAGE]
        assert context[h.DLQ_TOPIC] == b"features"
        assert context[h.DLQ_PARTITION] == b"0"
        assert context[h.DLQ_OFFSET] == str(record.offset_).encode()
        assert int(context[h.DLQ_TIME]) > RECORD_TIME_MS


def test_a_row_the_model_cannot_score_is_dead_lettered_at_the_score_stage(
    agrawal_bundle, frame, events
) -> None:
    poison = PoisonBundle(
        **{f.name: getattr(agrawal_bundle, f.name) for f in dataclasses.fields(ModelBundle)}
    )
    bad = {**events[0], "event_id": "poison", "features": {**events[0]["features"], "salary": SENTINEL}}
    healthy = [Record(orjson.dumps(e), e["entity_id"].encode(), offset_=10 + i) for i, e in enumerate(events)]
    records = [*healthy[1:3], Record(orjson.dumps(bad), b"p", offset_=77), *healthy[3:5]]
    sink = Sink()

    stats = ScoreHandler(SETTINGS, poison).handle(records, sink.emit)

    (dead,) = sink.on(SETTINGS.topic_dlq)
    context = dict(dead.headers)
    assert dead.value == orjson.dumps(bad)
    assert context[h.DLQ_STAGE] == b"score"
    assert context[h.DLQ_CLASS] == b"ScoreError"
    assert context[h.DLQ_MESSAGE] == b"model raised ValueError: poison row"
    assert context[h.DLQ_OFFSET] == b"77"
    predictions = [Prediction.model_validate_json(o.value) for o in sink.on(SETTINGS.topic_predictions)]
    assert [p.event_id for p in predictions] == [e["event_id"] for e in events[1:5]]
    assert [p.offset for p in predictions] == [11, 12, 13, 14]
    (monitor,) = sink.on(SETTINGS.topic_monitor)
    batch = MonitorBatch.model_validate_json(monitor.value)
    assert batch.offsets == [11, 12, 13, 14]
    assert batch.scores == [p.score for p in predictions]
    np.testing.assert_array_equal(
        np.array(batch.rows, dtype=float), agrawal_bundle.spec.encode_frame(frame.iloc[1:5])
    )
    assert (stats.consumed, stats.scored, stats.dead_letters) == (5, 4, {"score": 1})


def test_one_monitor_batch_per_source_partition_with_the_encoded_rows(agrawal_bundle, frame, events) -> None:
    records, _ = _mixed(events)
    sink = Sink()

    ScoreHandler(SETTINGS, agrawal_bundle).handle(records, sink.emit)

    monitors = sink.on(SETTINGS.topic_monitor)
    assert sorted(o.key for o in monitors) == [b"features-0", b"features-1"]
    encoded = agrawal_bundle.spec.encode_frame(frame)
    scores = {
        p.event_id: p.score
        for p in (Prediction.model_validate_json(o.value) for o in sink.on(SETTINGS.topic_predictions))
    }
    for out in monitors:
        batch = MonitorBatch.model_validate_json(out.value)
        mine = [i for i in range(len(events)) if i % 2 == batch.partition]
        assert batch.source_topic == "features"
        assert batch.event_ids == [events[i]["event_id"] for i in mine]
        assert batch.entity_ids == [events[i]["entity_id"] for i in mine]
        assert batch.event_times == [events[i]["event_time"] for i in mine]
        assert batch.offsets == [100 + i // 2 for i in mine]
        assert batch.feature_names == agrawal_bundle.spec.names
        np.testing.assert_array_equal(np.array(batch.rows, dtype=float), encoded[mine])
        assert batch.scores == [scores[e] for e in batch.event_ids]
        assert (batch.model_name, batch.model_version) == ("loans", agrawal_bundle.version)


def test_missing_values_reach_the_monitor_as_null(optional_bundle) -> None:
    assert [f.required for f in optional_bundle.spec.features] == [True, False, True, True]
    features = {"f00": 0.5, "f01": None, "f02": -1.0, "f03": 2.0}
    event = {"event_id": "n1", "entity_id": "c1", "event_time": 5, "features": features}
    sink = Sink()

    ScoreHandler(SETTINGS, optional_bundle).handle([Record(orjson.dumps(event))], sink.emit)

    (monitor,) = sink.on(SETTINGS.topic_monitor)
    assert orjson.loads(monitor.value)["rows"] == [[0.5, None, -1.0, 2.0]]
    assert MonitorBatch.model_validate_json(monitor.value).rows == [[0.5, None, -1.0, 2.0]]


def test_no_monitor_batch_when_monitoring_is_off(agrawal_bundle, events) -> None:
    settings = Settings(kafka_bootstrap="x:1", monitor_enabled=False)
    sink = Sink()

    ScoreHandler(settings, agrawal_bundle).handle(_valid_records(events), sink.emit)

    assert sink.on(settings.topic_monitor) == []
    assert len(sink.on(settings.topic_predictions)) == len(events)


def test_batch_stats_count_consumed_scored_and_dead_letters_by_stage(agrawal_bundle, events) -> None:
    records, invalid = _mixed(events)

    stats = ScoreHandler(SETTINGS, agrawal_bundle).handle(records, Sink().emit)

    assert (stats.consumed, stats.scored, stats.dead_letters) == (
        len(events) + len(invalid),
        len(events),
        dict(Counter("decode" if k in DECODE_KINDS else "validate" for k, _ in invalid)),
    )
    assert len(stats.latencies_ms) == len(stats.event_ages_ms) == len(events), "one latency per prediction"
    assert stats.dead_letters == {"decode": 5, "validate": 5}


def test_a_batch_of_only_invalid_records_emits_only_dead_letters(agrawal_bundle, events) -> None:
    invalid = [record for _, record in _invalid_records(events)]
    sink = Sink()

    stats = ScoreHandler(SETTINGS, agrawal_bundle).handle(invalid, sink.emit)

    assert {o.topic for o in sink.emitted} == {SETTINGS.topic_dlq}
    assert (stats.consumed, stats.scored, sum(stats.dead_letters.values())) == (10, 0, 10)


def test_swap_serves_the_new_model_from_the_next_batch(agrawal_bundle, events) -> None:
    handler = ScoreHandler(SETTINGS, agrawal_bundle)
    newer = dataclasses.replace(
        agrawal_bundle, metadata=agrawal_bundle.metadata.model_copy(update={"version": "2"})
    )
    first, second = Sink(), Sink()

    handler.handle(_valid_records(events[:3]), first.emit)
    handler.swap(newer)
    handler.handle(_valid_records(events[3:6]), second.emit)

    def versions(sink: Sink) -> set[str]:
        return {
            Prediction.model_validate_json(o.value).model_version for o in sink.on(SETTINGS.topic_predictions)
        }

    assert versions(first) == {"1"}
    assert versions(second) == {"2"}
    assert handler.bundle is newer
    assert {dict(o.headers)[h.CE_SOURCE] for o in second.on(SETTINGS.topic_predictions)} == {
        b"streamscore/loans/2"
    }
    assert {
        MonitorBatch.model_validate_json(o.value).model_version for o in second.on(SETTINGS.topic_monitor)
    } == {"2"}


def test_monitor_messages_stay_under_the_broker_limit_for_any_batch_size(agrawal_bundle) -> None:
    # 5,000 events in one partition: one message would be over 1 MB; the handler splits it
    settings = Settings(kafka_bootstrap="x:1")
    handler = ScoreHandler(settings, agrawal_bundle)
    events = list(events_from_frame(agrawal_frame(5000, seed=4).drop(columns=["approved"])))
    records = [Record(orjson.dumps(e), offset_=i) for i, e in enumerate(events)]
    emitted: list = []
    handler.handle(records, lambda *r: emitted.append(r))

    monitor = [r for r in emitted if r[0] == settings.topic_monitor]
    assert len(monitor) > 1
    assert max(len(r[2]) for r in monitor) < 1_000_000
    batches = [MonitorBatch.model_validate_json(r[2]) for r in monitor]
    assert [o for b in batches for o in b.offsets] == list(range(5000))


def test_dead_letter_of_an_oversize_payload_keeps_the_head_and_the_original_size(agrawal_bundle) -> None:
    settings = Settings(kafka_bootstrap="x:1", max_message_bytes=1000)
    handler = ScoreHandler(settings, agrawal_bundle)
    payload = b'{"event_id": "' + b"x" * 5000 + b'"}'
    emitted: list = []
    handler.handle([Record(payload, offset_=7)], lambda *r: emitted.append(r))

    ((topic, _, value, headers),) = emitted
    assert topic == settings.topic_dlq
    assert value == payload[:1000]
    assert dict(headers)["streamscore.errors.original.size"] == str(len(payload)).encode()


def test_a_dead_letter_of_huge_headers_and_value_fits_the_producer_limit(agrawal_bundle) -> None:
    from streams.kafka.config import OUTPUT_MESSAGE_BYTES

    handler = ScoreHandler(Settings(kafka_bootstrap="x:1"), agrawal_bundle)
    headers = [(f"h{i}", b"v" * 100_000) for i in range(9)]  # 900 KB of headers
    payload = b"{" + b"x" * 2_000_000  # and a 2 MB body, not even JSON
    emitted: list = []
    handler.handle([Record(payload, key_=b"k" * 1000, headers_=headers)], lambda *r: emitted.append(r))

    ((topic, key, value, out_headers),) = emitted
    assert topic == "features.dlq"
    size = len(key) + len(value) + sum(len(k) + len(v) for k, v in out_headers)
    context = dict(out_headers)
    print(f"dead letter of 900 KB headers + 2 MB value: {size:,} bytes")
    assert size <= OUTPUT_MESSAGE_BYTES
    assert context["streamscore.errors.original.headers.dropped"] == b"9 headers, 900018 bytes"
    assert context["streamscore.errors.original.size"] == str(len(payload)).encode()
    assert value == payload[: len(value)] and len(value) >= 900_000
