"""Counters and latency histograms of the score path, updated once per batch (never per event)."""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from dataclasses import dataclass, field

import numpy as np

from streams.services.score.batch_stats import BatchStats

# seconds, as Prometheus histograms want them
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# an event's age at prediction reaches hours to years when late data, a backlog or a replay is scored
_HOUR, _DAY = 3600.0, 86400.0
EVENT_AGE_BUCKETS = (
    *LATENCY_BUCKETS,
    300.0,
    900.0,
    _HOUR,
    6 * _HOUR,
    _DAY,
    7 * _DAY,
    30 * _DAY,
    365 * _DAY,
    3650 * _DAY,
)


@dataclass
class Histogram:
    """Bucket counts filled a batch at a time with numpy: a Prometheus Histogram per event costs more."""

    bounds: tuple[float, ...]
    counts: np.ndarray = field(init=False)  # one per bound, plus +Inf
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)

    def observe_many(self, values: np.ndarray) -> None:
        if len(values):
            self.counts += np.bincount(
                np.searchsorted(self.bounds, values, side="left"), minlength=len(self.counts)
            )
            self.total += float(values.sum())

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        running = np.cumsum(self.counts)
        return [(str(b), int(c)) for b, c in zip(self.bounds, running, strict=False)] + [
            ("+Inf", int(running[-1]))
        ]


@dataclass
class ScoreCounters:
    consumed: int = 0
    scored: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    busy_seconds: float = 0.0
    started_at: float = field(default_factory=time.time)
    batch_seconds: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    latency_seconds: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    event_age_seconds: Histogram = field(default_factory=lambda: Histogram(EVENT_AGE_BUCKETS))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, stats: BatchStats, seconds: float) -> None:
        with self._lock:
            self.consumed += stats.consumed
            self.scored += stats.scored
            for stage, count in stats.dead_letters.items():
                self.dead_letters[stage] = self.dead_letters.get(stage, 0) + count
            self.batches += 1
            self.busy_seconds += seconds
            self.batch_seconds.observe_many(np.array([seconds]))
            self.latency_seconds.observe_many(np.asarray(stats.latencies_ms, dtype=float) / 1000)
            self.event_age_seconds.observe_many(stats.event_ages_ms / 1000)

    def histograms(self) -> dict[str, tuple[list[tuple[str, int]], float]]:
        with self._lock:
            return {
                name: (h.cumulative(), h.total)
                for name, h in (
                    ("batch_seconds", self.batch_seconds),
                    ("latency_seconds", self.latency_seconds),
                    ("event_age_seconds", self.event_age_seconds),
                )
            }

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
