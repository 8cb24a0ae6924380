"""A chunk of the label join's waiting events in columns: filled in arrival order, then it only shrinks.

Chunk ``c`` holds the events stored ``c*capacity .. (c+1)*capacity - 1`` (their slots), so
an event's slot says where its columns are. The numbers are numpy arrays, the rows one
float64 matrix; ``alive`` says which events still wait. Chunks count stored events, not
arrivals: events matched on arrival leave no hole, so a chunk is full once ``capacity``
events waited in it, and it is freed once none does (labels and expiry take them).
"""

from __future__ import annotations

import numpy as np

from scoring.feedback.event_columns import EventBatch, Origins, ScoredEvent

CHUNK_EVENTS = 2048


class EventChunk:
    """Up to ``capacity`` waiting events, by position; positions below ``filled`` are written."""

    __slots__ = (
        "alive", "filled", "head", "ids", "live", "offsets", "origins", "rows", "scores", "seqs", "shadow",
        "times",
    )  # fmt: skip

    def __init__(self, width: int, capacity: int = CHUNK_EVENTS, start: int = 0) -> None:
        self.ids: list[str | None] = [None] * capacity  # None once gone, so the id string is freed
        self.seqs = np.zeros(capacity, np.int64)
        self.times = np.zeros(capacity, np.int64)
        self.offsets = np.zeros(capacity, np.int64)
        self.scores = np.zeros(capacity, np.float64)
        self.shadow: np.ndarray | None = None  # made at the first event scored in shadow mode
        self.origins = np.zeros(capacity, np.int32)  # codes in the join's ``Origins``
        self.rows = np.zeros((capacity, width), np.float64)
        self.alive = np.zeros(capacity, bool)
        self.filled = start  # where the next event goes (a chunk made again mid-way starts there)
        self.live = 0
        self.head = start  # no event before it waits

    def append(self, batch: EventBatch, take: list[int], codes: np.ndarray) -> None:
        """Events ``take`` of ``batch`` (origins as the join's ``codes``) at the next positions."""
        start = self.filled
        self.set(start, batch, take, codes)
        self.alive[start : start + len(take)] = True
        self.filled += len(take)
        self.live += len(take)

    def set(self, start: int, batch: EventBatch, take: list[int], codes: np.ndarray) -> None:
        """Write events ``take`` of ``batch`` from position ``start`` on (a waiting event's newer copy
        replaces it in place)."""
        if not take:
            return
        end = start + len(take)
        ids = batch.event_ids
        # a run of events (what a batch without early labels stores) is sliced, not gathered
        run = take[-1] - take[0] == len(take) - 1 and take == list(range(take[0], take[-1] + 1))
        pick: slice | np.ndarray = slice(take[0], take[-1] + 1) if run else np.asarray(take, np.intp)
        self.ids[start:end] = ids[pick] if run else [ids[i] for i in take]
        self.seqs[start:end] = batch.seqs[pick]
        self.times[start:end] = batch.event_times[pick]
        self.offsets[start:end] = batch.offsets[pick]
        self.scores[start:end] = batch.scores[pick]
        self.origins[start:end] = codes[batch.kinds[pick]]
        self.rows[start:end] = batch.rows[pick]
        shadow = batch.shadow_scores[pick]
        if self.shadow is None and not np.isnan(shadow).all():
            self.shadow = np.full(len(self.alive), np.nan)
        if self.shadow is not None:
            self.shadow[start:end] = shadow

    def kill(self, pos: int) -> None:
        self.ids[pos] = None
        self.alive[pos] = False
        self.live -= 1

    def kill_many(self, positions: list[int]) -> None:
        """``kill`` of each of ``positions``."""
        ids = self.ids
        for pos in positions:
            ids[pos] = None
        self.alive[positions] = False
        self.live -= len(positions)

    @property
    def spent(self) -> bool:
        """Full, and nothing waits in it any more: it can be freed."""
        return self.live == 0 and self.filled == len(self.alive)

    def first(self) -> int:
        """The position of the oldest event still waiting (the chunk holds one)."""
        alive, head = self.alive, self.head
        while not alive[head]:
            head += 1
        self.head = head
        return head

    def positions(self) -> np.ndarray:
        """Positions of the events still waiting, in arrival order."""
        return np.flatnonzero(self.alive[: self.filled])

    def event(self, pos: int, origins: Origins) -> ScoredEvent:
        model, topic, partition, shadow_model = origins[self.origins.item(pos)]
        shadow = None if self.shadow is None else self.shadow.item(pos)
        return ScoredEvent(
            model, self.scores.item(pos), self.rows[pos].tobytes(), topic, partition,
            self.offsets.item(pos), str(self.ids[pos]), self.times.item(pos), shadow_model,
            None if shadow is None or shadow != shadow else shadow, self.seqs.item(pos),
        )  # fmt: skip

    def take(self, positions: np.ndarray, origins: Origins) -> EventBatch:
        """The events at ``positions`` (copies)."""
        codes, kinds = np.unique(self.origins[positions], return_inverse=True)
        n = len(positions)
        return EventBatch(
            [str(self.ids[p]) for p in positions.tolist()],
            self.seqs[positions],
            self.times[positions],
            self.offsets[positions],
            self.scores[positions],
            np.full(n, np.nan) if self.shadow is None else self.shadow[positions],
            self.rows[positions],
            [origins[c] for c in codes.tolist()],
            kinds.reshape(n),
        )


def concat(batches: list[EventBatch], width: int) -> EventBatch:
    """One batch of several (their origins merged)."""
    origins = list(dict.fromkeys(o for b in batches for o in b.origins))
    where = {origin: k for k, origin in enumerate(origins)}
    kinds = [np.array([where[o] for o in b.origins], dtype=np.int32)[b.kinds] for b in batches]
    return EventBatch(
        [i for b in batches for i in b.event_ids],
        np.concatenate([b.seqs for b in batches] or [np.zeros(0, np.int64)]),
        np.concatenate([b.event_times for b in batches] or [np.zeros(0, np.int64)]),
        np.concatenate([b.offsets for b in batches] or [np.zeros(0, np.int64)]),
        np.concatenate([b.scores for b in batches] or [np.zeros(0)]),
        np.concatenate([b.shadow_scores for b in batches] or [np.zeros(0)]),
        np.concatenate([b.rows for b in batches] or [np.zeros((0, width))]),
        origins,
        np.concatenate(kinds or [np.zeros(0, np.int32)]),
    )
