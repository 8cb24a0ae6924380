"""Streaming change detectors over one stream of values: the error CUSUM, river's ADWIN and PageHinkley.

The drift path feeds river's ADWIN and PageHinkley the scores of a model version, value
by value, and puts what they see into the window's report: score-stream changes do not
alert on their own (on a stationary stream those detectors fire now and then by design:
``bench/alerts.py`` counts it). The learn path feeds the detectors of ``DetectorConfig``
a serving model's errors once labels arrive (``scoring.feedback.loop``), by default the
one-sided CUSUM of ``scoring.drift.cusum`` alone, tuned to a false alarm per tens of
millions of labels; each change becomes a ``ConceptDriftAlert`` (merged across shards by
``scoring.alerts.concept``). Either way a change names the position of the value that
triggered it (topic, partition, offset, event) and, for the CUSUM, its evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from river import drift as river_drift

from schemas.drift import DetectorChange
from schemas.monitor import MonitorColumns
from scoring.drift.cusum import DEFAULT_THRESHOLD, DEFAULT_WARMUP, ErrorCusum, Kind

DETECTORS = ("cusum", "adwin", "page_hinkley")


@dataclass(frozen=True)
class DetectorConfig:
    """Which detectors watch a stream, and the CUSUM's parameters (settings ``STREAMSCORE_CONCEPT_*``)."""

    names: tuple[str, ...] = ("cusum",)
    kind: Kind = "binary"
    shift: float | None = None  # None: the CUSUM's default for ``kind``
    threshold: float = DEFAULT_THRESHOLD
    warmup: int = DEFAULT_WARMUP

    def __post_init__(self) -> None:
        unknown = sorted(set(self.names) - set(DETECTORS))
        if unknown or not self.names:
            raise ValueError(f"detectors must be some of {', '.join(DETECTORS)}; got {list(self.names)}")


SCORE_DETECTORS = DetectorConfig(names=("adwin", "page_hinkley"), kind="continuous")


class _Watch:
    """One detector: ``update(value) -> bool`` and the evidence of its last alarm (the CUSUM's)."""

    def __init__(self, name: str, config: DetectorConfig) -> None:
        self.name = name
        self.detector: ErrorCusum | river_drift.ADWIN | river_drift.PageHinkley
        if name == "cusum":
            self.detector = ErrorCusum(config.kind, config.shift, config.threshold, config.warmup)
        else:
            self.detector = river_drift.ADWIN() if name == "adwin" else river_drift.PageHinkley()

    def update(self, value: float) -> bool:
        detector = self.detector
        if isinstance(detector, ErrorCusum):
            return detector.update(value)
        detector.update(value)
        return detector.drift_detected

    def rows(self, values: list[float]) -> list[tuple[int, dict]]:
        """The rows of ``values`` that raised an alarm, each with its evidence (the drift agent's hot
        loop: kept bare)."""
        detector, hits = self.detector, []
        if isinstance(detector, ErrorCusum):
            return [(i, self.evidence()) for i, value in enumerate(values) if detector.update(value)]
        update = detector.update
        for i, value in enumerate(values):
            update(value)
            if detector.drift_detected:
                hits.append((i, {}))
        return hits

    def evidence(self) -> dict:
        evidence = getattr(self.detector, "evidence", None)
        if evidence is None:
            return {}
        return {
            "statistic": evidence.statistic,
            "threshold": evidence.threshold,
            "baseline": evidence.baseline,
            "mean_before": evidence.mean_before,
            "since_change": evidence.since_change,
            "mean_after": evidence.mean_after,
        }


class StreamDetectors:
    """The detectors of one stream of values (scores, or errors once labelled) of one model version.

    >>> detectors = StreamDetectors("error", "1", DetectorConfig(warmup=200))
    >>> quiet = [detectors.update_one(0.0, "features", 0, i, f"e{i}", i) for i in range(500)]
    >>> sum(map(len, quiet)), detectors.seen
    (0, 500)
    >>> shifted = [detectors.update_one(1.0, "features", 0, i, f"e{i}", i) for i in range(500, 1000)]
    >>> change = [c for found in shifted for c in found][0]
    >>> change.detector, change.position, change.mean_before, change.mean_after
    ('cusum', 505, 0.0, 1.0)
    """

    def __init__(self, stream: str, model_version: str, config: DetectorConfig | None = None) -> None:
        self.stream = stream
        self.model_version = model_version
        self.config = config or (SCORE_DETECTORS if stream == "score" else DetectorConfig())
        self._watches = [_Watch(name, self.config) for name in self.config.names]
        self.seen = 0

    def fits(self, config: DetectorConfig) -> bool:
        """Whether these detectors are the ones ``config`` asks for (a restored checkpoint may not be)."""
        return getattr(self, "config", None) == config and hasattr(self, "_watches")

    def update(self, values: np.ndarray, columns: MonitorColumns) -> list[tuple[int, DetectorChange]]:
        """Feed values in order; returns (row, change) for every value that triggered a detector."""
        found: list[tuple[int, int, DetectorChange]] = []
        plain = values.tolist()
        for j, watch in enumerate(self._watches):
            for i, evidence in watch.rows(plain):
                found.append((i, j, self._change(watch, columns, i, self.seen + i + 1, evidence)))
        self.seen += len(values)
        return [(i, change) for i, _, change in sorted(found, key=lambda f: f[:2])]

    def update_one(
        self, value: float, source_topic: str, partition: int, offset: int, event_id: str, event_time: int
    ) -> list[DetectorChange]:
        """One value at a known position (the error of one labelled event)."""
        self.seen += 1
        changes = []
        for watch in self._watches:
            if watch.update(value):
                changes.append(
                    DetectorChange(
                        detector=watch.name,
                        stream=self.stream,
                        model_version=self.model_version,
                        source_topic=source_topic,
                        partition=partition,
                        offset=offset,
                        event_id=event_id,
                        event_time=event_time,
                        position=self.seen,
                        **watch.evidence(),
                    )
                )
        return changes

    def _change(
        self, watch: _Watch, columns: MonitorColumns, i: int, position: int, evidence: dict
    ) -> DetectorChange:
        return DetectorChange(
            detector=watch.name,
            stream=self.stream,
            model_version=self.model_version,
            source_topic=columns.source_topic,
            partition=columns.partition,
            offset=int(columns.offsets[i]),
            event_id=str(columns.event_ids[i]),
            event_time=int(columns.event_times[i]),
            position=position,
            **evidence,
        )
