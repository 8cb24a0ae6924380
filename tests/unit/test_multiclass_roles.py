"""Multiclass models in the roles and the commands (issue 28, phases A to D).

Drift and learn take a multiclass model's records without crashing or dead-lettering them; drift
reports its classes and estimates its KPIs per window (phase C); the learner measures its KPIs and its
0/1 error stream (phase B) and its River challenger's by progressive validation (phase D).
``explain``, ``score-file``, the Open Inference Protocol and the commands serve every class's
probability.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss

from schemas.feedback import MetricsSnapshot
from schemas.monitor import MonitorColumns, decode_monitor
from scoring.drift import DriftMonitor
from scoring.errors import UnknownClass
from scoring.feedback.challenger import class_challenger_step
from scoring.feedback.join_segments import WaitingPart
from scoring.model.bundle import ModelBundle
from scoring.offline.batch_file import score_frame
from scoring.offline.synthetic import MULTICLASS_TARGET, events_from_frame, multiclass_frame
from streams.cli import main
from streams.services.drift.step import DriftStep
from streams.services.inference.protocol import InferenceService
from streams.services.learn.shard import learner_for
from streams.services.score.handler import ScoreHandler
from streams.services.shared.intake import Refusals
from streams.settings import Settings
from tests.own_models import team_queue_table, train_team_queues
from tests.unit.fake_kafka import FakeRecord

SETTINGS = Settings(kafka_bootstrap="x:1")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return multiclass_frame(900, seed=41).drop(columns=[MULTICLASS_TARGET])


@pytest.fixture(scope="module")
def records(queues_bundle: ModelBundle, frame: pd.DataFrame) -> list[bytes]:
    """The monitoring records the score step writes for ``frame``."""
    out: list[bytes] = []
    events = list(events_from_frame(frame, prefix="r"))
    ScoreHandler(SETTINGS, queues_bundle).handle(
        [FakeRecord("features", 0, i, value_=orjson.dumps(e)) for i, e in enumerate(events)],
        lambda topic, key, value, headers, partition=None: topic == "monitor" and out.append(value),
    )
    return out


# ------------------------------------------------------------------ drift


def test_drift_reports_a_multiclass_models_windows_with_its_classes_and_an_estimate_each(
    queues_bundle: ModelBundle, records: list[bytes]
) -> None:
    step = DriftStep(Settings(drift_window_events=300), DriftMonitor(window_events=300), Refusals())
    out: list[tuple[str, bytes]] = []
    step.register(queues_bundle)
    for offset, value in enumerate(records):
        step.handle(
            FakeRecord(SETTINGS.topic_monitor, 0, offset, value_=value), lambda *a: out.append(a[:3:2])
        )

    drift = [json.loads(v) for topic, v in out if topic == SETTINGS.topic_drift]
    reports = [r for r in drift if r["type"] == "drift_report"]
    assert [r["window"] for r in reports] == [0, 1, 2]
    assert {f["feature"] for f in reports[0]["features"]} == set(queues_bundle.spec.names)
    assert reports[0]["prediction"]["psi"] is not None, (
        "the predicted class's probability, against the holdout"
    )
    assert reports[0]["schema_version"] == 3
    assert list(reports[0]["classes"]["predicted"]["counts"]) == ["billing", "fraud", "support"]
    assert sum(reports[0]["classes"]["predicted"]["counts"].values()) == 300
    assert [c["name"] for c in reports[0]["classes"]["probabilities"]] == ["billing", "fraud", "support"]
    assert step.counters.unreadable == 0 and step.counters.events == 900 and step.counters.estimates == 3
    estimates = [e for e in drift if e["type"] == "performance_estimate"]
    assert [m["metric"] for m in estimates[0]["metrics"]] == ["accuracy", "f1_macro", "auc_macro_ovr"]
    assert not [t for t, _ in out if t.endswith(".dlq")]
    assert step.stats()["windows_without_estimate"] == 0


# ------------------------------------------------------------------ learn


def test_the_learner_measures_a_multiclass_model_from_its_labels(
    queues_bundle: ModelBundle, records: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    learner, other_shard = learner_for(SETTINGS, queues_bundle), learner_for(SETTINGS, queues_bundle, 1)
    columns = [decode_monitor(v) for v in records]
    ids = [e for c in columns for e in c.event_ids]
    probabilities = np.concatenate([c.probabilities for c in columns])
    truth = list(multiclass_frame(900, seed=41)[MULTICLASS_TARGET])
    with caplog.at_level(logging.INFO):
        learner.label(ids[0], truth[0], columns[0].event_times[0])  # a label before its event
        for c in columns:
            assert learner.observe(c) == []
        for event_id, y in zip(ids[1:600], truth[1:600], strict=True):
            learner.label(event_id, y, columns[-1].event_times[-1])
        learner.label(ids[600], "refunds", columns[-1].event_times[-1])  # no such class: not measured
        other_shard.observe(columns[0])
        other_shard.label(ids[0], truth[0], columns[0].event_times[0])

    assert learner.unknown_classes == 1 and other_shard.challenger is None
    assert learner.join.counts()["matched"] == 601 and learner.join.counts()["pending_events"] == 299
    snapshot = MetricsSnapshot.model_validate_json(learner.snapshot([]).model_dump_json())
    assert snapshot.task == "multiclass" and snapshot.primary_metric == "accuracy"
    row = snapshot.overall("queues:1")
    y = np.array([queues_bundle.class_index(t) for t in truth[:600]])
    expected = {
        "accuracy": accuracy_score(y, probabilities[:600].argmax(axis=1)),
        "f1_macro": f1_score(y, probabilities[:600].argmax(axis=1), average="macro"),
        "log_loss": log_loss(y, probabilities[:600], labels=[0, 1, 2]),
    }
    assert row is not None and row.count == 600
    for name, value in expected.items():
        assert row.cumulative[name] == pytest.approx(value, abs=1e-9), name
        assert row.rolling[name] == pytest.approx(value, abs=1e-9), name
    assert list(learner.detectors) == ["queues:1"], "the 0/1 error stream of the serving model"
    assert other_shard.board.overall("queues:1").n == 1
    # the challenger, predicted then taught each labelled event in the order they joined
    replay = learner_for(SETTINGS, queues_bundle)
    matrix = np.concatenate([c.rows for c in columns])[:600]
    guesses = [
        class_challenger_step(replay.challenger, replay.challenger_input(r), k, 3)
        for r, k in zip(matrix, y, strict=True)
    ]
    challenger = snapshot.overall(snapshot.challenger)
    assert snapshot.challenger == "river:default" and challenger is not None and challenger.count == 600
    assert challenger.cumulative["accuracy"] == pytest.approx(accuracy_score(y, np.argmax(guesses, axis=1)))
    expected_loss = log_loss(y, guesses, labels=[0, 1, 2])
    assert challenger.cumulative["log_loss"] == pytest.approx(expected_loss, abs=1e-9)

    learner.label("waits", "billing", columns[-1].event_times[-1])
    again = learner_for(SETTINGS, queues_bundle)
    _, slots = learner.join.waiting()
    waiting = learner.join.take(slots).payload()
    again.restore(json.loads(json.dumps(learner.state())), None, [WaitingPart(*waiting)])
    assert again.join.labels["waits"].label == "billing"
    for event_id, y_text in zip(ids[601:], truth[601:], strict=True):  # the rest, after the restore
        again.label(event_id, y_text, columns[-1].event_times[-1])
    rest = np.array([queues_bundle.class_index(t) for t in truth[:600] + truth[601:]])
    everything = np.concatenate([probabilities[:600], probabilities[601:]])
    assert again.board.overall("queues:1").cumulative()["log_loss"] == pytest.approx(
        log_loss(rest, everything, labels=[0, 1, 2]), abs=1e-9
    ), "the probabilities waited in the checkpoint with their events"


def test_the_error_stream_of_a_multiclass_model_fires_when_its_classes_go_wrong(
    queues_bundle: ModelBundle,
) -> None:
    """The 0/1 error (served class not the label's) rises from ~25% to ~75% at event 1,500: the CUSUM
    (the default) and ADWIN and Page-Hinkley (as configured) each see it after the switch, none before."""
    frame = multiclass_frame(3000, seed=42)
    truth = frame.pop(MULTICLASS_TARGET).tolist()
    out: list[bytes] = []
    ScoreHandler(SETTINGS, queues_bundle).handle(
        [
            FakeRecord("features", 0, i, value_=orjson.dumps(e))
            for i, e in enumerate(events_from_frame(frame))
        ],
        lambda topic, key, value, headers, partition=None: topic == "monitor" and out.append(value),
    )
    classes = list(queues_bundle.classes)
    settings = SETTINGS.model_copy(
        update={"concept_warmup": 500, "concept_detectors": "cusum,adwin,page_hinkley"}
    )
    learner = learner_for(settings, queues_bundle)
    changes = []
    for c in map(decode_monitor, out):
        learner.observe(c)
        for event_id, time in zip(c.event_ids, c.event_times, strict=True):
            i = int(str(event_id).rsplit("-", 1)[1])
            label = truth[i] if i < 1500 else classes[(classes.index(truth[i]) + 1) % 3]  # the world moved
            changes += learner.label(str(event_id), label, time)

    first = {}
    for change in changes:
        first.setdefault(change.detector, int(change.event_id.rsplit("-", 1)[1]))
    print(f"first change per detector (the switch at 1,500): {first}")
    assert set(first) == {"cusum", "adwin", "page_hinkley"}
    assert all(1500 <= at < 1800 for at in first.values()), first
    assert all(change.stream == "error" for change in changes)


# ------------------------------------------------------------------ explain, score-file, /v2


def test_explain_gives_the_predicted_class_or_the_one_asked_for(
    queues_bundle: ModelBundle, frame: pd.DataFrame
) -> None:
    handler = ScoreHandler(SETTINGS, queues_bundle)
    event = orjson.dumps(next(events_from_frame(frame.iloc[:1])))
    raw = queues_bundle.booster.predict(queues_bundle.spec.encode_frame(frame.iloc[:1]), raw_score=True)[0]

    default = handler.explain_event(event)
    asked = handler.explain_event(event, "fraud")

    assert default["label"] == queues_bundle.classes[int(raw.argmax())]
    assert list(default["probabilities"]) == ["billing", "fraud", "support"]
    for answer, k in ((default, int(raw.argmax())), (asked, 1)):
        e = answer["explanation"]
        assert e["class_name"] == queues_bundle.classes[k]
        total = e["bias"] + sum(c["contribution"] for c in e["top"]) + e["rest"]
        assert abs(total - raw[k]) < 1e-9 and abs(e["raw_score"] - raw[k]) < 1e-9
    with pytest.raises(UnknownClass, match="has no class 'refunds'; its classes: billing, fraud, support"):
        handler.explain_event(event, "refunds")


def test_score_file_writes_every_class_probability(queues_bundle: ModelBundle, frame: pd.DataFrame) -> None:
    scored, rejects = score_frame(queues_bundle, frame)
    expected = queues_bundle.booster.predict(queues_bundle.spec.encode_frame(frame))

    assert list(scored.columns) == [
        "event_id", "score", "label", "probability_billing", "probability_fraud", "probability_support",
    ]  # fmt: skip
    assert rejects.empty
    assert np.abs(scored.iloc[:, 3:].to_numpy() - expected).max() <= 1e-12
    assert scored["label"].tolist() == [queues_bundle.classes[k] for k in expected.argmax(axis=1)]


def _tensors(frame: pd.DataFrame) -> list[dict]:
    inputs = []
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_bool_dtype(column):
            data, datatype = ["true" if v else "false" for v in column], "BYTES"
        elif pd.api.types.is_numeric_dtype(column):
            data, datatype = [float(v) for v in column], "FP64"
        else:
            data, datatype = [str(v) for v in column], "BYTES"
        inputs.append({"name": name, "datatype": datatype, "shape": [len(frame)], "data": data})
    return inputs


def test_the_inference_protocol_answers_every_class_and_lists_them(
    queues_bundle: ModelBundle, frame: pd.DataFrame
) -> None:
    service = InferenceService(ScoreHandler(SETTINGS, queues_bundle), lambda: True)
    rows = frame.iloc[:40]
    expected = queues_bundle.booster.predict(queues_bundle.spec.encode_frame(rows))

    metadata = service.metadata("queues")
    answer = service.infer("queues", None, orjson.dumps({"inputs": _tensors(rows)})).response

    assert metadata["parameters"]["classes"] == ["billing", "fraud", "support"]
    assert {o["name"]: o["shape"] for o in metadata["outputs"]} == {
        "score": [-1], "label": [-1], "probabilities": [-1, 3], "model_version": [-1],
    }  # fmt: skip
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["probabilities"]["shape"] == [40, 3] and outputs["label"]["datatype"] == "BYTES"
    probabilities = np.asarray(outputs["probabilities"]["data"]).reshape(40, 3)
    assert np.abs(probabilities - expected).max() <= 1e-12
    assert outputs["label"]["data"] == [queues_bundle.classes[k] for k in expected.argmax(axis=1)]
    assert outputs["score"]["data"] == expected.max(axis=1).tolist()


# ------------------------------------------------------------------ the commands


def test_train_import_explain_and_score_file_at_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    multiclass_frame(1500, seed=42).to_csv(tmp_path / "tickets.csv", index=False)
    table, queues = team_queue_table(1500, seed=43)
    train_team_queues(table, queues, tmp_path / "team.txt", objective="multiclassova")
    table.to_parquet(tmp_path / "reference.parquet")
    event = next(events_from_frame(multiclass_frame(1, seed=44).drop(columns=[MULTICLASS_TARGET])))
    (tmp_path / "event.json").write_text(json.dumps(event))

    trained = [
        "train", str(tmp_path / "tickets.csv"), "--target", "queue", "--task", "multiclass",
        "--out", str(tmp_path / "trained"), "--trees", "5",
    ]  # fmt: skip
    imported = [
        "model", "import", str(tmp_path / "team.txt"), "--reference", str(tmp_path / "reference.parquet"),
        "--classes", "support,billing,fraud", "--out", str(tmp_path / "imported"),
    ]  # fmt: skip
    assert main(trained) == 0 and main(imported) == 0
    said = capsys.readouterr().out
    assert "f1_macro" in said and "classes, in the model's order: support, billing, fraud (from given" in said
    assert main(["explain", str(tmp_path / "event.json"), "--model", str(tmp_path / "imported"), "--json",
                 "--class", "fraud"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["explanation"]["class_name"] == "fraud"
    out = tmp_path / "scored.csv"
    scored = [
        "score-file",
        str(tmp_path / "tickets.csv"),
        "--model",
        str(tmp_path / "trained"),
        "--out",
        str(out),
    ]
    assert main(scored) == 0
    assert list(pd.read_csv(out).columns)[3:] == [
        "probability_billing",
        "probability_fraud",
        "probability_support",
    ]
    capsys.readouterr()
    assert main([*imported[:-1], str(tmp_path / "again"), "--classes", "a,b"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("streamscore: error: ") and "2 names for a 3-class model" in line


def test_a_monitor_column_slice_keeps_its_probabilities() -> None:
    columns = MonitorColumns("m", "1", "t", 0, [1, 2], ["a", "b"], [1, 2], np.array([0.6, 0.7]),
                             np.zeros((2, 1)), classes=["x", "y"],
                             probabilities=np.array([[0.6, 0.4], [0.3, 0.7]]))  # fmt: skip
    assert columns.take(1, 2).probabilities.tolist() == [[0.3, 0.7]]
