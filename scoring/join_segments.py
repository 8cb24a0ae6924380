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
other columns as JSON.
"""

from __future__ import annotations

import base64
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from scoring.label_join import ScoredEvent

SEGMENT_EVENTS = 2048  # about 0.5 MB of payload per segment with 20 features

_COLUMNS = [name for name in ScoredEvent.__slots__ if name != "row"]


def encode_events(events: Iterable[ScoredEvent]) -> tuple[dict[str, list], bytes]:
    """Events as JSON-ready columns (without their rows) and their rows as one bytes object."""
    events = list(events)
    return {name: [getattr(e, name) for e in events] for name in _COLUMNS}, b"".join(e.row for e in events)


def decode_events(columns: dict[str, list], rows: bytes) -> list[ScoredEvent]:
    count = len(columns["event_id"])
    width = len(rows) // count if count else 0
    names = [name for name in _COLUMNS if name in columns]  # older checkpoints have no seq
    return [
        ScoredEvent(row=rows[i * width : (i + 1) * width], **{name: columns[name][i] for name in names})
        for i in range(count)
    ]


@dataclass
class SegmentPlan:
    """What one checkpoint writes of the join."""

    new: dict[int, list[ScoredEvent]]  # closed segments written for the first time
    alive: dict[int, np.ndarray]  # per written segment: which of its written events still wait
    dropped: list[int]  # written segments with nothing left waiting
    open_events: list[ScoredEvent]  # arrivals of the open segment, carried whole
    next_seq: int

    def head(self) -> dict:
        """The join's part of the checkpoint head: bitmaps of every segment kept."""
        alive = {**self.alive, **{sid: np.ones(len(ev), dtype=bool) for sid, ev in self.new.items()}}
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

    def plan(self, events: Iterable[ScoredEvent], next_seq: int) -> SegmentPlan:
        boundary = (next_seq // self.size) * self.size  # arrivals below it are in closed segments
        closed: dict[int, list[ScoredEvent]] = {}
        open_events = []
        for event in events:
            if event.seq >= boundary:
                open_events.append(event)
            else:
                closed.setdefault(event.seq // self.size, []).append(event)
        new = {sid: ev for sid, ev in closed.items() if sid not in self.written}
        alive, dropped = {}, []
        for sid, seqs in self.written.items():
            present = closed.get(sid)
            if not present:
                dropped.append(sid)
                continue
            alive[sid] = np.isin(
                seqs, np.fromiter((e.seq for e in present), dtype=np.int64, count=len(present))
            )
        return SegmentPlan(new, alive, dropped, open_events, next_seq)

    def done(self, plan: SegmentPlan) -> None:
        """The plan's checkpoint is durable: its new segments are written, its dropped ones gone."""
        for sid, events in plan.new.items():
            self.written[sid] = np.fromiter((e.seq for e in events), dtype=np.int64, count=len(events))
        for sid in plan.dropped:
            self.written.pop(sid, None)


def restore_events(
    head: dict, segments: dict[int, tuple[dict, bytes]], open_events: list[ScoredEvent]
) -> tuple[OrderedDict[str, ScoredEvent], JoinSegments]:
    """The waiting events, in arrival order, from the head's bitmaps, the segments' payloads and the open
    events; and the record of what is written. A segment named in the head but missing is an error."""
    events: OrderedDict[str, ScoredEvent] = OrderedDict()
    tracker = JoinSegments()
    for key, info in sorted(head["segments"].items(), key=lambda kv: int(kv[0])):
        sid = int(key)
        if sid not in segments:
            raise ValueError(f"checkpoint segment {sid} is missing")
        written = decode_events(*segments[sid])
        mask = np.unpackbits(np.frombuffer(base64.b64decode(info["alive"]), dtype=np.uint8))[: info["count"]]
        if len(written) != info["count"]:
            raise ValueError(
                f"checkpoint segment {sid} holds {len(written)} events, the head says {info['count']}"
            )
        tracker.written[sid] = np.fromiter((e.seq for e in written), dtype=np.int64, count=len(written))
        for event, alive in zip(written, mask, strict=True):
            if alive:
                events[event.event_id] = event
    for event in open_events:
        events[event.event_id] = event
    return events, tracker
