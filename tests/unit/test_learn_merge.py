"""KPI partials on the checkpoints topic: signed like checkpoints, merged into one snapshot."""

from __future__ import annotations

import orjson
import pytest

from scoring.metrics.kpis import KpiBoard
from streams.services.learn.merge import decode_partial, encode_partial, merged_snapshot, partial_key
from streams.services.shared.state_intake import StateRejected, partition_number
from streams.settings import Settings

KEY = b"k" * 32
SETTINGS = Settings(app_id="app", group_id="scorer")
COUNTS = {"matched": 0, "pending_events": 0, "pending_labels": 0, "expired_events": 0, "unmatched_labels": 0}


def _partial(partition: int, outcomes: list[tuple[float, float]]) -> dict:
    board = KpiBoard("binary", window=100)
    for label, score in outcomes:
        board.update("m:1", label, score, {})
    return {
        "partition": partition,
        "board": board.state(),
        "join": {**COUNTS, "matched": len(outcomes)},
        "tallies": {},
        "champion": "m:1",
        "challenger": "river:default",
    }


def test_a_signed_partial_reads_back_and_merges_with_the_others():
    parts = {0: _partial(0, [(1.0, 0.9), (0.0, 0.2)]), 1: _partial(1, [(1.0, 0.3), (0.0, 0.1)])}
    read = {p: _read(_write(part, p), p) for p, part in parts.items()}
    assert read == {p: orjson.loads(orjson.dumps(part)) for p, part in parts.items()}  # as JSON has it
    snapshot = merged_snapshot(read, [], 0.1)
    overall = next(r for r in snapshot.kpis if r.model == "m:1" and r.segment_feature == "all")
    assert snapshot.labels.matched == 4
    assert overall.cumulative["accuracy"] == 0.75  # 3 of 4 right at threshold 0.5


def _write(partial: object, partition: int, key: bytes = KEY) -> bytes:
    return encode_partial(SETTINGS, partial, partial_key("app/learn", partition), key)  # type: ignore[arg-type]


def _read(value: bytes | None, partition: int) -> dict:
    return decode_partial(SETTINGS, value, partial_key("app/learn", partition), partition, KEY)


def _damaged(change) -> dict:
    partial = _partial(1, [(1.0, 0.9), (0.0, 0.2)])
    change(partial)
    return partial


@pytest.mark.parametrize(
    ("value", "reason", "message"),
    [
        (_write(_partial(1, [(1.0, 0.9)]), 1, b"x" * 32), "signature", "record key"),  # another deployment
        (orjson.dumps(_partial(1, [(1.0, 0.9)])), "signature", "signed"),  # unsigned: anyone could write it
        (b"not json", "signature", "signed"),
        (None, "signature", "signed"),
        (_write(_partial(0, [(1.0, 0.9)]), 0), "signature", "record key"),  # p0's, copied under p1 (issue 29)
        (_write([1, 2], 1), "shape", "not an object"),
        (_write(_partial(0, [(1.0, 0.9)]), 1), "content", "partition 0 under the key of partition 1"),
        (_write(_damaged(lambda p: p["join"].update(matched=-5)), 1), "content", "non-negative"),
        (_write(_damaged(lambda p: p["board"]["kpis"][0][1].update(tp=7)), 1), "content", "is not n"),
        (
            _write(_damaged(lambda p: p["board"]["kpis"][0][1].update(log_loss_sum=-1.0)), 1),
            "content",
            "negative",
        ),
        (_write(_damaged(lambda p: p["board"].pop("kpis")), 1), "content", "not a KPI board"),
    ],
)
def test_anything_but_this_partitions_partial_signed_here_is_refused_with_the_reason(value, reason, message):
    with pytest.raises(StateRejected, match=message) as refused:
        _read(value, 1)
    assert refused.value.reason == reason


@pytest.mark.parametrize("text", ["7", "-1", " 1", "1 ", "01", "+1", "1e0", "", "\uff11"])
def test_a_partition_outside_a_two_partition_topic_is_refused_from_the_key_alone(text: str) -> None:
    """Issue 29: KPI partials copied under kpi/p7, kpi/p-1 and kpi/p 1 were all merged."""
    with pytest.raises(StateRejected) as refused:
        partition_number(text, 2)
    assert refused.value.reason == "key"
    assert [partition_number(t, 2) for t in ("0", "1")] == [0, 1]


def _detection(partition: int, event_time: int) -> dict:
    return {
        "detector": "cusum",
        "stream": "error",
        "model_version": "1",
        "source_topic": "features",
        "partition": partition,
        "offset": event_time // 4,
        "event_id": f"e{event_time}",
        "event_time": event_time,
        "position": event_time // 4,
        "statistic": 15.2,
        "threshold": 15.0,
        "baseline": 60_000,
        "mean_before": 0.1,
        "since_change": 400,
        "mean_after": 0.2,
    }


def test_every_shards_detections_come_once_and_merge_into_one_alert_on_the_drift_topic():
    from schemas.feedback import ConceptDriftAlert
    from streams.services.learn.alerts import ConceptReports
    from streams.settings import Settings

    sent, counted = [], []
    reports = ConceptReports(Settings(partitions=2, concept_merge_seconds=60), "binary", counted.append)
    parts = {p: {**_partial(p, [(1.0, 0.9)]), "changes": [["m:1", _detection(p, 1_000 + p)]]} for p in (0, 1)}
    parts[1]["changes"] += [["m:1", {"detector": "made up"}], "garbage", [1, _detection(1, 5)]]
    new = reports.collect(parts)
    assert [(c.partition, c.event_time) for c in new] == [(0, 1_000), (1, 1_001)]
    assert reports.refused == 3
    assert reports.collect(parts) == [], "a partial resends its shard's recent detections: seen already"

    snapshot = merged_snapshot(parts, new, 0.1)
    reports.publish(
        snapshot, 1_001, lambda topic, key, value, headers: sent.append((topic, key, value, headers))
    )
    ((topic, key, value, headers),) = sent
    alert = ConceptDriftAlert.model_validate_json(value)
    assert (topic, key, alert.shards, alert.status) == ("drift", b"m:1", [0, 1], "firing")
    assert dict(headers)["ce_type"] == b"io.streamscore.concept-drift.alert.v1"
    assert counted == [alert] and reports.sent == {"firing": 1, "resolved": 0}
    assert [c.partition for c in snapshot.changes] == [0, 1], "each shard's detection, for /metrics"
