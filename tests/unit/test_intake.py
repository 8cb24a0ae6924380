"""The side-topic intake: refusals counted and dead-lettered once per record, cut like features.dlq."""

from __future__ import annotations

import threading

import numpy as np
import orjson
import pytest

from schemas import headers as h
from streams.services.shared.intake import LabelIntake, MonitorIntake, Refusals
from streams.services.shared.monitor_decodes import MonitorDecodes
from streams.settings import Settings
from tests.unit.fake_kafka import FakeRecord


def _collect():
    out: list[tuple] = []
    return out, lambda topic, key, value, headers: out.append((topic, key, value, dict(headers or [])))


def test_a_monitor_record_both_roles_refuse_is_counted_and_dead_lettered_once():
    settings, refusals = Settings(), Refusals()
    drift, learn = (MonitorIntake(settings, refusals, lambda name, version: None) for _ in range(2))
    out, emit = _collect()
    junk = FakeRecord(settings.topic_monitor, 0, 7, value_=b"not json")
    assert drift.decode(junk, emit) is None and learn.decode(junk, emit) is None
    assert refusals.refused[(settings.topic_monitor, "schema")] == 1
    assert [(topic, value) for topic, _, value, _ in out] == [(settings.topic_monitor_dlq, b"not json")]
    other = FakeRecord(settings.topic_monitor, 0, 8, value_=b"not json either")
    learn.decode(other, emit)
    assert refusals.refused[(settings.topic_monitor, "schema")] == 2, "another record counts again"


def test_a_refused_label_larger_than_max_message_bytes_is_cut_and_its_size_said():
    settings, refusals = Settings(max_message_bytes=1000), Refusals()
    out, emit = _collect()
    value = b'{"event_id": "' + b"i" * 5000 + b'", "label": 1, "label_time": 1}'
    LabelIntake(settings, refusals).decode(FakeRecord(settings.topic_labels, 0, 1, value_=value), emit)
    (topic, _, dead, headers) = out[0]
    assert topic == settings.topic_labels_dlq and dead == value[:1000]
    assert headers[h.DLQ_ORIGINAL_SIZE] == str(len(value)).encode() and headers[h.DLQ_STAGE] == b"schema"


RECORD = {
    "model_name": "loans",
    "model_version": "1",
    "source_topic": "features",
    "partition": 0,
    "offsets": [5, 6],
    "event_ids": ["e5", "e6"],
    "entity_ids": ["c5", "c6"],
    "event_times": [1_700_000_000_000, 1_700_000_000_001],
    "scores": [0.25, 1],
    "feature_names": ["x", "c"],
    "rows": [[1.5, None], [2, 0.0]],
}


def _two_roles(settings: Settings, refusals: Refusals, decodes: MonitorDecodes) -> tuple:
    return tuple(MonitorIntake(settings, refusals, lambda name, version: None, decodes) for _ in range(2))


def test_both_roles_get_the_same_columns_from_one_decoding_of_a_monitor_record():
    settings, refusals, decodes = Settings(), Refusals(), MonitorDecodes()
    drift, learn = _two_roles(settings, refusals, decodes)
    out, emit = _collect()
    record = FakeRecord(settings.topic_monitor, 0, 7, value_=orjson.dumps(RECORD))
    alone = MonitorIntake(settings, Refusals(), lambda name, version: None).decode(record, emit)

    first, second = drift.decode(record, emit), learn.decode(record, emit)
    assert (decodes.decoded, decodes.shared) == (1, 1)
    for columns in (first, second):
        assert list(columns.event_ids) == list(alone.event_ids) and columns.model_name == "loans"
        np.testing.assert_array_equal(columns.rows, alone.rows)
    with pytest.raises(ValueError):  # shared between threads: no role may change it
        first.rows[0, 0] = 9.0
    assert out == []


def test_other_bytes_at_the_same_position_are_decoded_again():
    settings, refusals, decodes = Settings(), Refusals(), MonitorDecodes()
    drift, learn = _two_roles(settings, refusals, decodes)
    _, emit = _collect()
    drift.decode(FakeRecord(settings.topic_monitor, 0, 7, value_=orjson.dumps(RECORD)), emit)
    other = orjson.dumps({**RECORD, "scores": [0.5, 0.75]})

    columns = learn.decode(FakeRecord(settings.topic_monitor, 0, 7, value_=other), emit)
    assert list(columns.scores) == [0.5, 0.75] and (decodes.decoded, decodes.shared) == (2, 0)


def test_a_record_both_roles_refuse_is_decoded_once_and_dead_lettered_once():
    settings, refusals, decodes = Settings(), Refusals(), MonitorDecodes()
    drift, learn = _two_roles(settings, refusals, decodes)
    out, emit = _collect()
    junk = FakeRecord(settings.topic_monitor, 0, 7, value_=b"not json")

    assert drift.decode(junk, emit) is None and learn.decode(junk, emit) is None
    assert (decodes.decoded, decodes.shared) == (1, 1)
    assert refusals.refused[(settings.topic_monitor, "schema")] == 1 and len(out) == 1


def test_what_the_other_role_does_not_take_is_dropped_past_the_byte_bound():
    settings, refusals = Settings(), Refusals()
    value = orjson.dumps(RECORD)
    decodes = MonitorDecodes(max_bytes=3 * len(value))
    drift, learn = _two_roles(settings, refusals, decodes)
    _, emit = _collect()
    for offset in range(10):  # the drift role runs ahead
        drift.decode(FakeRecord(settings.topic_monitor, 0, offset, value_=value), emit)
    for offset in range(10):  # the learn role comes after: the last three were kept for it
        learn.decode(FakeRecord(settings.topic_monitor, 0, offset, value_=value), emit)
    assert (decodes.decoded, decodes.shared) == (17, 3)
    assert len(decodes._held) == 0, "what the learn role decoded behind the drift role is not kept"


def test_a_role_coming_to_a_record_the_other_is_decoding_waits_for_its_result(monkeypatch):
    from streams.services.shared import monitor_decodes

    settings, refusals, decodes = Settings(), Refusals(), MonitorDecodes()
    drift, learn = _two_roles(settings, refusals, decodes)
    _, emit = _collect()
    record = FakeRecord(settings.topic_monitor, 0, 7, value_=orjson.dumps(RECORD))
    inside, release = threading.Event(), threading.Event()
    decode = monitor_decodes.decode_monitor

    def slow_decode(*args):  # the drift role is still decoding when the learn role comes
        inside.set()
        release.wait(5)
        return decode(*args)

    monkeypatch.setattr(monitor_decodes, "decode_monitor", slow_decode)
    got = {}
    first = threading.Thread(target=lambda: got.update(drift=drift.decode(record, emit)))
    first.start()
    assert inside.wait(5)
    second = threading.Thread(target=lambda: got.update(learn=learn.decode(record, emit)))
    second.start()
    second.join(0.2)
    assert second.is_alive(), "the learn role waits for the drift role's decoding"
    release.set()
    first.join(5)
    second.join(5)

    assert got["drift"] is got["learn"] and (decodes.decoded, decodes.shared) == (1, 1)
