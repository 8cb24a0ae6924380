"""The side-topic intake: refusals counted and dead-lettered once per record, cut like features.dlq."""

from __future__ import annotations

from schemas import headers as h
from streams.services.shared.intake import LabelIntake, MonitorIntake, Refusals
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
