"""Tumbling windows per model version, closed by count or event time, each compared when it closes.

A ``DriftMonitor`` takes the columns of monitoring records (rows of encoded model
inputs, scores, positions) in arrival order and keeps, per model version, one open
window. A window closes after ``window_events`` events or once an event's time is
``window_ms`` past the window's first event, whichever comes first; closing
(``scoring.drift.closing``, shared with the merge of per-partition windows) compares it
with that version's reference and gives a ``DriftReport``, and, when the version's
bundle carries an estimator, a ``PerformanceEstimate`` of the same events. Memory is the
open windows (events x features floats each), never the stream.

These windows depend on the order records arrive in, so on how partitions interleave:
several workers get per-partition windows merged instead (``scoring.drift.partitions``).

>>> from scoring.offline.synthetic import numeric_frame
>>> from scoring.offline.training import train_bundle
>>> bundle = train_bundle(numeric_frame(2_000, n_features=4, seed=1), "y", num_trees=5)
>>> monitor = DriftMonitor(window_events=400)
>>> monitor.register(bundle) is not None  # a version not watched before
True
>>> rows = bundle.spec.encode_frame(numeric_frame(1_000, n_features=4, seed=2).drop(columns="y"))
>>> columns = MonitorColumns(bundle.name, bundle.version, "features", 0, range(1_000),
...                          [f"e{i}" for i in range(1_000)], range(1_000), bundle.predict(rows), rows)
>>> closed = monitor.observe_windows(columns)
>>> [(w.report.window, w.report.events, w.estimate.events) for w in closed]
[(0, 400, 400), (1, 400, 400)]
>>> monitor.open_events()
200
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from schemas.drift import DetectorChange, DriftReport, PartitionSpan
from schemas.monitor import MonitorColumns
from scoring.drift.closing import ClosedWindow, WindowCloser, WindowEvents, spans_of
from scoring.drift.compare import DriftThresholds
from scoring.drift.detectors import StreamDetectors
from scoring.estimation import PerformanceEstimator
from scoring.model.bundle import ModelBundle
from scoring.model.features import FeatureSpec

log = logging.getLogger(__name__)

__all__ = ["ClosedWindow", "DriftMonitor", "DriftWindow", "VersionMonitor"]


@dataclass
class DriftWindow:
    """The open window of one model version: chunks of columns, kept until it closes.

    ``first_time`` (its first event's time) starts the time rule's clock; ``start_time``
    and ``end_time`` are the earliest and latest event times in it, as the report says.
    """

    index: int
    chunks: list[MonitorColumns] = field(default_factory=list)
    events: int = 0
    first_time: int | None = None
    start_time: int | None = None
    end_time: int | None = None
    changes: list[DetectorChange] = field(default_factory=list)

    def add(self, columns: MonitorColumns) -> None:
        if not len(columns):
            return
        self.chunks.append(columns)
        self.events += len(columns)
        times = np.asarray(columns.event_times)
        low, high = int(times.min()), int(times.max())
        if self.first_time is None:
            self.first_time = int(times[0])
        self.start_time = low if self.start_time is None else min(self.start_time, low)
        self.end_time = high if self.end_time is None else max(self.end_time, high)

    def spans(self) -> list[PartitionSpan]:
        return spans_of(
            (c.source_topic, c.partition, int(min(c.offsets)), int(max(c.offsets))) for c in self.chunks
        )


class VersionMonitor:
    """Windows and score detectors of one model version; a ``WindowCloser`` closes its windows."""

    def __init__(
        self, bundle: ModelBundle, thresholds: DriftThresholds, window_events: int, window_ms: int
    ) -> None:
        self.name = bundle.name
        self.version = bundle.version
        self.closer = WindowCloser(bundle, thresholds)
        self.window_events = window_events
        self.window_ms = window_ms
        self.detectors = StreamDetectors("score", self.version)
        self.window = DriftWindow(0)

    @property
    def spec(self) -> FeatureSpec:
        return self.closer.spec

    @property
    def estimator(self) -> PerformanceEstimator | None:
        return self.closer.estimator

    @property
    def estimate_failures(self) -> int:
        return self.closer.estimate_failures

    def observe(self, columns: MonitorColumns) -> list[ClosedWindow]:
        """Add events in order; returns the windows they closed."""
        closed: list[ClosedWindow] = []
        changes = self.detectors.update(np.asarray(columns.scores, dtype=float), columns)
        times = np.asarray(columns.event_times, dtype=np.int64)
        start = 0
        while start < len(columns):
            window = self.window
            room = self.window_events - window.events
            stop = min(len(columns), start + room)
            closed_by = "events" if stop - start == room else None
            begin = window.first_time if window.first_time is not None else int(times[start])
            late = np.flatnonzero(times[start:stop] - begin >= self.window_ms)
            if late.size and (window.events or late[0] > 0):
                stop, closed_by = start + int(late[0]), "time"
            window.add(columns.take(start, stop))
            window.changes.extend(change for row, change in changes if start <= row < stop)
            start = stop
            if closed_by is not None:
                closed.append(self._close(closed_by))
        return closed

    def _close(self, closed_by: str) -> ClosedWindow:
        window = self.window
        self.window = DriftWindow(window.index + 1)
        events = WindowEvents(
            index=window.index,
            closed_by=closed_by,
            rows=np.concatenate([c.rows for c in window.chunks]),
            scores=np.concatenate([np.asarray(c.scores, dtype=float) for c in window.chunks]),
            start_time=window.start_time or 0,
            end_time=window.end_time or 0,
            spans=window.spans(),
            changes=window.changes,
            probabilities=_probabilities(window.chunks),
        )
        return self.closer.close(events)


class DriftMonitor:
    """Windows per model version, against the reference of each registered bundle."""

    def __init__(
        self, thresholds: DriftThresholds | None = None, window_events: int = 10_000, window_s: float = 300.0
    ) -> None:
        if window_events < 1 or window_s <= 0:
            raise ValueError("a window needs at least one event and a positive time span")
        self.thresholds = thresholds or DriftThresholds()
        self.window_events = window_events
        self.window_ms = int(window_s * 1000)
        self._versions: dict[tuple[str, str], VersionMonitor] = {}
        self.unknown_version_events = 0

    def register(self, bundle: ModelBundle) -> VersionMonitor | None:
        """Watch a model version (a swap registers the new bundle; its reference comes with it).

        Returns the new version's monitor, None if the version was registered already. A
        bundle with nothing to estimate performance with (written before the calibrator and
        the loss models) gets drift reports only, and the log says so once.
        """
        key = (bundle.name, bundle.version)
        if key in self._versions:
            return None
        monitor = self._versions[key] = VersionMonitor(
            bundle, self.thresholds, self.window_events, self.window_ms
        )
        if monitor.estimator is None:
            log.warning("no performance estimate per drift window: %s", bundle.estimation_note)
        return monitor

    def observe(self, columns: MonitorColumns) -> list[DriftReport]:
        """Add events in order; returns the reports of the windows they closed."""
        return [closed.report for closed in self.observe_windows(columns)]

    def observe_windows(self, columns: MonitorColumns) -> list[ClosedWindow]:
        """As ``observe``, with each closed window's performance estimate beside its report."""
        monitor = self._versions.get((columns.model_name, columns.model_version))
        if monitor is None:
            self.unknown_version_events += len(columns)
            return []
        return monitor.observe(columns)

    def open_events(self) -> int:
        return sum(m.window.events for m in self._versions.values())

    def windows_without_estimate(self) -> int:
        """Windows closed with a report and no performance estimate (the bundle carries no estimator)."""
        return sum(m.closer.unestimated for m in self._versions.values())


def _probabilities(chunks: list[MonitorColumns]) -> np.ndarray | None:
    """A multiclass window's class probabilities (events x classes); None for another model's."""
    if any(c.probabilities is None for c in chunks):
        return None
    return np.concatenate([np.asarray(c.probabilities, dtype=np.float64) for c in chunks])
