"""A drift partition resumed from its checkpoint closes the windows an uninterrupted one closes (issue 21).

The shard's checkpoint keeps no events: the next owner reads the partition again from the
first event of the oldest open window. These tests stop a partition's shard at every kind
of point (mid-record, at a window's edge, with a second model version whose window opened
earlier), restore a new shard from the state, replay the records from ``resume_offset``
and compare every partial with those of a shard that never stopped.
"""

from __future__ import annotations

import numpy as np
import pytest

from schemas.monitor import MonitorColumns
from scoring.drift import PartitionWindows
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import numeric_frame
from scoring.offline.training import train_bundle
from streams.services.drift.shards import DriftShard
from streams.services.shared.checkpoints import CheckpointStore
from streams.settings import Settings

PARTITIONS, WINDOW = 4, 400  # 100 events per partition window


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> list[ModelBundle]:
    frame = numeric_frame(2_000, n_features=5, seed=3)
    folder = tmp_path_factory.mktemp("shards")
    return [train_bundle(frame, "y", folder / f"m{v}", name="m", version=f"{v}", num_trees=5) for v in (1, 2)]


def records(bundles: list[ModelBundle]) -> list[tuple[int, MonitorColumns]]:
    """One partition's monitoring records: batches of 1 to 70 events, version 2 from the 5th record on."""
    rng = np.random.default_rng(9)
    out, offset, event = [], 0, 0
    while event < 2_000:
        size = int(rng.integers(1, 70))
        bundle = bundles[1] if offset >= 4 and rng.random() < 0.4 else bundles[0]
        rows = bundle.spec.encode_frame(numeric_frame(size, n_features=5, seed=offset).drop(columns="y"))
        ids = [f"e{event + i}" for i in range(size)]
        columns = MonitorColumns(
            bundle.name, bundle.version, "features", 2, range(event, event + size), ids,
            range(1_700_000_000_000 + event, 1_700_000_000_000 + event + size), bundle.predict(rows), rows,
        )  # fmt: skip
        out.append((offset, columns))
        offset, event = offset + 1, event + size
    return out


def shard(bundles: list[ModelBundle], state: dict | None = None) -> DriftShard:
    store = CheckpointStore(Settings(), "app/drift/p2", b"k" * 32)
    new = DriftShard(2, PartitionWindows(2, PARTITIONS, WINDOW), store)
    if state is not None:
        new.restore(state)
    for bundle in bundles:
        new.register(bundle)
    return new


def keyed(partials) -> dict[tuple, tuple]:
    return {p.key: (p.rows.tobytes(), p.scores.tobytes(), p.start_time, p.end_time) for p in partials}


@pytest.mark.parametrize("stop_at", [3, 6, 17, 30, 41])
def test_a_resumed_partition_closes_the_windows_an_uninterrupted_one_closes(bundles, stop_at: int):
    stream = records(bundles)
    whole = shard(bundles)
    expected = keyed(p for offset, columns in stream for p in whole.observe(offset, columns))

    first = shard(bundles)
    before = [p for offset, columns in stream[:stop_at] for p in first.observe(offset, columns)]
    state = first.state()
    resumed = shard(bundles, state)
    start = resumed.resume_offset()
    assert start is not None and start <= stop_at
    after = [p for offset, columns in stream[start:] for p in resumed.observe(offset, columns)]

    got = keyed(before) | keyed(after)
    assert list(got) == list(expected) and got == expected
    assert len(before) + len(after) == len(expected), "no window closed twice"
    assert resumed.state() == whole.state()


def test_resuming_twice_in_a_row_loses_nothing(bundles):
    stream = records(bundles)
    whole = shard(bundles)
    expected = keyed(p for offset, columns in stream for p in whole.observe(offset, columns))
    got: dict = {}
    current, position = shard(bundles), 0
    for stop in (9, 10, 25, len(stream)):
        for offset, columns in stream[position:stop]:
            got |= keyed(current.observe(offset, columns))
        current = shard(bundles, current.state())
        position = current.resume_offset() or 0
    assert got == expected


def test_a_fresh_shard_has_nothing_to_resume(bundles):
    fresh = shard(bundles)
    assert fresh.resume_offset() is None
    assert fresh.state() == {"partition": 2, "read_to": None, "versions": {}}
