"""Closing a window: its events against the version's reference, one code path for every caller.

``VersionMonitor`` (one worker sees every partition, ``scoring.drift.windows``) and
``merge_window`` (a window put together from per-partition partials of several workers,
``scoring.drift.merge``) both hand a closed window's events to a ``WindowCloser``. So a
merged window gets, bit for bit, the report and the estimate one monitor gives for the
same events in the same order: the comparison code exists once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from schemas.drift import MULTICLASS_REPORT_VERSION, DetectorChange, DriftReport, PartitionSpan, Thresholds
from schemas.estimation import PerformanceEstimate
from scoring.drift.classes import ClassBaseline, compare_classes
from scoring.drift.compare import (
    DriftThresholds,
    NumericBaseline,
    compare_categorical,
    compare_numeric,
    compare_scores,
    decide_window,
    test_count,
)
from scoring.estimation import PerformanceEstimator
from scoring.model.bundle import ModelBundle
from scoring.model.features import FeatureKind, FeatureSpec
from scoring.model.reference import Reference

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClosedWindow:
    """What closing a window gives: its drift report, and its estimated KPIs if the bundle can estimate."""

    report: DriftReport
    estimate: PerformanceEstimate | None = None


@dataclass(frozen=True)
class WindowEvents:
    """A closed window's events and where they came from, however they were gathered."""

    index: int
    closed_by: str  # "events" or "time"
    rows: np.ndarray  # events x features, encoded model inputs, NaN = missing
    scores: np.ndarray
    start_time: int  # earliest event time in the window, epoch ms
    end_time: int  # latest
    spans: list[PartitionSpan]
    changes: list[DetectorChange]
    probabilities: np.ndarray | None = None  # multiclass: events x classes


def spans_of(ranges: Iterable[tuple[str, int, int, int]]) -> list[PartitionSpan]:
    """Offset ranges (topic, partition, first, last) as one span per topic partition, sorted.

    >>> [(s.partition, s.first_offset, s.last_offset) for s in spans_of([("t", 1, 5, 9), ("t", 0, 3, 4),
    ...                                                                  ("t", 1, 0, 2)])]
    [(0, 3, 4), (1, 0, 9)]
    """
    merged: dict[tuple[str, int], tuple[int, int]] = {}
    for topic, partition, first, last in ranges:
        lo, hi = merged.get((topic, partition), (first, last))
        merged[(topic, partition)] = (min(lo, first), max(hi, last))
    return [
        PartitionSpan(topic=t, partition=p, first_offset=a, last_offset=b)
        for (t, p), (a, b) in sorted(merged.items())
    ]


class WindowCloser:
    """One model version's reference, thresholds and estimator: closes its windows into reports."""

    def __init__(self, bundle: ModelBundle, thresholds: DriftThresholds) -> None:
        self.name = bundle.name
        self.version = bundle.version
        self.task = bundle.task
        self.class_names = bundle.class_names  # multiclass: the classes its windows' probabilities are of
        self.spec: FeatureSpec = bundle.spec
        self.reference: Reference = bundle.reference
        self.numeric = {name: NumericBaseline.of(ref) for name, ref in self.reference.numeric.items()}
        self.score_baseline = NumericBaseline.of(self.reference.score) if self.reference.score else None
        self.classes = ClassBaseline.of(self.reference, bundle.class_names)  # multiclass: its outputs
        self.thresholds = thresholds
        self.tests = test_count(self.spec, len(self.classes.names) if self.classes else 0)
        self.alpha = thresholds.p_value / self.tests  # Bonferroni's level, Holm's for the smallest p-value
        self.estimator = PerformanceEstimator.from_bundle(bundle)
        self.estimate_failures = 0
        # windows closed with no estimate: the bundle has no estimator (``ModelBundle.estimation_note``)
        self.unestimated = 0

    def close(self, window: WindowEvents, created_at: int | None = None) -> ClosedWindow:
        """The window's report and estimate; ``created_at`` (epoch ms) defaults to now."""
        report = self.report(window, int(time.time() * 1000) if created_at is None else created_at)
        return ClosedWindow(report, self.estimate(report, window.rows, window.scores, window.probabilities))

    def estimate(
        self,
        report: DriftReport,
        rows: np.ndarray,
        scores: np.ndarray,
        probabilities: np.ndarray | None = None,
    ) -> PerformanceEstimate | None:
        """The window's estimated KPIs; a failure costs the estimate, never the report."""
        if self.estimator is None:
            self.unestimated += 1
            return None
        try:
            estimate = self.estimator.estimate(
                scores,
                rows,
                probabilities,
                window=report.window,
                start_event_time=report.start_event_time,
                end_event_time=report.end_event_time,
            )
        except Exception:  # the drift report goes out whatever the estimator does
            self.estimate_failures += 1
            log.exception("%s:%s window %d: no performance estimate", self.name, self.version, report.window)
            return None
        return estimate.model_copy(update={"spans": report.spans})

    def report(self, window: WindowEvents, created_at: int) -> DriftReport:
        t, rows = self.thresholds, window.rows
        features = []
        for j, feature in enumerate(self.spec.features):
            if feature.kind is FeatureKind.numeric:
                features.append(compare_numeric(feature.name, self.numeric[feature.name], rows[:, j]))
            else:
                features.append(
                    compare_categorical(
                        feature.name,
                        self.reference.categorical[feature.name],
                        feature.categories,
                        rows[:, j],
                    )
                )
        classes = None
        if self.classes is not None:
            if window.probabilities is None:
                raise ValueError(f"a window of {self.name}:{self.version} without its class probabilities")
            classes = compare_classes(self.classes, window.probabilities)
        prediction = compare_scores(self.score_baseline, window.scores)
        features, prediction, classes = decide_window(features, prediction, classes, t)
        drifted_features = [f.feature for f in features if f.drifted]
        outputs_drifted = classes is not None and bool(classes.drifted_tests())
        return DriftReport(
            model_name=self.name,
            model_version=self.version,
            window=window.index,
            events=len(window.scores),
            closed_by=window.closed_by,
            start_event_time=window.start_time,
            end_event_time=window.end_time,
            spans=window.spans,
            features=features,
            prediction=prediction,
            changes=window.changes,
            thresholds=Thresholds(
                psi=t.psi,
                p_value=t.p_value,
                p_value_per_test=self.alpha,
                tests=self.tests,
                correction=t.correction,
                psi_floor=t.psi_floor,
            ),
            drifted_features=drifted_features,
            drifted=bool(drifted_features) or prediction.drifted or outputs_drifted,
            created_at=created_at,
            classes=classes,
            schema_version=MULTICLASS_REPORT_VERSION if classes is not None else 2,
        )
