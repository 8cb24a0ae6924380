"""Monitoring records the score role wrote, taken by drift and learn as its columns: what decoding gives.

A worker running score beside drift or learn leaves each monitoring record it writes with the
columns it wrote it from (``MonitorDecodes.wrote``); a reader coming to the same bytes takes the
columns instead of decoding the text. These tests hold the columns taken equal to
``decode_monitor`` of the bytes, field by field, and a record the codec refuses refused still.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from schemas.lifecycle import ChallengerMode
from schemas.monitor import MonitorColumns, MonitorRejected, decode_monitor
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import (
    MULTICLASS_TARGET,
    agrawal_frame,
    events_from_frame,
    multiclass_frame,
    numeric_frame,
)
from scoring.offline.training import train_bundle
from streams.services.score.handler import ScoreHandler
from streams.services.score.outputs import LoadedModel, ValidEvents, emit_monitor
from streams.services.shared.monitor_decodes import MonitorDecodes, Written
from streams.settings import Settings
from tests.unit.fake_kafka import FakeRecord

SETTINGS = Settings(kafka_bootstrap="x:1")
SKEW_MS = int(SETTINGS.max_clock_skew_s * 1000)


def _same(taken: MonitorColumns, decoded: MonitorColumns) -> None:
    for field in dataclasses.fields(MonitorColumns):
        a, b = getattr(taken, field.name), getattr(decoded, field.name)
        if isinstance(b, np.ndarray) or isinstance(a, np.ndarray):
            assert a is not None and b is not None, field.name
            assert a.dtype == b.dtype and a.shape == b.shape, field.name
            np.testing.assert_array_equal(a, b, err_msg=field.name)  # NaN equal to NaN
        else:
            assert list(a) == list(b) if isinstance(b, list) else a == b, field.name


def _score(handler: ScoreHandler, frame: pd.DataFrame, partitions: int = 2) -> list[FakeRecord]:
    """Score ``frame``'s events; the monitoring records written, as a reader would consume them."""
    decodes = handler.monitor_written.__self__  # type: ignore[union-attr]
    out: list[FakeRecord] = []

    def emit(topic, key, value, headers, partition=None):
        if topic == SETTINGS.topic_monitor:
            out.append(FakeRecord(topic, partition or 0, len(out), value_=value))

    records = [
        FakeRecord("features", i % partitions, 10 + i, value_=orjson.dumps(e))
        for i, e in enumerate(events_from_frame(frame, prefix="m"))
    ]
    handler.handle(records, emit)
    assert out and decodes is not None
    return out


def _handler(bundle: ModelBundle, decodes: MonitorDecodes, **swap) -> ScoreHandler:
    handler = ScoreHandler(SETTINGS, bundle)
    if swap:
        handler.swap(bundle, **swap)
    handler.monitor_written = decodes.wrote
    return handler


@pytest.fixture(scope="module")
def optional_bundle() -> ModelBundle:
    data = numeric_frame(600, n_features=5, seed=3)
    data.loc[data.index % 5 == 0, "f01"] = np.nan  # rows with NaN: null in the record
    return train_bundle(data, "y", num_trees=5, name="opt")


def test_the_columns_taken_are_what_decoding_the_bytes_gives(agrawal_bundle: ModelBundle) -> None:
    decodes = MonitorDecodes(readers=1)
    frame = agrawal_frame(700, seed=5).drop(columns=["y"], errors="ignore")
    written = _score(_handler(agrawal_bundle, decodes), frame, partitions=3)
    reader = object()
    for record in written:
        taken = decodes.decode(record, 1_700_000_000_000 + 10**9, SKEW_MS, reader)
        _same(taken, decode_monitor(record.value(), 1_700_000_000_000 + 10**9, SKEW_MS))
        assert not taken.rows.flags.writeable, "shared read-only, as a decoded record"
    assert (decodes.from_score, decodes.decoded) == (len(written), 0), "no record decoded"


def test_nan_rows_a_shadow_challenger_and_clamped_times_are_taken_as_decoded(optional_bundle) -> None:
    decodes = MonitorDecodes(readers=1)
    handler = _handler(optional_bundle, decodes, challenger=optional_bundle, mode=ChallengerMode.shadow)
    frame = numeric_frame(300, n_features=5, seed=4).drop(columns=["y"])
    frame.loc[frame.index % 3 == 0, "f01"] = np.nan
    written = _score(handler, frame)
    reader = object()
    for record in written:
        # written a day before the events' times: every time is clamped, decoded or taken
        record_time = 1_000_000_000
        taken = decodes.decode(record, record_time, SKEW_MS, reader)
        decoded = decode_monitor(record.value(), record_time, SKEW_MS)
        assert decoded.clamped and np.isnan(decoded.rows).any() and decoded.shadow_model
        _same(taken, decoded)
    assert decodes.from_score == len(written)


def test_a_multiclass_models_records_are_taken_as_decoded(queues_bundle: ModelBundle) -> None:
    decodes = MonitorDecodes(readers=1)
    frame = multiclass_frame(400, seed=8).drop(columns=[MULTICLASS_TARGET])
    written = _score(_handler(queues_bundle, decodes), frame)
    for record in written:
        _same(decodes.decode(record, None, SKEW_MS, object()), decode_monitor(record.value(), None, SKEW_MS))
    assert decodes.from_score == len(written) and decodes.decoded == 0


def test_other_bytes_are_decoded_and_a_record_taken_once_is_held_for_the_other_role(
    optional_bundle: ModelBundle,
) -> None:
    decodes = MonitorDecodes(readers=2)
    frame = numeric_frame(50, n_features=5, seed=6).drop(columns=["y"])
    (record,) = _score(_handler(optional_bundle, decodes), frame, partitions=1)
    drift, learn = object(), object()
    first = decodes.decode(record, None, SKEW_MS, drift)
    assert decodes.decode(record, None, SKEW_MS, learn) is first, "the other role takes the same columns"
    assert (decodes.from_score, decodes.shared, decodes.decoded) == (1, 1, 0)
    # the same position and length, one byte changed: not what the score role wrote
    changed = record.value().replace(b'"partition":0', b'"partition":1')
    other = FakeRecord(record.topic(), record.partition(), 99, value_=changed)
    assert decodes.decode(other, None, SKEW_MS, drift).partition == 1
    assert decodes.decoded == 1


def test_written_records_past_the_bound_are_dropped_oldest_first_and_decoded(optional_bundle) -> None:
    frame = numeric_frame(40, n_features=5, seed=7).drop(columns=["y"])
    probe = MonitorDecodes(readers=1)
    (one,) = _score(_handler(optional_bundle, probe), frame, partitions=1)
    decodes = MonitorDecodes(readers=1, max_written_bytes=2 * len(one.value()))
    handler = _handler(optional_bundle, decodes)
    batches = [
        _score(handler, numeric_frame(40, n_features=5, seed=s).drop(columns=["y"]), 1) for s in (7, 8, 9)
    ]
    for (record,) in batches:
        decodes.decode(record, None, SKEW_MS, object())
    assert (decodes.decoded, decodes.from_score) == (1, 2), "the oldest of three was dropped"


# any columns the writer may be handed: what it writes is taken only when decoding reads it the same
_text = st.text(alphabet="ab", min_size=0, max_size=300)
_float = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def _batches(draw):
    n = draw(st.integers(1, 4))
    width = draw(st.integers(1, 3))
    shadow = draw(st.booleans())
    return dict(
        n=n,
        event_ids=draw(st.lists(_text, min_size=n, max_size=n)),
        entity_ids=draw(st.lists(_text, min_size=n, max_size=n)),
        offsets=draw(st.lists(st.integers(0, 2**63 - 1), min_size=n, max_size=n)),
        times=draw(st.lists(st.integers(0, 2**62), min_size=n, max_size=n)),
        scores=np.array(draw(st.lists(_float, min_size=n, max_size=n)), dtype=np.float64),
        rows=np.array(draw(st.lists(_float, min_size=n * width, max_size=n * width))).reshape(n, width),
        shadow=np.array(draw(st.lists(_float, min_size=n, max_size=n))) if shadow else None,
        record_time=draw(st.one_of(st.none(), st.integers(0, 2**62))),
    )


@pytest.fixture(scope="module")
def narrow_models() -> dict[int, LoadedModel]:
    models = {}
    for width in (1, 2, 3):
        frame = numeric_frame(200, n_features=4, seed=width)
        bundle = train_bundle(frame[[*frame.columns[:width], "y"]], "y", num_trees=2, name="w")
        models[width] = LoadedModel(bundle, None, None, b"x")  # type: ignore[arg-type]
    return models


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=_batches())
def test_a_record_is_taken_only_as_decoding_reads_it(narrow_models, batch) -> None:
    model = narrow_models[batch["rows"].shape[1]]
    n = batch["n"]
    events = ValidEvents(
        [FakeRecord("features", 0, o) for o in batch["offsets"]],
        batch["event_ids"],
        batch["entity_ids"],
        batch["times"],
        batch["rows"].tolist(),
    )
    handed: list[Written] = []
    values: list[bytes] = []
    emit_monitor(
        "monitor", 1000, 4, model, events, [0] * n, batch["rows"], batch["scores"],
        lambda topic, key, value, headers, partition=None: values.append(value),
        model if batch["shadow"] is not None else None, batch["shadow"], written=handed.append,
    )  # fmt: skip
    decodes = MonitorDecodes(readers=1)
    for written in handed:
        decodes.wrote(written)
    for value in values:
        record = FakeRecord("monitor", 0, 0, value_=value)
        try:
            decoded = decode_monitor(value, batch["record_time"], SKEW_MS)
        except MonitorRejected:
            with pytest.raises(MonitorRejected):
                decodes.decode(record, batch["record_time"], SKEW_MS, object())
            assert decodes.from_score == 0, "a record the codec refuses is never taken"
            continue
        _same(decodes.decode(record, batch["record_time"], SKEW_MS, object()), decoded)
        # infinities are written as null and read back as missing: those records are decoded
        finite = not np.isinf(batch["rows"]).any() and (
            batch["shadow"] is None or not np.isinf(batch["shadow"]).any()
        )
        assert decodes.from_score == (1 if finite else 0)
