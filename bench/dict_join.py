"""The label join as it was before its events went into columns (commit 4008518): one
``ScoredEvent`` object per waiting event in an ``OrderedDict``.

Kept as the yardstick: ``bench/join_memory.py`` measures both, and
``tests/unit/test_label_join.py`` holds the columnar join's counts to this one's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from scoring.feedback.label_join import PendingLabel, ScoredEvent


class DictJoin:
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

    def add_event(
        self, event: ScoredEvent, elsewhere: Callable[[str], PendingLabel | None] | None = None
    ) -> PendingLabel | None:
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
