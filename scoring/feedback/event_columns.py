"""Monitored events in columns: one ``ScoredEvent``, or many as an ``EventBatch``.

The label join keeps up to ``label_join_max`` events waiting for their labels. As objects
each cost ~760 bytes (a slotted dataclass, its row as ``bytes``, boxed numbers, a dict
entry); in columns an event is its row in a float64 matrix and a few numbers in arrays.
``EventBatch`` is the form the join takes events in and gives them out for a checkpoint;
a ``ScoredEvent`` is made only for an event that leaves the join with its label.

The strings that repeat (model, source topic, shadow model, with the partition) are one
``Origin`` per batch, stored once per join as a small code (``Origins``).

A multiclass model's event keeps every class's probability for its KPIs: its row is its
features followed by the K probabilities, then a shadow challenger's K (NaN when none scored it),
so the join, its chunks and its checkpoints carry them as they carry the features, and a row of
the wrong width is refused as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from schemas.monitor import MonitorColumns

Origin = tuple[str, str, int, str | None]  # model, source topic, partition, shadow model
Payload = tuple[dict[str, list], bytes]  # a checkpoint's form: JSON-ready columns, rows as float64 bytes


@dataclass(frozen=True, slots=True)
class ScoredEvent:
    """A monitored event waiting for its label."""

    model: str  # "name:version"
    score: float
    row: bytes  # the encoded model inputs as float64 bytes (multiclass: then the K probabilities)
    source_topic: str
    partition: int
    offset: int
    event_id: str
    event_time: int
    shadow_model: str | None = None  # a challenger that scored the same event in shadow mode
    shadow_score: float | None = None
    seq: int = 0  # arrival number in the join: checkpoint segments are ranges of it


class Origins:
    """The distinct origins of a join's events, each kept once and referred to by its code."""

    def __init__(self) -> None:
        self._codes: dict[Origin, int] = {}
        self._origins: list[Origin] = []

    def code(self, origin: Origin) -> int:
        found = self._codes.get(origin)
        if found is None:
            found = self._codes[origin] = len(self._origins)
            self._origins.append(origin)
        return found

    def codes(self, origins: Sequence[Origin]) -> np.ndarray:
        return np.array([self.code(o) for o in origins], dtype=np.int32)

    def __getitem__(self, code: int) -> Origin:
        return self._origins[code]


@dataclass(frozen=True, slots=True)
class EventBatch:
    """Events in columns (row i of each is one event); ``origins[kinds[i]]`` is event i's origin."""

    event_ids: list[str]
    seqs: np.ndarray  # int64
    event_times: np.ndarray  # int64
    offsets: np.ndarray  # int64
    scores: np.ndarray  # float64
    shadow_scores: np.ndarray  # float64, NaN where the event has none
    rows: np.ndarray  # events x features, float64
    origins: list[Origin]
    kinds: np.ndarray  # index into origins, per event

    def __len__(self) -> int:
        return len(self.event_ids)

    @classmethod
    def of_monitor(cls, columns: MonitorColumns, model: str, seqs: np.ndarray) -> EventBatch:
        """A monitoring message's events; those a shadow challenger scored have it as their origin.
        A multiclass model's rows get its class probabilities after the features, then the shadow
        challenger's (NaN where there are none)."""
        base: Origin = (model, columns.source_topic, columns.partition, None)
        n = len(columns)
        rows = np.asarray(columns.rows, dtype=np.float64).reshape(n, -1)
        if columns.probabilities is not None:
            probabilities = np.asarray(columns.probabilities, dtype=np.float64).reshape(n, -1)
            shadow_p = columns.shadow_probabilities
            if shadow_p is None:
                shadow_p = np.full(probabilities.shape, np.nan)
            rows = np.hstack([rows, probabilities, np.asarray(shadow_p, dtype=np.float64).reshape(n, -1)])
        shadow = columns.shadow_scores
        if shadow is None:
            origins, kinds, shadow = [base], np.zeros(n, np.int8), np.full(n, np.nan)
        else:
            shadow = np.asarray(shadow, dtype=np.float64)
            origins = [base, (*base[:3], columns.shadow_model)]
            kinds = (~np.isnan(shadow)).astype(np.int8)  # NaN: no shadow score
        return cls(
            [str(i) for i in columns.event_ids],
            seqs,
            np.asarray(columns.event_times, dtype=np.int64),
            np.asarray(columns.offsets, dtype=np.int64),
            np.asarray(columns.scores, dtype=np.float64),
            shadow,
            np.ascontiguousarray(rows),
            origins,
            kinds,
        )

    @classmethod
    def of_events(cls, events: Sequence[ScoredEvent], width: int | None = None) -> EventBatch:
        """``ScoredEvent`` objects in columns; ``width``: features per row, else taken from the first."""
        return cls.of_payload(*to_payload(events), width)

    @classmethod
    def of_payload(cls, columns: dict[str, list], rows: bytes, width: int | None = None) -> EventBatch:
        """Events as a checkpoint holds them (older ones have no ``seq``). Refuses rows that do not
        split into ``width`` float64 per event."""
        n = len(columns["event_id"])
        if width is None:
            width = len(rows) // 8 // n if n else 0
        if len(rows) != 8 * width * n:
            raise ValueError(f"{n} events in {len(rows)} row bytes, not {8 * width} each")
        shadow_models = columns.get("shadow_model") or [None] * n
        keys = list(
            zip(columns["model"], columns["source_topic"], columns["partition"], shadow_models, strict=True)
        )
        origins = list(dict.fromkeys(keys))
        kind = {origin: k for k, origin in enumerate(origins)}
        shadow = columns.get("shadow_score") or [None] * n
        return cls(
            [str(i) for i in columns["event_id"]],
            np.asarray(columns.get("seq") or np.zeros(n), dtype=np.int64),
            np.asarray(columns["event_time"], dtype=np.int64),
            np.asarray(columns["offset"], dtype=np.int64),
            np.asarray(columns["score"], dtype=np.float64),
            np.array([np.nan if s is None else s for s in shadow], dtype=np.float64),
            np.frombuffer(rows, dtype=np.float64).reshape(n, width),
            origins,
            np.array([kind[k] for k in keys], dtype=np.int32),
        )

    def payload(self) -> Payload:
        """The batch as a checkpoint holds it: the columns of ``ScoredEvent`` but the row, and the rows.

        Each origin column is its origins' values picked by ``kinds`` in one numpy call, not a
        Python loop per event (the learn role writes every waiting event once: issue 31)."""
        model, topic, partition, shadow_model = (self._per_event(i) for i in range(4))
        return {
            "model": model,
            "score": self.scores.tolist(),
            "source_topic": topic,
            "partition": partition,
            "offset": self.offsets.tolist(),
            "event_id": list(self.event_ids),
            "event_time": self.event_times.tolist(),
            "shadow_model": shadow_model,
            "shadow_score": _numbers_or_none(self.shadow_scores),
            "seq": self.seqs.tolist(),
        }, np.ascontiguousarray(self.rows, dtype=np.float64).tobytes()

    def _per_event(self, field: int) -> list:
        """Field ``field`` of each event's origin (model, source topic, partition, shadow model)."""
        values = np.empty(len(self.origins), dtype=object)
        values[:] = [origin[field] for origin in self.origins]
        return values[self.kinds].tolist()

    def event(self, i: int) -> ScoredEvent:
        model, topic, partition, shadow_model = self.origins[self.kinds[i]]
        shadow = float(self.shadow_scores[i])
        return ScoredEvent(
            model, float(self.scores[i]), self.rows[i].tobytes(), topic, partition, int(self.offsets[i]),
            self.event_ids[i], int(self.event_times[i]), shadow_model, None if shadow != shadow else shadow,
            int(self.seqs[i]),
        )  # fmt: skip

    def events(self) -> list[ScoredEvent]:
        return [self.event(i) for i in range(len(self))]


def _numbers_or_none(values: np.ndarray) -> list[float | None]:
    """The values as floats, NaN as None (JSON has no NaN)."""
    missing = np.isnan(values)
    if missing.all():
        return [None] * len(values)
    if not missing.any():
        return values.tolist()
    return [None if v != v else v for v in values.tolist()]


def to_payload(events: Sequence[ScoredEvent]) -> Payload:
    """``ScoredEvent`` objects as a checkpoint holds them."""
    names = [name for name in ScoredEvent.__slots__ if name != "row"]
    return {name: [getattr(e, name) for e in events] for name in names}, b"".join(e.row for e in events)
