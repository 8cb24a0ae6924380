"""What one scored batch amounts to, handed to the telemetry once its outputs are delivered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class BatchStats:
    consumed: int = 0
    scored: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[int] = field(default_factory=list)  # per prediction: Kafka timestamp to scored
    event_times_ms: list[int] = field(default_factory=list)  # per prediction
    scored_at_ms: int = 0

    def add(self, other: BatchStats) -> None:
        """Count ``other`` (a part of the same batch) in these."""
        self.consumed += other.consumed
        self.scored += other.scored
        for stage, count in other.dead_letters.items():
            self.dead_letters[stage] = self.dead_letters.get(stage, 0) + count
        self.latencies_ms += other.latencies_ms
        self.event_times_ms += other.event_times_ms
        self.scored_at_ms = max(self.scored_at_ms, other.scored_at_ms)

    @property
    def event_ages_ms(self) -> np.ndarray:
        """Per prediction: its event_time to when it was scored (computed only when asked)."""
        return self.scored_at_ms - np.asarray(self.event_times_ms, dtype=np.int64)


BatchListener = Callable[[BatchStats, float], None]


BatchListener = Callable[[BatchStats, float], None]
