"""Labels joined to monitored events: ground truth arrives late, on its own topic.

``LabelJoin`` keeps each monitored event (keyed by event_id) until its label arrives or it
is older than the TTL (in event time, against the newest event seen) or the join is over
its size cap; labels that arrive before their event wait under the same rules. What
expires is counted. Each event gets a sequence number on arrival, so the waiting events can
be checkpointed in segments that, once written, only shrink (``scoring.feedback.join_segments``).

The waiting events are kept in columns (``scoring.feedback.event_chunk``), found by one dict from
event_id to the slot where they were stored; expiry walks the slots in arrival order.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from scoring.feedback.event_chunk import CHUNK_EVENTS, EventChunk, concat
from scoring.feedback.event_columns import EventBatch, Origins, ScoredEvent

__all__ = ["EventBatch", "LabelJoin", "PendingLabel", "ScoredEvent", "WaitingEvents"]


@dataclass(frozen=True, slots=True)
class PendingLabel:
    label: float | str  # a class name of a multiclass model may be text
    label_time: int


Elsewhere = Callable[[str], PendingLabel | None]  # takes an early label waiting in another join


class LabelJoin:
    """Monitored events by event_id, and labels that came first, both bounded."""

    def __init__(self, ttl_ms: int, max_entries: int, chunk_events: int = CHUNK_EVENTS) -> None:
        self.ttl_ms = ttl_ms
        self.max_entries = max_entries
        self.labels: OrderedDict[str, PendingLabel] = OrderedDict()
        self.newest_time = 0
        self.next_seq = 0  # the arrival number the next event gets
        self.matched = 0
        self.expired_events = 0
        self.unmatched_labels = 0
        self.index: dict[str, int] = {}  # event_id -> slot of each waiting event
        self.chunks: dict[int, EventChunk] = {}  # slot // chunk_events -> chunk, oldest first
        self.origins = Origins()
        self.chunk_events = chunk_events
        self.next_slot = 0
        self.width: int | None = None  # features per row, fixed by the first event stored
        self._horizon: int | None = None  # the TTL's horizon at the last event stored and not yet expired

    @property
    def events(self) -> WaitingEvents:
        """The waiting events as a read-only mapping, in arrival order."""
        return WaitingEvents(self)

    def take_seqs(self, n: int) -> np.ndarray:
        """Arrival numbers for ``n`` new events."""
        self.next_seq += n
        return np.arange(self.next_seq - n, self.next_seq, dtype=np.int64)

    def add_event(self, event: ScoredEvent, elsewhere: Elsewhere | None = None) -> PendingLabel | None:
        """Keep the event; if its label already came (here, or ``elsewhere``), return that label instead."""
        early = self.add_batch(EventBatch.of_events([event], self.width), elsewhere)
        return early[0][1] if early else None

    def add_batch(
        self, batch: EventBatch, elsewhere: Elsewhere | None = None
    ) -> list[tuple[int, PendingLabel]]:
        """``add_event`` of each event of the batch, in order: (index in the batch, label) of those
        whose label came first. Events are written and expired once per batch, with the counts and
        the expiry they would have one by one (what expires is a prefix of the arrivals either way)."""
        if elsewhere is None and self._all_new(batch.event_ids):
            self._store_all(batch)
            return []
        early, stored = [], []
        labels, index = self.labels, self.index
        for i, (event_id, time) in enumerate(zip(batch.event_ids, batch.event_times.tolist(), strict=True)):
            self.newest_time = max(self.newest_time, time)
            label = labels.pop(event_id, None)
            if label is None and elsewhere is not None:
                label = elsewhere(event_id)
            if label is not None:
                self.matched += 1
                early.append((i, label))
                continue
            if event_id in index:  # waits already (a redelivery): the newer copy takes its place
                self._flush(batch, stored)  # as if the events before had come one by one
                stored = []
                if event_id in index:
                    self._replace(index[event_id], batch, i)
                    self._mark_stored()
                    continue
            index[event_id] = self.next_slot + len(stored)
            stored.append(i)
            self._mark_stored()
        self._flush(batch, stored)
        return early

    def _all_new(self, event_ids: list[str]) -> bool:
        """No label waits here for any of ``event_ids``, none of them waits already, none comes twice."""
        ids = set(event_ids)
        if not 0 < len(ids) == len(event_ids):
            return False
        return self.labels.keys().isdisjoint(ids) and self.index.keys().isdisjoint(ids)

    def _store_all(self, batch: EventBatch) -> None:
        """``add_batch`` of events that all wait (``_all_new``): the same slots, writes, counts and
        expiry as event by event, without a Python step per event (the loop was 1.4 µs an event)."""
        n = len(batch)
        self.newest_time = max(self.newest_time, max(batch.event_times.tolist()))
        self.index.update(zip(batch.event_ids, range(self.next_slot, self.next_slot + n), strict=True))
        self._mark_stored()  # the labels expire against the newest time once, as after the last event
        self._flush(batch, list(range(n)))

    def add_label(self, event_id: str, label: float | str, label_time: int) -> ScoredEvent | None:
        """The event this label belongs to, or None (the label then waits for it)."""
        slot = self.index.pop(event_id, None)
        if slot is not None:
            self.matched += 1
            chunk = self._chunk(slot)
            event = chunk.event(self._pos(slot), self.origins)
            self._drop(slot // self.chunk_events, chunk, self._pos(slot))
            return event
        self.labels[event_id] = PendingLabel(label, label_time)
        self._expire_events(self.newest_time - self.ttl_ms)
        self._expire_labels()
        return None

    def load(self, batch: EventBatch, alive: np.ndarray | None = None) -> None:
        """Put back events that waited (a checkpoint's), in arrival order; nothing is counted or expired."""
        take: list[int] = []
        for i in range(len(batch)) if alive is None else np.flatnonzero(alive).tolist():
            event_id = batch.event_ids[i]
            slot = self.index.get(event_id)
            if slot is None:
                self.index[event_id] = self.next_slot + len(take)
                take.append(i)
            elif slot >= self.next_slot:  # twice in what is loaded: the later copy in the earlier's place
                take[slot - self.next_slot] = i
            else:
                self._replace(slot, batch, i)
        self._write(batch, take)

    def counts(self) -> dict[str, int]:
        return {
            "matched": self.matched,
            "pending_events": len(self.index),
            "pending_labels": len(self.labels),
            "expired_events": self.expired_events,
            "unmatched_labels": self.unmatched_labels,
        }

    # -- the waiting events in columns

    def waiting(self) -> tuple[np.ndarray, np.ndarray]:
        """The seq and the slot of every waiting event, in arrival order."""
        seqs, slots = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for cid, chunk in self.chunks.items():
            positions = chunk.positions()
            seqs.append(chunk.seqs[positions])
            slots.append(positions + cid * self.chunk_events)
        return np.concatenate(seqs), np.concatenate(slots)

    def take(self, slots: np.ndarray) -> EventBatch:
        """The waiting events at ``slots`` (ascending), as a batch (copies)."""
        parts = []
        cids = slots // self.chunk_events
        for cid in np.unique(cids).tolist():
            positions = slots[cids == cid] - cid * self.chunk_events
            parts.append(self.chunks[cid].take(positions, self.origins))
        return concat(parts, self.width or 0)

    def event_at(self, slot: int) -> ScoredEvent:
        return self._chunk(slot).event(self._pos(slot), self.origins)

    def _chunk(self, slot: int) -> EventChunk:
        return self.chunks[slot // self.chunk_events]

    def _pos(self, slot: int) -> int:
        return slot % self.chunk_events

    def _codes(self, batch: EventBatch) -> np.ndarray:
        return self.origins.codes(batch.origins)

    def _replace(self, slot: int, batch: EventBatch, i: int) -> None:
        """Event ``i`` of the batch in the place of the waiting event of the same id (it keeps its turn)."""
        self._chunk(slot).set(self._pos(slot), batch, [i], self._codes(batch))

    def _mark_stored(self) -> None:
        self._horizon = self.newest_time - self.ttl_ms  # events expire against it at the next flush
        self._expire_labels()

    def _flush(self, batch: EventBatch, stored: list[int]) -> None:
        """Write the events stored since the last flush, then expire as the last one stored would have."""
        if stored:
            self._write(batch, stored)
        if self._horizon is not None:
            self._expire_events(self._horizon)
            self._horizon = None

    def _write(self, batch: EventBatch, take: list[int]) -> None:
        width = batch.rows.shape[1]
        if self.width is None:
            self.width = width
        elif width != self.width:
            raise ValueError(f"rows of {width} features in a join of rows of {self.width}")
        codes, size = self._codes(batch), self.chunk_events
        while take:
            cid, pos = divmod(self.next_slot, size)
            chunk = self.chunks.get(cid)
            if chunk is None:
                chunk = self.chunks[cid] = EventChunk(self.width, size, pos)
            part, take = take[: size - pos], take[size - pos :]
            chunk.append(batch, part, codes)
            self.next_slot += len(part)

    def _drop(self, cid: int, chunk: EventChunk, pos: int) -> None:
        chunk.kill(pos)
        if chunk.spent:
            del self.chunks[cid]

    def _expire_events(self, horizon: int) -> None:
        """Expire the oldest arrivals while over the cap or older than ``horizon``: a prefix of the
        waiting events, taken a chunk at a time (one at a time was 1 µs an event, and with no labels
        coming every event ends so)."""
        freed = []
        for cid, chunk in self.chunks.items():
            if chunk.live and not self._expire_in(chunk, horizon):
                break
            if chunk.spent:
                freed.append(cid)
        for cid in freed:
            del self.chunks[cid]

    def _expire_in(self, chunk: EventChunk, horizon: int) -> bool:
        """Expire the chunk's part of the prefix; True when all its waiting events went."""
        excess = len(self.index) - self.max_entries
        if excess <= 0 and chunk.times[chunk.first()] >= horizon:
            return False
        positions = chunk.positions()
        keep = chunk.times[positions] >= horizon
        keep[: max(excess, 0)] = False
        stop = int(keep.argmax()) if keep.any() else len(positions)
        gone = positions[:stop].tolist()
        index, ids = self.index, chunk.ids
        for pos in gone:
            del index[ids[pos]]
        chunk.kill_many(gone)
        self.expired_events += stop
        return stop == len(positions)

    def _expire_labels(self) -> None:
        horizon, labels = self.newest_time - self.ttl_ms, self.labels
        while labels and (len(labels) > self.max_entries or next(iter(labels.values())).label_time < horizon):
            labels.popitem(last=False)
            self.unmatched_labels += 1


class WaitingEvents(Mapping[str, ScoredEvent]):
    """A join's waiting events by event_id, in arrival order; each made a ``ScoredEvent`` when read.
    Not to be iterated while the join changes."""

    def __init__(self, join: LabelJoin) -> None:
        self._join = join

    def __getitem__(self, event_id: str) -> ScoredEvent:
        return self._join.event_at(self._join.index[event_id])

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._join.index

    def __len__(self) -> int:
        return len(self._join.index)

    def __iter__(self) -> Iterator[str]:
        for chunk in self._join.chunks.values():
            for pos in chunk.positions().tolist():
                yield str(chunk.ids[pos])
