"""Streaming change detectors over one stream of values: river's ADWIN and PageHinkley.

The drift path feeds them the scores of a model version, value by value, and puts
what they see into the window's report; the learn path feeds them a serving model's
errors once labels arrive (``scoring.feedback.loop``) and sends each change as a
``ConceptDriftAlert``. Either way a change names the position of the value that
triggered it (topic, partition, offset, event). Score-stream changes do not alert
on their own: on a stationary stream these detectors fire now and then by design.
"""

from __future__ import annotations

import numpy as np
from river import drift as river_drift

from schemas.drift import DetectorChange
from schemas.monitor import MonitorColumns


class StreamDetectors:
    """ADWIN and PageHinkley over one stream of values (scores, or errors once labelled).

    >>> detectors = StreamDetectors("error", "1")
    >>> quiet = [detectors.update_one(0.0, "features", 0, i, f"e{i}", i) for i in range(500)]
    >>> sum(map(len, quiet)), detectors.seen
    (0, 500)
    >>> shifted = [detectors.update_one(1.0, "features", 0, i, f"e{i}", i) for i in range(500, 1000)]
    >>> changes = [c for found in shifted for c in found]
    >>> changes[0].detector, 500 < changes[0].position < 600
    ('adwin', True)
    """

    def __init__(self, stream: str, model_version: str) -> None:
        self.stream = stream
        self.model_version = model_version
        self.adwin = river_drift.ADWIN()
        self.page_hinkley = river_drift.PageHinkley()
        self.seen = 0

    def update(self, values: np.ndarray, columns: MonitorColumns) -> list[tuple[int, DetectorChange]]:
        """Feed values in order; returns (row, change) for every value that triggered a detector."""
        changes: list[tuple[int, DetectorChange]] = []
        adwin, page_hinkley = self.adwin, self.page_hinkley
        for i, value in enumerate(values.tolist()):  # the hot loop of the drift agent: keep it bare
            adwin.update(value)
            page_hinkley.update(value)
            if adwin.drift_detected:
                changes.append((i, self._change("adwin", columns, i, self.seen + i + 1)))
            if page_hinkley.drift_detected:
                changes.append((i, self._change("page_hinkley", columns, i, self.seen + i + 1)))
        self.seen += len(values)
        return changes

    def update_one(
        self, value: float, source_topic: str, partition: int, offset: int, event_id: str, event_time: int
    ) -> list[DetectorChange]:
        """One value at a known position (the error of one labelled event)."""
        self.seen += 1
        changes = []
        for name, detector in (("adwin", self.adwin), ("page_hinkley", self.page_hinkley)):
            detector.update(value)
            if detector.drift_detected:
                changes.append(
                    DetectorChange(
                        detector=name,
                        stream=self.stream,
                        model_version=self.model_version,
                        source_topic=source_topic,
                        partition=partition,
                        offset=offset,
                        event_id=event_id,
                        event_time=event_time,
                        position=self.seen,
                    )
                )
        return changes

    def _change(self, detector: str, columns: MonitorColumns, i: int, position: int) -> DetectorChange:
        return DetectorChange(
            detector=detector,
            stream=self.stream,
            model_version=self.model_version,
            source_topic=columns.source_topic,
            partition=columns.partition,
            offset=int(columns.offsets[i]),
            event_id=str(columns.event_ids[i]),
            event_time=int(columns.event_times[i]),
            position=position,
        )
