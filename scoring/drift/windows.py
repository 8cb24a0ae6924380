"""Tumbling windows per model version, closed by count or event time, each compared when it closes.

A ``DriftMonitor`` takes the columns of monitoring records (rows of encoded model
inputs, scores, positions) in arrival order and keeps, per model version, one open
window. A window closes after ``window_events`` events or once an event's time is
``window_ms`` past the window's first event, whichever comes first; closing compares
it with that version's reference (``scoring.drift.compare``) and gives a
``DriftReport``, and, when the version's bundle carries an estimator, a
``PerformanceEstimate`` of the same events (``scoring.estimation``). Memory is the
open windows (events x features floats each), never the stream.

>>> from scoring.synthetic import numeric_frame
>>> from scoring.training import train_bundle
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
import time
from dataclasses import dataclass, field

import numpy as np

from schemas.drift import DetectorChange, DriftReport, PartitionSpan, Thresholds
from schemas.estimation import PerformanceEstimate
from schemas.monitor import MonitorColumns
from scoring.bundle import ModelBundle
from scoring.drift.compare import (
    DriftThresholds,
    NumericBaseline,
    compare_categorical,
    compare_numeric,
    compare_scores,
    test_count,
)
from scoring.drift.detectors import StreamDetectors
from scoring.drift_stats import bonferroni_alpha
from scoring.estimation import PerformanceEstimator
from scoring.features import FeatureKind, FeatureSpec
from scoring.reference import Reference

log = logging.getLogger(__name__)


@dataclass
class DriftWindow:
    """The open window of one model version: chunks of columns, kept until it closes."""

    index: int
    chunks: list[MonitorColumns] = field(default_factory=list)
    events: int = 0
    start_time: int | None = None
    end_time: int | None = None
    changes: list[DetectorChange] = field(default_factory=list)

    def add(self, columns: MonitorColumns) -> None:
        if not len(columns):
            return
        self.chunks.append(columns)
        self.events += len(columns)
        times = np.asarray(columns.event_times)
        if self.start_time is None:
            self.start_time = int(times[0])
        high = int(times.max())
        self.end_time = high if self.end_time is None else max(self.end_time, high)

    def spans(self) -> list[PartitionSpan]:
        ranges: dict[tuple[str, int], list[int]] = {}
        for c in self.chunks:
            key = (c.source_topic, c.partition)
            lo, hi = int(min(c.offsets)), int(max(c.offsets))
            if key in ranges:
                ranges[key] = [min(ranges[key][0], lo), max(ranges[key][1], hi)]
            else:
                ranges[key] = [lo, hi]
        return [
            PartitionSpan(topic=t, partition=p, first_offset=a, last_offset=b)
            for (t, p), (a, b) in sorted(ranges.items())
        ]


@dataclass(frozen=True)
class ClosedWindow:
    """What closing a window gives: its drift report, and its estimated KPIs if the bundle can estimate."""

    report: DriftReport
    estimate: PerformanceEstimate | None = None


class VersionMonitor:
    """Windows, score detectors and the performance estimator of one model version."""

    def __init__(
        self, bundle: ModelBundle, thresholds: DriftThresholds, window_events: int, window_ms: int
    ) -> None:
        self.name = bundle.name
        self.version = bundle.version
        self.spec: FeatureSpec = bundle.spec
        self.reference: Reference = bundle.reference
        self.numeric = {name: NumericBaseline.of(ref) for name, ref in self.reference.numeric.items()}
        self.score_baseline = NumericBaseline.of(self.reference.score) if self.reference.score else None
        self.thresholds = thresholds
        self.window_events = window_events
        self.window_ms = window_ms
        self.alpha = bonferroni_alpha(thresholds.p_value, test_count(self.spec))
        self.detectors = StreamDetectors("score", self.version)
        self.estimator = PerformanceEstimator.from_bundle(bundle)
        self.estimate_failures = 0
        self.window = DriftWindow(0)

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
            begin = window.start_time if window.start_time is not None else int(times[start])
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
        rows = np.concatenate([c.rows for c in window.chunks])
        scores = np.concatenate([np.asarray(c.scores, dtype=float) for c in window.chunks])
        report = self.report(window, rows, scores, closed_by)
        return ClosedWindow(report, self._estimate(report, rows, scores))

    def _estimate(
        self, report: DriftReport, rows: np.ndarray, scores: np.ndarray
    ) -> PerformanceEstimate | None:
        """The window's estimated KPIs; a failure costs the estimate, never the report."""
        if self.estimator is None:
            return None
        try:
            estimate = self.estimator.estimate(
                scores,
                rows,
                window=report.window,
                start_event_time=report.start_event_time,
                end_event_time=report.end_event_time,
            )
        except Exception:  # the drift report goes out whatever the estimator does
            self.estimate_failures += 1
            log.exception("%s:%s window %d: no performance estimate", self.name, self.version, report.window)
            return None
        return estimate.model_copy(update={"spans": report.spans})

    def report(
        self, window: DriftWindow, rows: np.ndarray, scores: np.ndarray, closed_by: str
    ) -> DriftReport:
        t = self.thresholds
        features = []
        for j, feature in enumerate(self.spec.features):
            if feature.kind is FeatureKind.numeric:
                features.append(
                    compare_numeric(feature.name, self.numeric[feature.name], rows[:, j], self.alpha, t.psi)
                )
            else:
                features.append(
                    compare_categorical(
                        feature.name,
                        self.reference.categorical[feature.name],
                        feature.categories,
                        rows[:, j],
                        self.alpha,
                        t.psi,
                    )
                )
        prediction = compare_scores(self.score_baseline, scores, self.alpha, t.psi)
        drifted_features = [f.feature for f in features if f.drifted]
        return DriftReport(
            model_name=self.name,
            model_version=self.version,
            window=window.index,
            events=window.events,
            closed_by=closed_by,
            start_event_time=window.start_time or 0,
            end_event_time=window.end_time or 0,
            spans=window.spans(),
            features=features,
            prediction=prediction,
            changes=window.changes,
            thresholds=Thresholds(
                psi=t.psi, p_value=t.p_value, p_value_per_test=self.alpha, tests=test_count(self.spec)
            ),
            drifted_features=drifted_features,
            drifted=bool(drifted_features) or prediction.drifted,
            created_at=int(time.time() * 1000),
        )


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
