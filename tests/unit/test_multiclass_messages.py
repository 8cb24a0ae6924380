"""The multiclass forms of the messages (issue 28, phase A): predictions, monitoring records, labels.

A multiclass model's prediction and monitoring record are ``schema_version`` 2 and carry every class's
probability; a binary model's are what they always were, key for key. The monitor codec accepts exactly
what ``MonitorBatch`` accepts, and the intakes check records and labels against the model's classes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from schemas import headers as h
from schemas.export import export_json_schemas
from schemas.messages import Label, MonitorBatch, Prediction
from schemas.monitor import decode_monitor
from scoring.model.bundle import ModelBundle
from scoring.model.monitor_rows import RecordShape
from scoring.offline.synthetic import MULTICLASS_TARGET, events_from_frame, multiclass_frame
from streams.cli.tail.lines import RecordView, label_line, monitor_line, prediction_line
from streams.cli.tail.reports import metrics_line
from streams.services.score.handler import ScoreHandler
from streams.services.shared.intake import LabelIntake, MonitorIntake, Refusals
from streams.settings import Settings
from tests.unit.fake_kafka import FakeRecord
from tests.unit.test_monitor_codec import _both, _same
from tests.unit.test_monitor_codec import lists as codec_lists
from tests.unit.test_monitor_codec import values as codec_values

V1_KEYS = [
    "event_id", "entity_id", "score", "label", "model_name", "model_version", "event_time", "scored_at",
    "latency_ms", "topic", "partition", "offset", "schema_version",
]  # fmt: skip
V1_MONITOR_KEYS = [
    "model_name", "model_version", "source_topic", "partition", "offsets", "event_ids", "entity_ids",
    "event_times", "scores", "feature_names", "rows", "schema_version",
]  # fmt: skip


def _scored(bundle: ModelBundle, frame, explain_share: float = 0.0) -> dict[str, list[bytes]]:
    """What the score step emits for ``frame``'s rows as events, by topic."""
    events = list(events_from_frame(frame, prefix="q"))
    handler = ScoreHandler(Settings(kafka_bootstrap="x:1", explain_share=explain_share), bundle)
    out: dict[str, list[bytes]] = {}
    handler.handle(
        [FakeRecord("features", 0, i, value_=orjson.dumps(e)) for i, e in enumerate(events)],
        lambda topic, key, value, headers, partition=None: out.setdefault(topic, []).append(value),
    )
    return out


@pytest.fixture(scope="module")
def emitted(queues_bundle: ModelBundle) -> tuple[list[bytes], list[bytes], np.ndarray]:
    frame = multiclass_frame(400, seed=31).drop(columns=[MULTICLASS_TARGET])
    out = _scored(queues_bundle, frame, explain_share=0.2)
    expected = queues_bundle.booster.predict(queues_bundle.spec.encode_frame(frame))
    return out["predictions"], out["monitor"], expected


# ------------------------------------------------------------------ predictions


def test_a_multiclass_prediction_carries_every_class_and_the_most_probable(
    emitted, queues_bundle: ModelBundle, tmp_path: Path
) -> None:
    predictions, _, expected = emitted
    export_json_schemas(tmp_path)
    schema = Draft202012Validator(json.loads((tmp_path / "prediction.schema.json").read_text()))

    for i, value in enumerate(predictions):
        body = orjson.loads(value)
        assert list(body)[:5] == ["event_id", "entity_id", "score", "label", "probabilities"]
        assert body["schema_version"] == 2 and schema.is_valid(body)
        prediction = Prediction.model_validate_json(value)
        probabilities = np.array(list(prediction.probabilities.values()))
        assert list(prediction.probabilities) == ["billing", "fraud", "support"]
        assert np.abs(probabilities - expected[i]).max() <= 1e-12
        assert prediction.label == queues_bundle.classes[int(expected[i].argmax())]
        assert prediction.score == prediction.probabilities[prediction.label]
    explained = [Prediction.model_validate_json(v) for v in predictions]
    explained = [p for p in explained if p.explanation is not None]
    assert explained and all(p.explanation.class_name == p.label for p in explained)


def test_a_binary_prediction_and_monitor_record_keep_their_form_key_for_key(
    agrawal_bundle: ModelBundle,
) -> None:
    from scoring.offline.synthetic import agrawal_frame

    out = _scored(agrawal_bundle, agrawal_frame(50, seed=2).drop(columns=["approved"]))

    for value in out["predictions"]:
        body = orjson.loads(value)
        assert list(body) == V1_KEYS and body["schema_version"] == 1 and type(body["label"]) is bool
        assert orjson.dumps(body) == value, "the same bytes the v1 form always had"
    assert [list(orjson.loads(v)) for v in out["monitor"]] == [V1_MONITOR_KEYS]


BASE_V2 = {
    "event_id": "e1", "entity_id": "c1", "score": 0.7, "label": "fraud",
    "probabilities": {"billing": 0.1, "fraud": 0.7, "support": 0.2}, "model_name": "q", "model_version": "1",
    "event_time": 1, "scored_at": 2, "latency_ms": 1.0, "topic": "features", "partition": 0, "offset": 5,
    "schema_version": 2,
}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "valid"),
    [
        ({}, True),
        ({"label": 2, "probabilities": {"0": 0.1, "1": 0.2, "2": 0.7}}, True),  # integer classes
        ({"probabilities": None}, False),
        ({"label": "refunds"}, False),
        ({"score": 0.2}, False),
        ({"label": True}, False),
        ({"schema_version": 1}, False),  # probabilities in the binary form
        ({"schema_version": 1, "probabilities": None, "label": 1}, True),  # a 0/1 label reads as the boolean
        ({"schema_version": 1, "probabilities": None, "label": "fraud"}, False),
    ],
)
def test_the_prediction_model_keeps_each_form_whole(change: dict, valid: bool) -> None:
    body = {**BASE_V2, **change}
    if not valid:
        with pytest.raises(ValidationError):
            Prediction.model_validate(body)
        return
    prediction = Prediction.model_validate(body)
    assert prediction.label is True or prediction.label == body["label"]


# ------------------------------------------------------------------ monitoring records


def test_a_multiclass_monitor_record_decodes_to_its_probabilities_and_fits_its_model(
    emitted, queues_bundle: ModelBundle
) -> None:
    _, monitor, expected = emitted
    columns = decode_monitor(monitor[0])
    model = MonitorBatch.model_validate_json(monitor[0])

    assert model.schema_version == 2 and model.classes == ["billing", "fraud", "support"]
    assert list(columns.classes) == model.classes
    np.testing.assert_array_equal(columns.probabilities, np.asarray(model.probabilities))
    assert np.abs(columns.probabilities - expected[: len(columns)]).max() <= 1e-12
    assert columns.scores.tolist() == columns.probabilities.max(axis=1).tolist()
    assert RecordShape(queues_bundle.spec, queues_bundle.class_names).problem(columns) is None
    assert columns.take(1, 3).probabilities.shape == (2, 3)


BASE_MONITOR_V2 = {
    "model_name": "q", "model_version": "1", "source_topic": "features", "partition": 0, "offsets": [5, 6],
    "event_ids": ["e5", "e6"], "entity_ids": ["c5", "c6"], "event_times": [1, 2], "scores": [0.7, 0.5],
    "feature_names": ["x"], "rows": [[1.0], [None]], "classes": ["a", "b", "c"],
    "probabilities": [[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]], "schema_version": 2,
}  # fmt: skip
MONITOR_MUTATIONS = {
    "as written": {},
    "integer probabilities": {"probabilities": [[0, 1, 0], [1, 0, 0]]},
    "version 1 with classes": {"schema_version": 1},
    "version 1, classes null": {"schema_version": 1, "classes": None, "probabilities": None},
    "version 2 without classes": {"classes": None},
    "version 2 without probabilities": {"probabilities": None},
    "one class": {"classes": ["a"], "probabilities": [[1.0], [1.0]]},
    "a class twice": {"classes": ["a", "a", "c"]},
    "an empty class name": {"classes": ["", "b", "c"]},
    "a class as a number": {"classes": [1, "b", "c"]},
    "a row short": {"probabilities": [[0.2, 0.8], [0.5, 0.25, 0.25]]},
    "a row missing": {"probabilities": [[0.2, 0.7, 0.1]]},
    "a probability null": {"probabilities": [[None, 0.7, 0.1], [0.5, 0.25, 0.25]]},
    "a probability as text": {"probabilities": [["0.2", 0.7, 0.1], [0.5, 0.25, 0.25]]},
    "a probability as bool": {"probabilities": [[True, 0.7, 0.1], [0.5, 0.25, 0.25]]},
    "version 3": {"schema_version": 3},
}


@pytest.mark.parametrize("change", MONITOR_MUTATIONS.values(), ids=MONITOR_MUTATIONS.keys())
def test_the_codec_takes_exactly_the_multiclass_records_the_model_takes(change: dict) -> None:
    fast, model = _both({**BASE_MONITOR_V2, **change})

    assert (fast is None) == (model is None)
    if model is not None:
        _same(fast, model)
        expected = None if model.probabilities is None else np.asarray(model.probabilities, dtype=float)
        np.testing.assert_array_equal(fast.probabilities, expected)


@given(
    field=st.sampled_from(sorted(BASE_MONITOR_V2)),
    value=codec_values | codec_lists | st.lists(codec_lists, max_size=3),
)
def test_any_single_field_of_a_multiclass_record_replaced_the_codec_and_model_agree(
    field: str, value: object
) -> None:
    try:
        raw = json.dumps({**BASE_MONITOR_V2, field: value}, allow_nan=False)
    except ValueError:
        return  # NaN and infinity are not JSON
    fast, model = _both(json.loads(raw))
    assert (fast is None) == (model is None), f"codec {fast is not None}, model {model is not None}"


def _monitor_columns(change: dict):
    return decode_monitor(orjson.dumps({**BASE_MONITOR_V2, "feature_names": ["x"], **change}))


def test_the_intake_checks_a_records_classes_against_the_models(queues_bundle: ModelBundle) -> None:
    shape = RecordShape(queues_bundle.spec, ("a", "b", "c"))
    spec_only = RecordShape(queues_bundle.spec)
    columns = decode_monitor(orjson.dumps({**BASE_MONITOR_V2}))
    rows = {"feature_names": queues_bundle.spec.names, "rows": [[1.0] * 8, [2.0] * 8]}

    fits = _monitor_columns(rows)
    other = _monitor_columns({**rows, "classes": ["a", "c", "b"]})
    too_likely = _monitor_columns({**rows, "probabilities": [[0.2, 1.5, 0.1], [0.5, 0.25, 0.25]]})
    single = _monitor_columns({**rows, "schema_version": 1, "classes": None, "probabilities": None})

    assert "not the model's" in shape.problem(columns)  # its features are not the model's
    assert shape.problem(fits) is None
    assert shape.problem(other) == "classes ['a', 'c', 'b'] are not the model's ['a', 'b', 'c']"
    assert shape.problem(too_likely) == "a class probability outside [0, 1]"
    assert shape.problem(single) == "no class probabilities for a model of 3 classes"
    assert spec_only.problem(fits) == "class probabilities for a model of one score per event"
    assert spec_only.problem(single) is None


def test_a_record_of_other_classes_is_dead_lettered_with_the_reason(queues_bundle: ModelBundle) -> None:
    settings, out = Settings(), []
    shape = RecordShape(queues_bundle.spec, queues_bundle.class_names)
    intake = MonitorIntake(settings, Refusals(), lambda name, version: shape)
    rows = {"feature_names": queues_bundle.spec.names, "rows": [[1.0] * 8, [2.0] * 8]}
    value = orjson.dumps({**BASE_MONITOR_V2, **rows})

    decoded = intake.decode(
        FakeRecord(settings.topic_monitor, 0, 3, value_=value), lambda *a: out.append((a[0], dict(a[3])))
    )

    assert decoded is None
    (topic, headers), *_ = out
    assert topic == settings.topic_monitor_dlq
    assert (
        b"classes ['a', 'b', 'c'] are not the model's ['billing', 'fraud', 'support']"
        in headers[h.DLQ_MESSAGE]
    )


# ------------------------------------------------------------------ labels


def _label(intake: LabelIntake, label: object) -> tuple[Label | None, list]:
    out: list = []
    value = orjson.dumps({"event_id": "e1", "label": label, "label_time": 1_700_000_000_000})
    record = FakeRecord(Settings().topic_labels, 0, abs(hash(value)), value_=value)  # a record each
    return intake.decode(record, lambda *a: out.append(dict(a[3]))), out


def test_a_multiclass_models_label_names_one_of_its_classes() -> None:
    intake = LabelIntake(Settings(), Refusals(), ("billing", "fraud", "support"))
    integers = LabelIntake(Settings(), Refusals(), (0, 1, 2))

    assert _label(intake, "fraud")[0].label == "fraud"
    assert _label(integers, 2)[0].label == 2.0 and _label(integers, "1")[0].label == 1.0
    refused, out = _label(intake, "refunds")
    assert refused is None
    assert out[0][h.DLQ_MESSAGE] == b"label: 'refunds' is not a class of the model (billing, fraud, support)"


def test_a_binary_models_label_is_still_a_number_refused_as_it_always_was() -> None:
    intake = LabelIntake(Settings(), Refusals())

    assert _label(intake, 1)[0].label == 1.0 and _label(intake, "0")[0].label == 0.0
    for text, says in (
        ("yes", "Input should be a valid number, unable to parse string as a number"),
        ("nan", "Input should be a finite number"),
    ):  # pydantic's words when the label was a float field
        refused, out = _label(intake, text)
        assert refused is None and out[0][h.DLQ_MESSAGE] == f"label: {says} (1 problem)".encode()


# ------------------------------------------------------------------ tail


def test_tail_shows_a_multiclass_prediction_label_and_record(emitted) -> None:
    predictions, monitor, _ = emitted
    prediction = Prediction.model_validate_json(predictions[0])

    line = prediction_line(RecordView(0, 1, 1_700_000_000_000, b"c", predictions[0])).text
    label = label_line(
        RecordView(0, 2, 1, b"c", b'{"event_id": "q-0", "label": "fraud", "label_time": 1}')
    ).text
    record = monitor_line(RecordView(0, 3, 1, b"k", monitor[0])).text

    shown = ", ".join(f"{c} {p:.3f}" for c, p in prediction.probabilities.items())
    assert f"queues:1  class {prediction.label} p {prediction.score:.4f} ({shown})" in line
    assert "q-0  label fraud  at" in label
    assert record.endswith("events of 3 classes")


def test_tail_shows_a_multiclass_snapshots_accuracy_macro_f1_and_log_loss() -> None:
    labels = dict.fromkeys(("pending_events", "pending_labels", "expired_events", "unmatched_labels"), 0)
    row = {
        "model": "queues:1", "segment_feature": "all", "segment_value": "all", "count": 5,
        "rolling": {"accuracy": 0.8}, "cumulative": {"accuracy": 0.8, "f1_macro": 0.7, "log_loss": 0.41},
        "gap_to_overall": None, "flagged": False,
    }  # fmt: skip
    snapshot = {
        "task": "multiclass", "window": 1000, "primary_metric": "accuracy", "champion": "queues:1",
        "challenger": "river:default", "kpis": [], "created_at": 1, "labels": {**labels, "matched": 5},
    }  # fmt: skip

    empty = metrics_line(RecordView(0, 1, 1, b"queues:1", orjson.dumps(snapshot))).text
    line = metrics_line(RecordView(0, 1, 1, b"queues:1", orjson.dumps({**snapshot, "kpis": [row]}))).text

    assert empty.startswith("labels matched 5,")
    assert empty.endswith("| a multiclass model: no labelled events yet")
    champion = "| queues:1 (champion) accuracy 0.8 over 5, last 1000: 0.8"
    assert line.endswith(f"{champion}, f1_macro 0.7, log_loss 0.41")
