"""`streamscore tail`'s lines without Kafka: every message of each topic, and records that are none."""

from __future__ import annotations

import pytest

from schemas import headers as h
from scoring.errors import ConfigError
from streams.cli import build_parser
from streams.cli.tail import reports
from streams.cli.tail.command import DETAILS
from streams.cli.tail.lines import (
    Line,
    RecordView,
    dead_letter_line,
    describe,
    feature_line,
    label_line,
    monitor_line,
    prediction_line,
    show,
)
from streams.cli.tail.topics import KINDS, check_filters, matches, resolve
from streams.services.shared.dead_letters import dead_letter
from streams.settings import Settings
from tests.unit.fake_kafka import FakeRecord
from tests.unit.test_schemas import SAMPLES


def _record(value: bytes | None, key: bytes | None = b"c1", headers=(), offset: int = 7) -> RecordView:
    return RecordView(2, offset, 1_714_564_800_000, key, value, tuple(headers))


def _of(name: str, **key) -> RecordView:
    return _record(SAMPLES[name].model_dump_json().encode(), **key)


def test_every_message_on_a_topic_reads_as_a_line_of_its_topic() -> None:
    on_topic = {
        "features": ["feature_event"],
        "predictions": ["prediction"],
        "monitor": ["monitor_batch"],
        "labels": ["label"],
        "drift": [
            "drift_report",
            "drift_alert",
            "performance_estimate",
            "estimated_kpi_alert",
            "concept_drift_alert",
        ],
        "metrics": ["metrics_snapshot"],
        "model-updates": ["model_update"],
        "alerts": ["model_alert", "state_alert"],
        "retrain-requests": ["retrain_request"],
    }
    kinds = {kind.role: kind for kind in KINDS}
    for role, names in on_topic.items():
        for name in names:
            line = describe(kinds[role].render, _of(name))
            print(f"{role:<16} {line.text}")
            assert line.undecodable is None, (role, name, line.text)
            assert line.text and "\n" not in line.text


def test_a_prediction_line_names_entity_event_model_score_and_class() -> None:
    line = prediction_line(_of("prediction"))
    assert line == Line("c1  e1  m:1  score 0.7000 class 1  latency 1 ms", entities=("c1",), models=("m:1",))
    assert show(_of("prediction"), line).startswith("2024-05-01T12:00:00.000Z p2@7  c1  e1  m:1  score")
    regression = SAMPLES["prediction"].model_copy(update={"label": None, "score": 123456.789})
    api = [(h.PREDICTION_ORIGIN, h.ORIGIN_API)]
    text = prediction_line(_record(regression.model_dump_json().encode(), headers=api)).text
    assert text == "c1  e1  m:1  score 123457  latency 1 ms (api)"


def test_events_labels_and_monitor_records_are_about_their_entities() -> None:
    assert feature_line(_of("feature_event")) == Line(
        "c1  e1  at 2023-11-14T22:13:20.000Z  3 features: x=1.5, c=red, m=None", entities=("c1",)
    )
    assert label_line(_of("label", key=b"c9")) == Line(
        "c9  e1  label 1  at 1970-01-01T00:00:00.003Z", entities=("c9",)
    )
    line = monitor_line(_of("monitor_batch"))
    assert line.text == "m:1  features[0] offsets 5..5: 1 events" and line.entities == ("c1",)


def test_a_dead_letter_written_by_the_service_shows_stage_source_reason_and_original() -> None:
    emitted = []
    original = FakeRecord(
        "features", 3, 41, value_=b'{"event_id": "e1", "features": {"x": "NaN"}}', key_=b"c1"
    )
    dead_letter(original, "validate", "InvalidEvent", "feature 'x' must be a number\n(got text)",
                lambda *out: emitted.append(out), "features.dlq")  # fmt: skip
    _, key, value, headers = emitted[0]

    line = dead_letter_line(_record(value, key=key, headers=headers))
    assert line.text == (
        "validate  features[3]@41  InvalidEvent: feature 'x' must be a number\n(got text) | original "
        '\'{"event_id": "e1", "features": {"x": "NaN"}}\''
    )
    assert show(_record(value, headers=headers), line).count("\n") == 0  # one line on the terminal
    cut = dead_letter_line(_record(b"x" * 200, headers=[*headers, (h.DLQ_ORIGINAL_SIZE, b"2000000")]))
    assert cut.text.endswith("'" + "x" * 80 + "...' (cut from 2000000 bytes)")


@pytest.mark.parametrize(
    ("render", "value", "headers", "reason"),
    [
        (prediction_line, b"\x1b[2Jgarbage", (), "not JSON (expected value at line 1 column 1)"),
        (prediction_line, b'{"event_id": "e1"}', (), "not a Prediction: entity_id: Field required"),
        (prediction_line, None, (), "no value (a tombstone)"),
        (
            reports.drift_line,
            b'{"type": "weather"}',
            (),
            "type 'weather' is not a message of the drift topic",
        ),
        (reports.drift_line, b"[1, 2]", (), "a JSON list, not a message"),
        (
            reports.metrics_line,
            b'{"type": "metrics_snapshot"}',
            (),
            "not a MetricsSnapshot: task: Field required",
        ),
        (
            dead_letter_line,
            b"{}",
            (("ce_id", b"1"),),
            "no streamscore.errors.stage header: not a dead letter",
        ),
    ],
)
def test_a_record_that_is_not_its_topics_message_is_shown_as_undecodable(
    render, value, headers, reason
) -> None:
    line = describe(render, _record(value, headers=headers))
    assert line.undecodable == reason
    assert line.text.startswith(f"undecodable: {reason} | value ")
    assert matches(line, entity="someone", model="other")  # always shown, whatever the filters
    assert "\x1b" not in show(_record(value), line)


def test_what_a_terminal_would_act_on_is_escaped() -> None:
    hostile = SAMPLES["prediction"].model_copy(update={"entity_id": "c1\x1b]0;owned\x07\r\n"})
    printed = show(_of("prediction"), prediction_line(_record(hostile.model_dump_json().encode())))
    assert printed.isprintable() and "c1\\x1b]0;owned\\x07\\r\\n" in printed


def test_reports_say_what_drifted_with_its_statistics_and_each_models_primary_kpi() -> None:
    assert reports.drift_line(_of("drift_report")).text == (
        "m:1  window 0  10 events  1970-01-01T00:00:00.001Z..1970-01-01T00:00:00.002Z  "
        "drifted: x (psi 0.4, ks 0.5 p 1e-06 mean +1.00 sd); 1 detector changes"
    )
    assert (
        reports.drift_line(_of("drift_alert")).text
        == "m:1  window 0  ALERT drift in x (psi 0.4, p 1e-06), 1 detector changes"
    )
    snapshot = SAMPLES["metrics_snapshot"]
    line = reports.metrics_line(_of("metrics_snapshot"))
    print(line.text)
    j = snapshot.labels
    assert line.text.startswith(f"labels matched {j.matched}, waiting {j.pending_events} events / ")
    for row in (r for r in snapshot.kpis if r.segment_feature == "all"):
        assert f"| {row.model}" in line.text and row.model in line.models
    assert reports.update_line(_of("model_update")).text == (
        "challenger  champion loans:1, challenger loans:2 (split 25%)"
    )
    assert (
        reports.update_line(_record(None, key=b"loans")).text == "loans  serving state deleted (a tombstone)"
    )


def test_topics_are_known_by_role_name_or_real_name_and_filters_must_fit_them() -> None:
    settings = Settings(topic_predictions="preds-eu", topic_dlq="bad-events")
    assert resolve(settings, "predictions") == ("preds-eu", resolve(settings, "preds-eu")[1])
    assert resolve(settings, "features.dlq")[0] == "bad-events"
    assert {kind.role for kind in KINDS} == set(Settings().all_topics())
    with pytest.raises(ConfigError, match="'preds' is not a topic of this service"):
        resolve(settings, "preds")
    with pytest.raises(
        ConfigError, match="--entity does not apply to metrics; it filters features, predictions"
    ):
        check_filters(resolve(settings, "metrics")[1], "c1", None)
    line = Line("x", entities=("c1",), models=("loans:2",))
    assert matches(line, "c1", "loans") and matches(line, None, "loans:2")
    assert not matches(line, "c2", None) and not matches(line, None, "loans:1")


def test_tail_arguments() -> None:
    assert all(kind.role in DETAILS for kind in KINDS)  # its help names every topic
    args = build_parser().parse_args(["tail", "drift", "--last", "3", "--follow", "--model", "loans"])
    assert (args.topic, args.last, args.follow, args.model, args.from_beginning) == (
        "drift",
        3,
        True,
        "loans",
        False,
    )
    with pytest.raises(SystemExit):
        build_parser().parse_args(["tail", "drift", "--last", "3", "--from-beginning"])
