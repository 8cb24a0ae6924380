"""The label join in columns: what it matches, what it expires and counts, what a checkpoint brings back.

The join kept each waiting event as an object in an ``OrderedDict`` before; that join is kept
in ``bench/dict_join.py``, and a random stream through both must give the same counts, the
same waiting events in the same order, and the same events back with their labels.
"""

from __future__ import annotations

import importlib.util
import tracemalloc
from collections import OrderedDict
from pathlib import Path

import numpy as np
import orjson
import pytest

from scoring.feedback.event_columns import EventBatch
from scoring.feedback.join_segments import JoinSegments, restore_events
from scoring.feedback.label_join import LabelJoin, PendingLabel, ScoredEvent

_spec = importlib.util.spec_from_file_location(
    "dict_join", Path(__file__).resolve().parents[2] / "bench" / "dict_join.py"
)
dict_join = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dict_join)
DictJoin = dict_join.DictJoin

WIDTH = 3


def event(
    event_id: str, t: int, seq: int = 0, score: float = 0.5, shadow: float | None = None, model: str = "m:1"
) -> ScoredEvent:
    row = np.array([t, -t, np.nan])[:WIDTH].tobytes()
    return ScoredEvent(
        model, score, row, "features", t % 3, 1000 + t, event_id, t,
        None if shadow is None else "c:1", shadow, seq,
    )  # fmt: skip


def batch_of(events: list[ScoredEvent]) -> EventBatch:
    return EventBatch.of_events(events, WIDTH)


def test_an_event_then_its_label_gives_the_event_back_whole() -> None:
    join = LabelJoin(ttl_ms=1000, max_entries=100)
    sent = [event("a", 5, seq=0, score=0.25), event("b", 6, seq=1, shadow=0.75)]
    assert join.add_batch(batch_of(sent)) == []
    assert join.add_label("b", 1.0, 7) == sent[1]
    assert join.add_label("a", 0.0, 8) == sent[0]
    assert join.counts() == {
        "matched": 2, "pending_events": 0, "pending_labels": 0, "expired_events": 0, "unmatched_labels": 0,
    }  # fmt: skip


def test_a_label_then_its_event_gives_the_label_back() -> None:
    join = LabelJoin(ttl_ms=1000, max_entries=100)
    assert join.add_label("a", 1.0, 5) is None
    assert join.counts()["pending_labels"] == 1
    early = join.add_batch(batch_of([event("x", 1), event("a", 2), event("y", 3)]))
    assert early == [(1, PendingLabel(1.0, 5))]
    assert list(join.events) == ["x", "y"] and join.matched == 1
    other_shard = {"z": PendingLabel(0.0, 9)}
    assert join.add_event(event("z", 4), elsewhere=other_shard.get) == PendingLabel(0.0, 9)


def test_events_older_than_the_ttl_against_the_newest_expire_in_arrival_order() -> None:
    join = LabelJoin(ttl_ms=100, max_entries=1000, chunk_events=4)
    join.add_batch(batch_of([event(f"e{t}", t) for t in range(0, 50)]))
    join.add_batch(batch_of([event("late", 20), event("new", 160)]))  # horizon 60: all before "new" go
    assert list(join.events) == ["new"] and join.expired_events == 51
    join.add_batch(batch_of([event("a", 170), event("b", 90)]))
    join.add_batch(batch_of([event("c", 261)]))  # horizon 161: "b" is older, but behind "a"
    assert list(join.events) == ["a", "b", "c"] and join.expired_events == 52


def test_over_the_cap_the_oldest_arrivals_expire_first() -> None:
    join = LabelJoin(ttl_ms=10**9, max_entries=5, chunk_events=4)
    join.add_batch(batch_of([event(f"e{i}", 100 - i) for i in range(12)]))  # times run backwards
    assert list(join.events) == [f"e{i}" for i in range(7, 12)]
    assert join.expired_events == 7
    assert len(join.chunks) == 2, "chunks whose events are all gone are freed"


def _stream(rng: np.random.Generator, n: int, repeats: float = 0.05) -> list[tuple]:
    """Batches of events and single labels, interleaved: times jump about, ids repeat (a redelivery),
    labels come before and after their event or for events that never come."""
    ops, t, next_id = [], 0, 0
    while next_id < n:
        if rng.random() < 0.5:
            size = int(rng.integers(1, 40))
            batch = []
            for _ in range(size):
                t += int(rng.integers(-30, 60))
                repeat = rng.random() < repeats and next_id > 0
                eid = f"e{rng.integers(max(0, next_id - 50), next_id) if repeat else next_id}"
                next_id += not repeat
                shadow = float(rng.random()) if rng.random() < 0.3 else None
                batch.append((eid, max(t, 0), float(rng.random()), shadow))
            ops.append(("events", batch))
        else:
            eid = f"e{rng.integers(0, next_id + 60)}"  # some before their event, some for none
            ops.append(("label", eid, float(rng.integers(0, 2)), t + int(rng.integers(-50, 50))))
    return ops


@pytest.mark.parametrize("other_shard", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_a_random_stream_gives_the_counts_and_events_of_the_dict_join(seed: int, other_shard: bool) -> None:
    """With and without another shard's early labels (without, a batch of new events is stored whole)."""
    rng = np.random.default_rng(seed)
    ttl, cap = int(rng.integers(100, 2000)), int(rng.integers(5, 200))
    old, new = DictJoin(ttl, cap), LabelJoin(ttl, cap, chunk_events=int(rng.integers(2, 64)))
    other_old, other_new = {}, {}  # another shard's early labels
    for k in range(0, 300, 3):
        other_old[f"e{k}"] = other_new[f"e{k}"] = PendingLabel(1.0, k)
    seq = 0
    for op in _stream(rng, 3000):
        if op[0] == "events":
            events = []
            for eid, t, score, shadow in op[1]:
                events.append(event(eid, t, seq=seq, score=score, shadow=shadow, model=f"m:{seq // 500}"))
                seq += 1
            old_early = []
            old_taker = (lambda event_id: other_old.pop(event_id, None)) if other_shard else None
            for i, sent in enumerate(events):
                label = old.add_event(sent, old_taker)
                if label is not None:
                    old_early.append((i, label))
            taker = (lambda event_id: other_new.pop(event_id, None)) if other_shard else None
            new_early = new.add_batch(batch_of(events), taker)
            assert new_early == old_early
        else:
            assert new.add_label(*op[1:]) == old.add_label(*op[1:])
        assert new.counts() == old.counts()
    assert list(new.events) == list(old.events)
    assert list(new.events.values()) == list(old.events.values())
    assert old.expired_events > 0 and old.unmatched_labels > 0 and old.matched > 0


def _checkpoint(tracker: JoinSegments, join: LabelJoin, written: dict[int, tuple]) -> tuple[dict, tuple]:
    """One checkpoint of the join's waiting events, through JSON as the topic holds it."""
    plan = tracker.plan(join)
    for sid in plan.new:
        columns, rows = plan.payload(sid)
        written[sid] = (orjson.loads(orjson.dumps(columns)), rows)
    for sid in plan.dropped:
        written.pop(sid)
    columns, rows = plan.open_payload()
    tracker.done(plan)
    return orjson.loads(orjson.dumps(plan.head())), (orjson.loads(orjson.dumps(columns)), rows)


def test_waiting_events_come_back_from_checkpoint_segments_and_go_on_alike() -> None:
    rng = np.random.default_rng(7)
    join, tracker, written = LabelJoin(4000, 300, chunk_events=16), JoinSegments(size=32), {}
    for op in _stream(rng, 1500, repeats=0):  # a redelivered event waits in its first place, until a restore
        if op[0] == "events":
            seqs = join.take_seqs(len(op[1])).tolist()
            events = [event(*sent[:2], s, *sent[2:]) for s, sent in zip(seqs, op[1], strict=True)]
            join.add_batch(batch_of(events))
        else:
            join.add_label(*op[1:])
        if rng.random() < 0.05:
            head, open_part = _checkpoint(tracker, join, written)
    head, open_part = _checkpoint(tracker, join, written)
    assert written and len(head["segments"]) == len(written)

    parts, restored_tracker = restore_events(head, written, open_part)
    back = LabelJoin(4000, 300, chunk_events=16)
    for part in parts:
        back.load(EventBatch.of_payload(part.columns, part.rows, WIDTH), part.alive)
    assert list(back.events) == list(join.events) and len(back.events) > 100
    assert list(back.events.values()) == list(join.events.values())
    assert {k: v.tolist() for k, v in restored_tracker.written.items()} == {
        k: v.tolist() for k, v in tracker.written.items()
    }
    back.newest_time, back.next_seq, back.labels = join.newest_time, join.next_seq, OrderedDict(join.labels)
    for eid in list(join.events)[::2]:
        assert back.add_label(eid, 1.0, 0) == join.add_label(eid, 1.0, 0)
    late = [event(f"n{i}", join.newest_time + 2000 + i, join.next_seq + i) for i in range(50)]
    assert back.add_batch(batch_of(late)) == join.add_batch(batch_of(late))
    assert back.counts()["pending_events"] == join.counts()["pending_events"]
    assert list(back.events.values()) == list(join.events.values())


def test_checkpoint_payloads_are_what_the_dict_join_wrote() -> None:
    """Same columns and rows as ``encode_events`` of the objects (the format older checkpoints have),
    and a payload without ``seq`` or shadow columns (older still) loads."""
    from scoring.feedback.join_segments import encode_events

    join = LabelJoin(10**6, 100)
    seqs = join.take_seqs(10).tolist()
    events = [event(f"e{i}", i, seq, shadow=0.5 if i % 2 else None) for i, seq in enumerate(seqs)]
    join.add_batch(batch_of(events))
    plan = JoinSegments(size=4).plan(join)
    assert plan.payload(0) == encode_events(events[:4])
    assert plan.open_payload() == encode_events(events[8:])
    columns, rows = encode_events(events[:3])
    for name in ("seq", "shadow_model", "shadow_score"):
        del columns[name]
    older = LabelJoin(10**6, 100)
    older.load(EventBatch.of_payload(columns, rows, WIDTH))
    assert [e.event_id for e in older.events.values()] == ["e0", "e1", "e2"]
    assert older.events["e1"].row == events[1].row and older.events["e1"].shadow_score is None


@pytest.mark.parametrize("shadow", ["none", "every", "some"])
def test_a_batch_payload_is_what_the_events_make(shadow: str) -> None:
    """The columns written from the batch's arrays are those of its events one by one."""
    from scoring.feedback.join_segments import encode_events

    scores = {"none": [None] * 7, "every": [0.25 * i for i in range(7)], "some": [0.25, None] * 3 + [0.5]}
    events = [event(f"e{i}", i, i, score=i / 7, shadow=s) for i, s in enumerate(scores[shadow])]
    assert batch_of(events).payload() == encode_events(events)


def test_a_waiting_event_costs_under_340_bytes_with_20_features() -> None:
    """The dict join held ~520 bytes per waiting event here (``bench/join_memory.py``)."""
    n, width = 20_000, 20
    rows, scores = np.random.default_rng(0).normal(size=(n, width)), np.linspace(0, 1, n)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        join = LabelJoin(10**9, n)
        for start in range(0, n, 500):
            ids, numbers = [f"m0-{i}" for i in range(start, start + 500)], np.arange(start, start + 500)
            origins, kinds = [("m:1", "features", 0, None)], np.zeros(500, np.int8)
            no_shadow, part = np.full(500, np.nan), slice(start, start + 500)
            columns = (ids, numbers, numbers, numbers, scores[part], no_shadow, rows[part], origins, kinds)
            join.add_batch(EventBatch(*columns))
        per_event = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert len(join.events) == n
    assert per_event < 340
