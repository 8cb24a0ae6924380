"""Counters of the score path, updated once per batch (never per event)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from streams.handler import BatchStats


@dataclass
class ScoreCounters:
    consumed: int = 0
    scored: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    busy_seconds: float = 0.0
    started_at: float = field(default_factory=time.time)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, stats: BatchStats, seconds: float) -> None:
        with self._lock:
            self.consumed += stats.consumed
            self.scored += stats.scored
            for stage, count in stats.dead_letters.items():
                self.dead_letters[stage] = self.dead_letters.get(stage, 0) + count
            self.batches += 1
            self.busy_seconds += seconds

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "consumed": self.consumed,
                "scored": self.scored,
                "dead_letters": dict(self.dead_letters),
                "dead_letters_total": sum(self.dead_letters.values()),
                "batches": self.batches,
                "busy_seconds": round(self.busy_seconds, 3),
                "uptime_seconds": round(time.time() - self.started_at, 3),
            }
