"""KPI partials on the checkpoints topic: signed like checkpoints, merged into one snapshot."""

from __future__ import annotations

import orjson
import pytest

from scoring.metrics.kpis import KpiBoard
from streams.services.learn.merge import decode_partial, encode_partial, merged_snapshot

KEY = b"k" * 32
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
    read = {p: decode_partial(encode_partial(part, KEY), KEY) for p, part in parts.items()}
    assert read == {p: orjson.loads(orjson.dumps(part)) for p, part in parts.items()}  # as JSON has it
    snapshot = merged_snapshot(read, [], 0.1)
    overall = next(r for r in snapshot.kpis if r.model == "m:1" and r.segment_feature == "all")
    assert snapshot.labels.matched == 4
    assert overall.cumulative["accuracy"] == 0.75  # 3 of 4 right at threshold 0.5


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (encode_partial(_partial(3, [(1.0, 0.9)]), b"x" * 32), "signature"),  # another deployment's key
        (orjson.dumps(_partial(3, [(1.0, 0.9)])), "signature"),  # unsigned: anyone could have written it
        (b"not json", "signature"),
        (None, "signature"),
        (encode_partial([1, 2], KEY), "not an object"),  # type: ignore[arg-type]
    ],
)
def test_anything_but_a_partial_this_deployment_signed_is_refused_with_the_reason(value, reason):
    with pytest.raises(ValueError, match=reason):
        decode_partial(value, KEY)


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
