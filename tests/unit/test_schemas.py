"""Message contracts: JSON Schema export, JSON round trips, FeatureEvent rules."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from schemas import ALL_MESSAGES, DeadLetterContext, FeatureEvent, Label, MonitorBatch, Prediction
from schemas.checkpoint import ChallengerExport, CheckpointHead, StateAlert
from schemas.drift import (
    DetectorChange,
    DriftReport,
    FeatureDrift,
    PartitionSpan,
    PredictionDrift,
    Thresholds,
)
from schemas.estimation import (
    EstimateCheck,
    EstimatedKpiAlert,
    ExpectedConfusion,
    MetricCheck,
    MetricEstimate,
    PerformanceEstimate,
)
from schemas.export import export_json_schemas
from schemas.feedback import ConceptDriftAlert, JoinCounts, KpiRow, MetricsSnapshot
from schemas.lifecycle import ChallengerMode, ModelAlert, ModelRef, ModelUpdate, RetrainRequest
from schemas.messages import EPOCH_MS_MAX
from scoring.drift import alert_for

finite = st.floats(allow_nan=False, allow_infinity=False)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
texts = st.text(max_size=20)

predictions = st.builds(
    Prediction,
    event_id=texts,
    entity_id=texts,
    score=finite,
    label=st.none() | st.booleans(),
    model_name=texts,
    model_version=texts,
    event_time=int64,
    scored_at=int64,
    latency_ms=finite,
    topic=texts,
    partition=st.integers(0, 10_000),
    offset=int64,
)
epoch_ms = st.integers(min_value=0, max_value=EPOCH_MS_MAX)
labels = st.builds(Label, event_id=st.text(min_size=1, max_size=20), label=finite, label_time=epoch_ms)
dead_letter_contexts = st.builds(
    DeadLetterContext,
    error_class=texts,
    error_message=st.text(max_size=200),
    stage=st.sampled_from(["decode", "validate", "score"]),
    source_topic=texts,
    source_partition=st.integers(0, 10_000),
    source_offset=int64,
    failed_at=int64,
)

SAMPLES: dict[str, BaseModel] = {
    "feature_event": FeatureEvent(
        event_id="e1",
        entity_id="c1",
        event_time=1_700_000_000_000,
        features={"x": 1.5, "c": "red", "m": None},
    ),
    "prediction": Prediction(
        event_id="e1",
        entity_id="c1",
        score=0.7,
        label=True,
        model_name="m",
        model_version="1",
        event_time=1,
        scored_at=2,
        latency_ms=1.0,
        topic="features",
        partition=0,
        offset=5,
    ),
    "monitor_batch": MonitorBatch(
        model_name="m",
        model_version="1",
        source_topic="features",
        partition=0,
        offsets=[5],
        event_ids=["e1"],
        entity_ids=["c1"],
        event_times=[1],
        scores=[0.7],
        feature_names=["x", "c"],
        rows=[[1.5, None]],
    ),
    "label": Label(event_id="e1", label=1.0, label_time=3),
    "dead_letter_context": DeadLetterContext(
        error_class="InvalidEvent",
        error_message="bad",
        stage="decode",
        source_topic="features",
        source_partition=0,
        source_offset=5,
        failed_at=4,
    ),
}
_SHIFT = FeatureDrift(
    feature="x",
    kind="numeric",
    count=10,
    psi=0.4,
    ks_statistic=0.5,
    ks_p_value=1e-6,
    missing_rate=0.0,
    reference_missing_rate=0.0,
    missing_rate_change=0.0,
    mean=1.0,
    reference_mean=0.0,
    mean_shift_sd=1.0,
    drifted=True,
    reasons=["psi 0.400 >= 0.2"],
)
_CHANGE = DetectorChange(
    detector="adwin",
    stream="score",
    model_version="1",
    source_topic="features",
    partition=0,
    offset=5,
    event_id="e1",
    event_time=1,
    position=6,
)
SAMPLES["drift_report"] = DriftReport(
    model_name="m",
    model_version="1",
    window=0,
    events=10,
    closed_by="events",
    start_event_time=1,
    end_event_time=2,
    spans=[PartitionSpan(topic="features", partition=0, first_offset=0, last_offset=9)],
    features=[_SHIFT],
    prediction=PredictionDrift(
        psi=None, ks_statistic=None, ks_p_value=None, mean=0.5, reference_mean=None, drifted=False
    ),
    changes=[_CHANGE],
    thresholds=Thresholds(psi=0.2, p_value=0.01, p_value_per_test=0.005, tests=2),
    drifted_features=["x"],
    drifted=True,
    created_at=3,
)
SAMPLES["drift_alert"] = alert_for(SAMPLES["drift_report"])
_V1 = ModelRef(name="loans", version="1", uri="s3://models/loans/1")
SAMPLES["model_update"] = ModelUpdate(
    action="challenger",
    champion=_V1,
    challenger=ModelRef(name="loans", version="2", uri="/registry/loans/2"),
    mode=ChallengerMode.split,
    challenger_share=0.25,
    history=[ModelRef(name="loans", version="0", uri="/registry/loans/0")],
    requested_at=1_700_000_000_000,
)
SAMPLES["model_alert"] = ModelAlert(
    outcome="refused",
    check="features",
    reason="features differ",
    version="2",
    serving="loans:1",
    worker="host:1",
    created_at=1_700_000_000_000,
)
SAMPLES["retrain_request"] = RetrainRequest(
    model="loans:1", trigger="drift", reason="PSI 0.4 on salary", details={"salary": 0.4}, created_at=1
)
SAMPLES["performance_estimate"] = PerformanceEstimate(
    model_name="loans",
    model_version="1",
    task="binary",
    window=4,
    start_event_time=1,
    end_event_time=2,
    spans=[PartitionSpan(topic="features", partition=0, first_offset=0, last_offset=4999)],
    events=5000,
    threshold=0.5,
    band_z=3.0,
    confusion=ExpectedConfusion(tp=2000.5, fp=400.25, fn=300.0, tn=2299.25),
    metrics=[
        MetricEstimate(
            metric="accuracy",
            estimate=0.86,
            std=0.005,
            estimator_std=0.003,
            lower=0.8425,
            upper=0.8775,
            method="cbpe",
            uncertainty="analytic",
        ),
        MetricEstimate(
            metric="precision",
            estimate=None,
            std=None,
            lower=None,
            upper=None,
            method="cbpe",
            uncertainty="analytic",
        ),
    ],
    created_at=3,
)
SAMPLES["estimate_check"] = EstimateCheck(
    model_name="loans",
    model_version="1",
    window=4,
    events=5000,
    labelled=1200,
    checks=[
        MetricCheck(
            metric="accuracy",
            estimate=0.86,
            realized=0.61,
            difference=-0.25,
            std=0.011,
            lower=0.827,
            upper=0.893,
            disagree=True,
        )
    ],
    disagree=True,
    message="loans:1 window 4: estimate and labels disagree",
    created_at=5,
)
SAMPLES["estimated_kpi_alert"] = EstimatedKpiAlert(
    model_name="loans",
    model_version="1",
    window=4,
    start_event_time=1,
    end_event_time=2,
    events=5000,
    metric="accuracy",
    estimate=0.64,
    lower=0.62,
    upper=0.66,
    threshold=0.7,
    message="loans:1 window 4: estimated accuracy 0.6400 below 0.7",
    created_at=6,
)


_SNAPSHOT_ROW = KpiRow(
    model="loans:1",
    segment_feature="all",
    segment_value="all",
    count=1000,
    rolling={"accuracy": 0.9, "auc": None},
    cumulative={"accuracy": 0.91, "auc": 0.95},
    gap_to_overall=None,
    flagged=False,
)
SAMPLES["metrics_snapshot"] = MetricsSnapshot(
    task="binary",
    window=1000,
    primary_metric="accuracy",
    champion="loans:1",
    challenger="river:default",
    labels=JoinCounts(matched=1000, pending_events=5, pending_labels=0, expired_events=2, unmatched_labels=1),
    kpis=[_SNAPSHOT_ROW],
    changes=[_CHANGE],
    estimate_checks=[SAMPLES["estimate_check"]],
    created_at=1_700_000_000_000,
)
_DETECTION = _CHANGE.model_copy(
    update={"detector": "cusum", "stream": "error", "statistic": 15.3, "threshold": 15.0, "baseline": 60_000,
            "mean_before": 0.1, "since_change": 400, "mean_after": 0.2}
)  # fmt: skip
SAMPLES["concept_drift_alert"] = ConceptDriftAlert(
    model="loans:1",
    change=_DETECTION,
    message="the error rate rose",
    created_at=1_700_000_000_000,
    status="firing",
    severity="critical",
    detections=[_DETECTION, _DETECTION.model_copy(update={"partition": 1})],
    shards=[0, 1],
    partitions=2,
    merge_interval_ms=300_000,
    statistic=15.3,
    threshold=15.0,
    error_before=0.1,
    error_after=0.2,
)
SAMPLES["checkpoint_head"] = CheckpointHead(generation=3, chunks=2)
SAMPLES["state_alert"] = StateAlert(
    role="learn",
    problem="the checkpoint head is not readable",
    action="started fresh",
    worker="h:1",
    created_at=1,
)
SAMPLES["challenger_export"] = ChallengerExport(
    model={"kind": "linear", "weights": {"x": 0.5}},
    metrics={"accuracy": 0.8},
    labels=6000,
    created_at=1_700_000_000_000,
)


# the fields the alert messages had at schema_version 1: version 2 keeps every one, with its meaning
ALERT_FIELDS_V1 = {
    "drift_alert": {"type", "model_name", "model_version", "window", "start_event_time", "end_event_time",
                    "features", "prediction_drifted", "changes", "message", "created_at", "schema_version"},
    "concept_drift_alert": {"type", "model", "change", "message", "created_at", "schema_version"},
    "estimated_kpi_alert": {"type", "model_name", "model_version", "window", "start_event_time",
                            "end_event_time", "events", "metric", "estimate", "lower", "upper", "threshold",
                            "message", "created_at", "schema_version"},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(ALERT_FIELDS_V1))
def test_alert_messages_at_version_2_keep_every_field_of_version_1(name: str) -> None:
    model = ALL_MESSAGES[name]
    assert ALERT_FIELDS_V1[name] <= set(model.model_fields)
    assert model.model_fields["schema_version"].default == 2
    sample = json.loads(SAMPLES[name].model_dump_json())
    assert sample["status"] in ("firing", "resolved") and sample["severity"] in ("warning", "critical")


def test_export_writes_one_valid_json_schema_per_message(tmp_path: Path) -> None:
    written = export_json_schemas(tmp_path / "schemas")

    assert sorted(p.name for p in written) == sorted(f"{name}.schema.json" for name in ALL_MESSAGES)
    assert sorted(p.name for p in (tmp_path / "schemas").iterdir()) == sorted(p.name for p in written)
    for path in written:
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
        model = ALL_MESSAGES[path.name.removesuffix(".schema.json")]
        assert schema["title"] == model.__name__
        assert set(schema["properties"]) == set(model.model_fields)


@pytest.mark.parametrize("name", sorted(ALL_MESSAGES))
def test_exported_schema_accepts_a_message_the_model_writes(tmp_path: Path, name: str) -> None:
    export_json_schemas(tmp_path)
    schema = json.loads((tmp_path / f"{name}.schema.json").read_text())

    errors = list(Draft202012Validator(schema).iter_errors(json.loads(SAMPLES[name].model_dump_json())))

    assert errors == []


def test_exported_schemas_reject_unknown_fields_on_messages_streamscore_writes(tmp_path: Path) -> None:
    export_json_schemas(tmp_path)
    schema = json.loads((tmp_path / "prediction.schema.json").read_text())
    message = {**json.loads(SAMPLES["prediction"].model_dump_json()), "surprise": 1}

    assert not Draft202012Validator(schema).is_valid(message)


@pytest.mark.parametrize(
    "strategy", [predictions, labels, dead_letter_contexts], ids=["prediction", "label", "dlq"]
)
@given(data=st.data())
def test_message_survives_json_bytes_round_trip(strategy: st.SearchStrategy, data: st.DataObject) -> None:
    message = data.draw(strategy)

    again = type(message).model_validate_json(message.model_dump_json().encode())

    assert again == message


def test_feature_event_rejects_nan_and_infinite_features() -> None:
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValidationError, match="finite number"):
            FeatureEvent(event_id="e", entity_id="c", event_time=1, features={"x": bad})
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        payload = b'{"event_id":"e","entity_id":"c","event_time":1,"features":{"x":' + literal + b"}}"
        with pytest.raises(ValidationError):
            FeatureEvent.model_validate_json(payload)


@pytest.mark.parametrize(
    "event_time, expected",
    [
        ("2024-01-01T00:00:00.123Z", datetime(2024, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)),
        ("2024-01-01T01:00:00.123+01:00", datetime(2024, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)),
        (1_704_067_200_123, 1_704_067_200_123),
    ],
)
def test_feature_event_accepts_rfc3339_and_epoch_ms_event_time(event_time, expected) -> None:
    payload = json.dumps({"event_id": "e", "entity_id": "c", "event_time": event_time, "features": {"x": 1}})

    event = FeatureEvent.model_validate_json(payload)

    assert event.event_time == expected
    assert type(event.event_time) is type(expected)


@pytest.mark.parametrize(
    "change",
    [
        {"event_id": ""},
        {"entity_id": ""},
        {"event_time": "yesterday"},
        {"features": {"x": [1]}},
        {"features": None},
    ],
)
def test_feature_event_rejects_what_the_contract_forbids(change: dict) -> None:
    event = {"event_id": "e", "entity_id": "c", "event_time": 1, "features": {"x": 1.0}, **change}
    with pytest.raises(ValidationError):
        FeatureEvent.model_validate_json(json.dumps(event))


def test_feature_event_ignores_unknown_top_level_fields() -> None:
    payload = {"event_id": "e", "entity_id": "c", "event_time": 1, "features": {}, "source": "crm"}
    assert FeatureEvent.model_validate_json(json.dumps(payload)).schema_version == 1


unit_floats = st.floats(0, 1)
metric_estimates = st.builds(
    MetricEstimate,
    metric=st.sampled_from(["accuracy", "precision", "recall", "f1", "auc"]),
    estimate=st.none() | unit_floats,
    std=st.none() | st.floats(0, 1e6),
    estimator_std=st.none() | st.floats(0, 1e6),
    lower=st.none() | unit_floats,
    upper=st.none() | unit_floats,
    method=st.just("cbpe"),
    uncertainty=st.sampled_from(["analytic", "holdout_chunks"]),
    approximation_error=st.none() | st.floats(0, 1),
    realized=st.none() | unit_floats,
)
performance_estimates = st.builds(
    PerformanceEstimate,
    model_name=texts,
    model_version=texts,
    task=st.sampled_from(["binary", "regression"]),
    window=st.none() | st.integers(0, 10**9),
    events=st.integers(0, 10**9),
    threshold=st.none() | finite,
    band_z=st.floats(0, 10),
    metrics=st.lists(metric_estimates, max_size=5),
    created_at=int64,
)


@given(performance_estimates)
def test_a_performance_estimate_survives_json_bytes_round_trip(estimate: PerformanceEstimate) -> None:
    assert PerformanceEstimate.model_validate_json(estimate.model_dump_json().encode()) == estimate


@pytest.mark.parametrize(
    "change",
    [{"estimate": math.nan}, {"std": math.inf}, {"upper": 1.2}, {"estimate": -0.1}, {"realized": 1.5}],
    ids=["nan", "inf", "above-one", "negative", "realized-above-one"],
)
def test_a_performance_estimate_refuses_numbers_out_of_bounds(change: dict) -> None:
    fields = {
        "metric": "accuracy",
        "estimate": 0.8,
        "std": 0.01,
        "lower": 0.77,
        "upper": 0.83,
        "method": "cbpe",
        "uncertainty": "analytic",
        **change,
    }
    with pytest.raises(ValidationError):
        MetricEstimate(**fields)


def test_a_regression_estimate_may_exceed_one() -> None:
    mae = MetricEstimate(
        metric="mae",
        estimate=12.5,
        std=0.4,
        lower=11.3,
        upper=13.7,
        method="dle",
        uncertainty="holdout_chunks",
    )
    assert MetricEstimate.model_validate_json(mae.model_dump_json()) == mae


@pytest.mark.parametrize(
    "body",
    [
        {"event_id": "e", "label": 1.0, "label_time": 10**30},  # crashed the checkpoint writer once
        {"event_id": "e", "label": 1.0, "label_time": -1},
        {"event_id": "e", "label": 1.0, "label_time": 2**64 - 1},
        {"event_id": "", "label": 1.0, "label_time": 1},
        {"event_id": "e" * 257, "label": 1.0, "label_time": 1},
        {"event_id": "e", "label": 1.0, "label_time": 1, "extra": 1},
    ],
)
def test_a_label_out_of_bounds_is_refused(body: dict) -> None:
    with pytest.raises(ValidationError):
        Label.model_validate_json(json.dumps(body))
