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
