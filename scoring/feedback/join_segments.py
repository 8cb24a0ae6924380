"""The label join's waiting events checkpointed in segments, so a checkpoint costs what changed.

Each event gets an arrival number (``seq``) when it enters the join; segment ``k`` holds
arrivals ``k*size .. (k+1)*size - 1``. Once arrivals have moved past a segment it is
closed: its events are written once, in a payload of their own, and afterwards it can
only shrink (labels match events, the TTL expires them). Every later checkpoint carries
just a bitmap per written segment saying which of its events still wait (one bit each),
plus the events of the open segment; a segment whose events are all gone is dropped.
So the bytes a checkpoint writes are bounded by the open segment and the events that
arrived since the last one, not by how many wait.

Rows travel as float64 bytes (JSON lists of floats cost ~10x the memory to write); the
other columns as JSON (``EventBatch.payload``).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from scoring.feedback.event_columns import EventBatch, Payload, ScoredEvent, to_payload
from scoring.feedback.label_join import LabelJoin

SEGMENT_EVENTS = 2048  # about 0.5 MB of payload per segment with 20 features


@dataclass(frozen=True)
class WaitingPart:
    """Events as a checkpoint holds them, and which of them still wait (None: all)."""

    columns: dict[str, list]
    rows: bytes
    alive: np.ndarray | None = None


def encode_events(events: Iterable[ScoredEvent]) -> Payload:
    """``ScoredEvent`` objects as JSON-ready columns (without their rows) and their rows as one bytes."""
    return to_payload(list(events))


def decode_events(columns: dict[str, list], rows: bytes) -> list[ScoredEvent]:
    return EventBatch.of_payload(columns, rows).events()


@dataclass
class SegmentPlan:
    """What one checkpoint writes of the join. Its payloads are read from the join: take them
    before the join changes."""

    new: dict[int, np.ndarray]  # closed segments written for the first time: their events' seqs
    alive: dict[int, np.ndarray]  # per written segment: which of its written events still wait
    dropped: list[int]  # written segments with nothing left waiting
    next_seq: int
    join: LabelJoin
    slots: dict[int, np.ndarray] = field(default_factory=dict)  # new segment -> its events' join slots
    open_slots: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def payload(self, sid: int) -> Payload:
        """New segment ``sid``'s events."""
        return self.join.take(self.slots[sid]).payload()

    def open_payload(self) -> Payload:
        """The events of the open segment, carried whole."""
        return self.join.take(self.open_slots).payload()

    def head(self) -> dict:
        """The join's part of the checkpoint head: bitmaps of every segment kept."""
        alive = {**self.alive, **{sid: np.ones(len(seqs), dtype=bool) for sid, seqs in self.new.items()}}
        return {
            "next_seq": self.next_seq,
            "segments": {
                str(sid): {"count": len(mask), "alive": base64.b64encode(np.packbits(mask)).decode()}
                for sid, mask in sorted(alive.items())
            },
        }

    @property
    def changed(self) -> bool:
        return bool(self.new or self.dropped)


@dataclass
class JoinSegments:
    """Which waiting events are already durable in written segments (by their seqs)."""

    size: int = SEGMENT_EVENTS
    written: dict[int, np.ndarray] = field(default_factory=dict)  # segment -> the seqs it holds, in order

    def plan(self, join: LabelJoin) -> SegmentPlan:
        seqs, slots = join.waiting()
        sids = seqs // self.size
        boundary = join.next_seq // self.size  # segments below it are closed
        is_open = sids >= boundary
        order = np.argsort(sids, kind="stable")  # by segment, arrival order within one
        closed = order[~is_open[order]]
        present, starts = np.unique(sids[closed], return_index=True)
        groups = dict(zip(present.tolist(), np.split(closed, starts[1:]), strict=True)) if len(closed) else {}
        plan = SegmentPlan({}, {}, [], join.next_seq, join, open_slots=slots[is_open])
        for sid, members in groups.items():
            if sid not in self.written:
                plan.new[sid], plan.slots[sid] = seqs[members], slots[members]
        for sid, written in self.written.items():
            members = groups.get(sid)
            if members is None:
                plan.dropped.append(sid)
            else:
                plan.alive[sid] = np.isin(written, seqs[members])
        return plan

    def done(self, plan: SegmentPlan) -> None:
        """The plan's checkpoint is durable: its new segments are written, its dropped ones gone."""
        self.written.update(plan.new)
        for sid in plan.dropped:
            self.written.pop(sid, None)


def restore_events(
    head: dict, segments: dict[int, tuple[dict, bytes]], open_part: Payload
) -> tuple[list[WaitingPart], JoinSegments]:
    """The waiting events, in arrival order, from the head's bitmaps, the segments' payloads and the open
    events; and the record of what is written. A segment named in the head but missing is an error."""
    parts = []
    tracker = JoinSegments()
    for key, info in sorted(head["segments"].items(), key=lambda kv: int(kv[0])):
        sid = int(key)
        if sid not in segments:
            raise ValueError(f"checkpoint segment {sid} is missing")
        columns, rows = segments[sid]
        count = len(columns["event_id"])
        if count != info["count"]:
            raise ValueError(f"checkpoint segment {sid} holds {count} events, the head says {info['count']}")
        mask = np.unpackbits(np.frombuffer(base64.b64decode(info["alive"]), dtype=np.uint8))[:count]
        if len(mask) != count:
            raise ValueError(f"checkpoint segment {sid}'s bitmap covers {len(mask)} of its {count} events")
        tracker.written[sid] = np.asarray(columns.get("seq") or np.zeros(count), dtype=np.int64)
        parts.append(WaitingPart(columns, rows, mask.astype(bool)))
    parts.append(WaitingPart(*open_part))
    return parts, tracker
