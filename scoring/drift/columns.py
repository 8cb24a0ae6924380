"""The scored events of one monitoring message, in columns: what every drift and feedback step reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class MonitorColumns:
    """Scored events of one monitoring message, in columns (row i of each is one event).

    >>> columns = MonitorColumns("m", "1", "features", 0, [7, 8, 9], ["a", "b", "c"], [1, 2, 3],
    ...                          np.array([0.1, 0.9, 0.4]), np.zeros((3, 2)))
    >>> part = columns.take(1, 3)
    >>> len(part), list(part.offsets), part.rows.shape
    (2, [8, 9], (2, 2))
    """

    model_name: str
    model_version: str
    source_topic: str
    partition: int
    offsets: Sequence[int]
    event_ids: Sequence[str]
    event_times: Sequence[int]
    scores: np.ndarray
    rows: np.ndarray  # events x features, encoded model inputs, NaN = missing
    shadow_model: str | None = None  # "name:version" of a challenger scoring in shadow mode
    shadow_scores: np.ndarray | None = None  # its score per row, NaN where it failed

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, start: int, stop: int) -> MonitorColumns:
        return MonitorColumns(
            self.model_name,
            self.model_version,
            self.source_topic,
            self.partition,
            self.offsets[start:stop],
            self.event_ids[start:stop],
            self.event_times[start:stop],
            self.scores[start:stop],
            self.rows[start:stop],
            self.shadow_model,
            None if self.shadow_scores is None else self.shadow_scores[start:stop],
        )
