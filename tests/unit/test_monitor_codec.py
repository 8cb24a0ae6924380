"""The ``monitor`` codec: the fast path accepts exactly what ``MonitorBatch`` accepts; every field bounded."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.messages import EPOCH_MS_MAX, MonitorBatch
from schemas.monitor import MonitorRejected, decode_monitor
from scoring.model.bundle import ModelBundle
from scoring.model.monitor_rows import spec_problem
from scoring.offline.synthetic import agrawal_frame, events_from_frame
from streams.services.score.handler import ScoreHandler
from streams.settings import Settings
from tests.unit.fake_kafka import FakeRecord

BASE = {
    "model_name": "loans",
    "model_version": "1",
    "source_topic": "features",
    "partition": 2,
    "offsets": [5, 6],
    "event_ids": ["e5", "e6"],
    "entity_ids": ["c5", "c6"],
    "event_times": [1_700_000_000_000, 1_700_000_000_001],
    "scores": [0.25, 1],
    "feature_names": ["x", "c"],
    "rows": [[1.5, None], [2, 0.0]],
    "schema_version": 1,
}

# one change each: values a buggy or hostile writer could put on the topic
MUTATIONS = {
    "event time as float": {"event_times": [1e30, 1]},
    "event time past 64 bits": {"event_times": [2**64 - 1, 1]},
    "event time negative": {"event_times": [-1, 1]},
    "event time past the year 3000": {"event_times": [EPOCH_MS_MAX + 1, 1]},
    "score as bool": {"scores": [True, 0.5]},
    "score as string": {"scores": ["0.5", 0.5]},
    "offset as float": {"offsets": [5.0, 6]},
    "offset negative": {"offsets": [-5, 6]},
    "one column short": {"event_ids": ["e5"]},
    "ragged row": {"rows": [[1.5], [2, 0.0]]},
    "row of strings": {"rows": [["a", None], [2, 0.0]]},
    "row holding a list": {"rows": [[[1], None], [2, 0.0]]},
    "one feature name for two columns": {"feature_names": ["x"]},
    "empty event id": {"event_ids": ["", "e6"]},
    "long event id": {"event_ids": ["e" * 257, "e6"]},
    "event id as number": {"event_ids": [5, "e6"]},
    "partition as string": {"partition": "2"},
    "partition negative": {"partition": -1},
    "unknown field": {"extra": 1},
    "model name null": {"model_name": None},
    "schema version 2": {"schema_version": 2},
    "shadow scores short": {
        "shadow_model_name": "loans",
        "shadow_model_version": "2",
        "shadow_scores": [0.5],
    },
    "shadow score as string": {
        "shadow_model_name": "loans",
        "shadow_model_version": "2",
        "shadow_scores": ["x", None],
    },
}


def _both(body: dict | list | str) -> tuple[object, object]:
    raw = json.dumps(body).encode()
    try:
        fast = decode_monitor(raw)
    except MonitorRejected:
        fast = None
    try:
        model = MonitorBatch.model_validate_json(raw)
    except ValidationError:
        model = None
    return fast, model


def _same(fast, model: MonitorBatch) -> None:
    assert fast.model_name == model.model_name and fast.model_version == model.model_version
    assert fast.partition == model.partition
    assert list(fast.offsets) == model.offsets and list(fast.event_ids) == model.event_ids
    assert list(fast.event_times) == model.event_times
    assert fast.scores.tolist() == model.scores
    expected = np.array([[np.nan if v is None else v for v in row] for row in model.rows], dtype=float)
    np.testing.assert_array_equal(fast.rows, expected.reshape(len(model.rows), len(model.feature_names)))


def test_a_valid_batch_decodes_to_the_pydantic_models_values() -> None:
    fast, model = _both(BASE)
    assert fast is not None and model is not None
    _same(fast, model)


@pytest.mark.parametrize("change", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_the_codec_refuses_exactly_what_the_model_refuses(change: dict) -> None:
    fast, model = _both({**BASE, **change})
    assert (fast is None) == (model is None)
    if model is not None:
        _same(fast, model)


values = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=3)
lists = st.lists(values, max_size=3)


@given(field=st.sampled_from(sorted(BASE)), value=values | lists | st.lists(lists, max_size=2))
def test_any_single_field_replaced_the_codec_and_model_agree(field: str, value: object) -> None:
    body = {**BASE, field: value}
    try:
        raw = json.dumps(body, allow_nan=True).encode()
    except ValueError:
        return
    fast, model = _both(body) if b"NaN" not in raw and b"Infinity" not in raw else (None, None)
    assert (fast is None) == (model is None), f"codec {fast is not None}, model {model is not None}"


@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_are_decoded_or_refused_never_raised(raw: bytes) -> None:
    with contextlib.suppress(MonitorRejected):
        decode_monitor(raw)


def test_an_event_time_far_past_the_record_timestamp_is_clamped() -> None:
    written = 1_700_000_000_000
    body = {**BASE, "event_times": [written + 86_400_000, written - 5]}

    columns = decode_monitor(orjson.dumps(body), record_time_ms=written, max_skew_ms=300_000)

    assert list(columns.event_times) == [written + 300_000, written - 5]
    assert columns.clamped == 1


def test_what_the_scorer_writes_decodes_and_fits_its_model(agrawal_bundle: ModelBundle) -> None:
    frame = agrawal_frame(30, seed=2, classification_function=2).drop(columns=["approved"])
    events = list(events_from_frame(frame, prefix="m"))
    out = []
    handler = ScoreHandler(Settings(kafka_bootstrap="x:1"), agrawal_bundle)
    handler.handle(
        [FakeRecord("features", 0, i, value_=orjson.dumps(e)) for i, e in enumerate(events)],
        lambda topic, key, value, headers, partition=None: topic == "monitor" and out.append(value),
    )
    columns = decode_monitor(out[0])
    MonitorBatch.model_validate_json(out[0])

    assert spec_problem(columns.feature_names, columns.rows, agrawal_bundle.spec) is None
    assert list(columns.event_ids) == [e["event_id"] for e in events]


def test_rows_that_are_not_the_models_inputs_are_named(agrawal_bundle: ModelBundle) -> None:
    spec = agrawal_bundle.spec
    categorical = next(i for i, f in enumerate(spec.features) if f.kind.value == "categorical")
    rows = np.zeros((3, len(spec.names)))
    rows[1, categorical] = spec.features[categorical].unseen_code + 5  # out of the category range

    problem = spec_problem(spec.names, rows, spec)
    assert problem is not None and spec.features[categorical].name in problem
    assert "not the model's" in spec_problem(spec.names[:1], rows[:, :1], spec)
    rows[1, categorical] = np.nan  # missing is fine
    assert spec_problem(spec.names, rows, spec) is None


def _problem_column_by_column(rows: np.ndarray, spec) -> str | None:
    """spec_problem's checks as they were written first: one feature at a time."""
    for j, feature in enumerate(spec.features):
        column = rows[:, j]
        present = column[~np.isnan(column)]
        if feature.kind.value == "categorical":
            bad = (present < 0) | (present > feature.unseen_code) | (present != np.floor(present))
            if bad.any():
                return f"feature {feature.name!r} holds {float(present[bad][0])!r}, not a category code"
        elif np.isinf(present).any():
            return f"feature {feature.name!r} holds an infinite value"
    return None


_CELLS = st.sampled_from([0.0, 1.0, 2.0, 3.0, 0.5, -1.0, 99.0, np.nan, np.inf, -np.inf, 1e300])


@given(st.lists(st.lists(_CELLS, min_size=9, max_size=9), min_size=0, max_size=6), st.data())
def test_checks_over_the_matrix_name_what_checks_per_feature_name(agrawal_bundle, cells, data) -> None:
    spec = agrawal_bundle.spec
    width = len(spec.names)
    rows = np.array([(row * width)[:width] for row in cells], dtype=float).reshape(len(cells), width)
    if rows.size:  # shuffle the cells across features, so any feature may hold any of them
        rows = rows.ravel()[data.draw(st.permutations(range(rows.size)))].reshape(rows.shape)

    assert spec_problem(spec.names, rows, spec) == _problem_column_by_column(rows, spec)
