"""The learner's checkpoint records on the compacted topic, written and read back without a broker.

``read_latest`` is replaced by the latest value per key of what the store emitted, which is
what a compacted topic keeps.
"""

from __future__ import annotations

import pytest

from streams.services.shared import checkpoints
from streams.services.shared.checkpoints import CheckpointStore
from streams.settings import Settings

KEY = b"k" * 32


class Topic:
    """A compacted topic: the latest value per key; a tombstone removes the key."""

    def __init__(self) -> None:
        self.latest: dict[str, bytes] = {}
        self.writes = 0

    def emit(self, topic: str, key: bytes | None, value: bytes | None, headers) -> None:
        self.writes += 1
        if value is None:
            self.latest.pop(key.decode(), None)
        else:
            self.latest[key.decode()] = value


@pytest.fixture
def topic(monkeypatch: pytest.MonkeyPatch) -> Topic:
    topic = Topic()
    monkeypatch.setattr(
        checkpoints,
        "read_latest",
        lambda settings, name, idle_s, prefix: (
            {k: v for k, v in topic.latest.items() if k.startswith(prefix)},
            {},
        ),
    )
    return topic


def _store() -> CheckpointStore:
    return CheckpointStore(Settings(kafka_bootstrap="x:1"), "app/learn", KEY)


def test_a_checkpoint_with_segments_reads_back_and_old_records_are_tombstoned(topic: Topic) -> None:
    store = _store()
    big = b"x" * (checkpoints.CHUNK_BYTES * 2 + 5)  # three chunks
    segment = store.encode_segment(0, {"columns": 1}, b"rows")
    store.write(
        store.encode({"n": 1, "segments": {"segments": {"0": {}}}}, {"o": 1}), topic.emit, [(0, segment)], []
    )
    store.write(
        store.encode({"n": 2, "big": big.decode(), "segments": {"segments": {"0": {}}}}, {}),
        topic.emit,
        [],
        [],
    )

    restored = _store().restore()
    assert restored is not None and restored.state["n"] == 2 and restored.state["big"] == big.decode()
    assert restored.segments == {0: ({"columns": 1}, b"rows")}
    assert not [k for k in topic.latest if k.startswith("app/learn/1/")], "generation 1 was tombstoned"

    again = _store()
    again.restore()
    again.write(again.encode({"n": 3, "segments": {"segments": {}}}, {}), topic.emit, [], [0])
    assert sorted(topic.latest) == ["app/learn/3/0", "app/learn/head"], "the dropped segment is gone"


@pytest.mark.parametrize(
    "damage",
    ["not json", "a missing chunk", "another key", "a missing segment"],
)
def test_a_damaged_checkpoint_means_a_fresh_start_with_the_problem_named(topic: Topic, damage: str) -> None:
    store = _store()
    segment = store.encode_segment(0, {"columns": 1}, b"rows")
    head = store.encode({"n": 1, "segments": {"segments": {"0": {}}}}, {})
    store.write(head, topic.emit, [(0, segment)], [])
    if damage == "not json":
        topic.latest["app/learn/head"] = b"not json"
    elif damage == "a missing chunk":
        del topic.latest["app/learn/1/0"]
    elif damage == "another key":
        topic.latest["app/learn/1/0"] = CheckpointStore(Settings(), "app/learn", b"o" * 32).encode({}, {})
    else:
        del topic.latest["app/learn/seg/0"]

    fresh = _store()
    assert fresh.restore() is None
    assert fresh.restore_problem
    # the next checkpoint replaces every record of the damaged one
    fresh.write(fresh.encode({"n": 9, "segments": {"segments": {}}}, {}), topic.emit, [], [])
    assert sorted(topic.latest) == ["app/learn/1/0", "app/learn/head"]
    assert _store().restore().state["n"] == 9


@pytest.mark.parametrize("restored_has_own", [False, True])
def test_a_shard_restored_from_the_shared_read_leaves_the_other_shards_checkpoints(
    topic: Topic, restored_has_own: bool
) -> None:
    """The learn role reads every shard's keys once (``PREFIX/p``) and restores each shard from that
    read: a shard's first write must tombstone only its own stale records, not the other shards'
    (p1 is also a prefix of p10)."""

    def store(name: str) -> CheckpointStore:
        return CheckpointStore(Settings(kafka_bootstrap="x:1"), f"app/learn/{name}", KEY)

    def checkpoint(shard: CheckpointStore, name: str) -> None:
        shard.write(shard.encode({"shard": name, "segments": {"segments": {}}}, {}), topic.emit, [], [])

    for name in ["p1", "p10"] + (["p0"] if restored_has_own else []):
        checkpoint(store(name), name)
    shared = dict(topic.latest)  # what ``read_latest(..., "app/learn/p")`` gives the role

    p0 = store("p0")
    assert (p0.restore_from(shared) is not None) == restored_has_own
    checkpoint(p0, "p0")

    for name in ["p1", "p10"]:
        restored = store(name).restore_from(dict(topic.latest))
        assert restored is not None and restored.state["shard"] == name
