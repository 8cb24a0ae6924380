"""Labels joined to monitored events: ground truth arrives late, on its own topic.

``LabelJoin`` keeps each monitored event (keyed by event_id) until its label arrives or it
is older than the TTL (in event time, against the newest event seen) or the join is over
its size cap; labels that arrive before their event wait under the same rules. What
expires is counted. Each event gets a sequence number on arrival, so the waiting events can
be checkpointed in segments that, once written, only shrink (``scoring.join_segments``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ScoredEvent:
    """A monitored event waiting for its label."""

    model: str  # "name:version"
    score: float
    row: bytes  # the encoded model inputs as float64 bytes: ~190 bytes, where dicts cost ~2 KB
    source_topic: str
    partition: int
    offset: int
    event_id: str
    event_time: int
    shadow_model: str | None = None  # a challenger that scored the same event in shadow mode
    shadow_score: float | None = None
    seq: int = 0  # arrival number in the join: checkpoint segments are ranges of it


@dataclass(frozen=True, slots=True)
class PendingLabel:
    label: float
    label_time: int


class LabelJoin:
    """Monitored events by event_id, and labels that came first, both bounded."""

    def __init__(self, ttl_ms: int, max_entries: int) -> None:
        self.ttl_ms = ttl_ms
        self.max_entries = max_entries
        self.events: OrderedDict[str, ScoredEvent] = OrderedDict()
        self.labels: OrderedDict[str, PendingLabel] = OrderedDict()
        self.newest_time = 0
        self.next_seq = 0  # the arrival number the next event gets
        self.matched = 0
        self.expired_events = 0
        self.unmatched_labels = 0

    def take_seq(self) -> int:
        """The arrival number for a new event."""
        self.next_seq += 1
        return self.next_seq - 1

    def add_event(
        self, event: ScoredEvent, elsewhere: Callable[[str], PendingLabel | None] | None = None
    ) -> PendingLabel | None:
        """Keep the event; if its label already came (here, or ``elsewhere``), return that label instead."""
        self.newest_time = max(self.newest_time, event.event_time)
        early = self.labels.pop(event.event_id, None)
        if early is None and elsewhere is not None:
            early = elsewhere(event.event_id)
        if early is not None:
            self.matched += 1
            return early
        self.events[event.event_id] = event
        self._expire()
        return None

    def add_label(self, event_id: str, label: float, label_time: int) -> ScoredEvent | None:
        """The event this label belongs to, or None (the label then waits for it)."""
        event = self.events.pop(event_id, None)
        if event is not None:
            self.matched += 1
            return event
        self.labels[event_id] = PendingLabel(label, label_time)
        self._expire()
        return None

    def _expire(self) -> None:
        horizon = self.newest_time - self.ttl_ms
        events, labels = self.events, self.labels
        while events and (len(events) > self.max_entries or next(iter(events.values())).event_time < horizon):
            events.popitem(last=False)
            self.expired_events += 1
        while labels and (len(labels) > self.max_entries or next(iter(labels.values())).label_time < horizon):
            labels.popitem(last=False)
            self.unmatched_labels += 1

    def counts(self) -> dict[str, int]:
        return {
            "matched": self.matched,
            "pending_events": len(self.events),
            "pending_labels": len(self.labels),
            "expired_events": self.expired_events,
            "unmatched_labels": self.unmatched_labels,
        }
