"""The bounded intake of state topics (issue 29): chunk headers, assembly bounds, what a partial may hold."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.drift import DetectorChange, PartitionSpan
from scoring.drift import partial as drift_partial
from scoring.drift.bounds import partial_problem, report_problem
from scoring.drift.partial import WindowPartial
from streams.services.drift.shards import DriftShard
from streams.services.shared import state_intake
from streams.services.shared.state_intake import ChunkAssembler, StateRejected, chunk_header

CHUNK = 10
NOW = 1_750_000_000_000


def test_the_intake_bounds_a_partial_as_the_partial_codec_does() -> None:
    assert state_intake.MAX_PARTIAL_BYTES == drift_partial.MAX_PARTIAL_BYTES
    assert state_intake.MAX_CHUNKS * state_intake.CHUNK_BYTES >= drift_partial.MAX_PARTIAL_BYTES + 100


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (None, "0 streamscore-chunk headers"),
        ([("streamscore-chunk", None)], "null"),  # issue 29, item 1: an AttributeError out of tick()
        ([("streamscore-chunk", b"0/1"), ("streamscore-chunk", b"0/1")], "2 streamscore-chunk"),
        ([("streamscore-chunk", b"7/1000000")], "1 to 84 chunks"),  # issue 29, item 3: held 80 x 900 kB
        ([("streamscore-chunk", b"1/1")], "1 to 84 chunks"),
        ([("streamscore-chunk", b"-1/2")], "not 'index/count'"),
        ([("streamscore-chunk", b"0/2/3")], "not 'index/count'"),
        ([("streamscore-chunk", b"\xff/1")], "not 'index/count'"),
        ([("streamscore-chunk", b"0/0")], "1 to 84 chunks"),
    ],
)
def test_a_chunk_header_that_is_not_index_of_count_is_refused(headers, message) -> None:
    with pytest.raises(StateRejected, match=message) as refused:
        chunk_header(headers)
    assert refused.value.reason == "header"


def _header(i: int, n: int) -> list:
    return [("streamscore-chunk", f"{i}/{n}".encode())]


def test_chunks_assemble_in_order_and_anything_else_is_refused_or_dropped_and_counted() -> None:
    dropped: list[str] = []
    chunks = ChunkAssembler(max_bytes=100, on_drop=dropped.append, chunk_bytes=CHUNK)
    assert chunks.add("a", _header(0, 2), b"x" * CHUNK, 0, 10) is None
    assert chunks.pinned() == [(0, 10)]
    assert chunks.add("a", _header(1, 2), b"yy", 0, 11) == (b"x" * CHUNK + b"yy", 0, 10)
    assert chunks.pinned() == [] and chunks.held_bytes == 0

    with pytest.raises(StateRejected, match="out of order"):
        chunks.add("b", _header(1, 2), b"yy", 0, 12)  # no first chunk
    with pytest.raises(StateRejected, match="holds 3 bytes, not 10"):
        chunks.add("b", _header(0, 2), b"abc", 0, 13)  # a first chunk shorter than a chunk
    with pytest.raises(StateRejected, match="a chunk of 11 bytes"):
        chunks.add("b", _header(0, 1), b"x" * 11, 0, 14)

    for i in range(12):  # twelve partials of 3 chunks started, none finished: 100 bytes hold 10 chunks
        chunks.add(f"k{i}", _header(0, 3), b"x" * CHUNK, 0, 20 + i)
    assert chunks.held_bytes == 100 and len(dropped) == 2 and chunks.pinned()[0] == (0, 22), dropped

    stale = ChunkAssembler(max_bytes=100, on_drop=dropped.append, chunk_bytes=CHUNK, stale_records=5)
    stale.add("never-finished", _header(0, 2), b"x" * CHUNK, 0, 50)
    for i in range(6):  # six records of other, whole partials: the unfinished one no longer holds offset 50
        stale.add(f"s{i}", _header(0, 1), b"z", 0, 51 + i)
    assert stale.held_bytes == 0 and stale.pinned() == [] and "never-finished" in dropped[-1]


def _partial(**change) -> WindowPartial:
    quota = 100
    fields = {
        "model_name": "loans",
        "model_version": "1",
        "partition": 1,
        "partitions": 2,
        "window": 3,
        "quota": quota,
        "start_time": NOW - 60_000,
        "end_time": NOW - 1_000,
        "spans": (PartitionSpan(topic="features", partition=1, first_offset=400, last_offset=499),),
        "changes": (),
        "rows": np.zeros((quota, 2)),
        "scores": np.full(quota, 0.5),
    }
    return WindowPartial(**{**fields, **change})


def _end(topic: str, partition: int, reach: int) -> int | None:
    return 1_000 if partition < 2 else None


def _span(first: int, last: int, topic: str = "features", partition: int = 1) -> tuple[PartitionSpan, ...]:
    return (PartitionSpan(topic=topic, partition=partition, first_offset=first, last_offset=last),)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"window": 10**15}, "window 1000000000000000"),  # issue 29, item 4
        ({"spans": _span(400, 10**17)}, "whose end is 1000"),  # issue 29, item 4
        ({"spans": _span(400, 499, topic="labels")}, "not the source topic"),
        ({"spans": _span(400, 499, partition=5)}, "does not have"),
        ({"spans": _span(400, 420)}, "covering 21 records for 100 events"),
        ({"rows": np.zeros((99, 2)), "scores": np.full(99, 0.5)}, "closes at 100"),
        ({"end_time": NOW + 86_400_000}, "past the clock"),
    ],
)
def test_a_signed_partial_the_topic_and_the_clock_do_not_allow_is_named(change, message) -> None:
    assert partial_problem(_partial(), "features", NOW, 300_000, _end) is None, "the honest one passes"
    assert message in (partial_problem(_partial(**change), "features", NOW, 300_000, _end) or "")


def test_a_detector_change_outside_the_partial_is_named() -> None:
    change = DetectorChange(
        detector="adwin", stream="score", model_version="1", source_topic="features", partition=1,
        offset=450, event_id="e", event_time=NOW, position=1,
    )  # fmt: skip
    assert partial_problem(_partial(changes=(change,)), "features", NOW, 0, _end) is None
    elsewhere = change.model_copy(update={"offset": 10})
    assert "outside the partial" in partial_problem(_partial(changes=(elsewhere,)), "features", NOW, 0, _end)


def test_a_report_with_a_non_finite_or_negative_statistic_is_named(agrawal_bundle) -> None:
    from scoring.drift.closing import WindowCloser, WindowEvents
    from scoring.drift.compare import DriftThresholds
    from scoring.offline.synthetic import agrawal_frame

    rows = agrawal_bundle.spec.encode_frame(agrawal_frame(400, seed=2).drop(columns="approved"))
    events = WindowEvents(0, "events", rows, agrawal_bundle.predict(rows), 1, 2, [], [])
    report = WindowCloser(agrawal_bundle, DriftThresholds()).close(events).report
    assert report_problem(report) is None
    feature = report.features[0]
    for bad, message in ((float("inf"), "a statistic of inf"), (-0.5, "negative")):
        damaged = report.model_copy(update={"features": [feature.model_copy(update={"psi": bad})]})
        assert message in report_problem(damaged)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"partition": 0, "read_to": 10, "versions": {}}, "partition 0, not 2"),  # issue 29: copied
        ({"partition": 2, "read_to": 10**17, "versions": {}}, "whose end is 500"),
        ({"partition": 2, "read_to": -1, "versions": {}}, "not an offset"),
        ({"partition": 2, "read_to": 10, "versions": {"m:1": {"window": -2, "start": None}}}, "not a window"),
        ({"partition": 2, "read_to": 10, "versions": {"m:1": {"window": 1, "start": [12, 0]}}}, "not before"),
    ],
)
def test_a_drift_shard_takes_only_its_own_possible_checkpoint(state, message) -> None:
    from scoring.drift.partitions import PartitionWindows
    from streams.services.shared.checkpoints import CheckpointStore
    from streams.settings import Settings

    shard = DriftShard(2, PartitionWindows(2, 4, 100), CheckpointStore(Settings(), "app/drift/p2", b"k" * 32))
    with pytest.raises(ValueError, match=message):
        shard.restore(state, end=500)
    assert shard.read_to is None and not shard.resumed_index, "nothing taken"
