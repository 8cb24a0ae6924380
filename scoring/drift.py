"""Windowed drift detection against a bundle's training reference, plus streaming detectors.

A ``DriftMonitor`` takes the columns of monitoring records (rows of encoded model
inputs, scores, positions) in arrival order and keeps, per model version, one open
tumbling window. A window closes after ``window_events`` events or once an event's
time is ``window_ms`` past the window's first event, whichever comes first; closing
compares it with that version's reference and returns a ``DriftReport``. Memory is
the open windows (events x features floats each), never the stream.

Beside the windows, river's ADWIN and PageHinkley watch the score stream value by
value; a change they detect is reported with the position of the value that
triggered it. Score-stream changes go into the report but do not alert on their
own: on a stationary stream they fire now and then by design. The error stream
(once labels arrive) uses ``ErrorDetectors`` with the same change records.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from river import drift as river_drift

from schemas.drift import (
    DetectorChange,
    DriftAlert,
    DriftReport,
    FeatureDrift,
    FeatureShift,
    PartitionSpan,
    PredictionDrift,
    Thresholds,
)
from scoring.bundle import ModelBundle
from scoring.drift_stats import bonferroni_alpha, chi_square_test, ks_test, psi
from scoring.features import FeatureKind, FeatureSpec
from scoring.reference import CategoricalReference, NumericReference, Reference, bin_counts


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.2
    p_value: float = 0.01  # family-wise, Bonferroni-corrected across the tests of a window


@dataclass(frozen=True, slots=True)
class MonitorColumns:
    """Scored events of one monitoring message, in columns (row i of each is one event)."""

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


def _num(value: float) -> float | None:
    """JSON has no NaN: undefined statistics travel as null."""
    return None if value is None or not math.isfinite(value) else float(value)


# ---------------------------------------------------------------- comparing a window


@dataclass(frozen=True)
class NumericBaseline:
    """A numeric reference as arrays, converted once per model version rather than per window."""

    edges: np.ndarray
    counts: np.ndarray
    sample: np.ndarray
    mean: float
    sd: float
    missing_rate: float

    @classmethod
    def of(cls, ref: NumericReference) -> NumericBaseline:
        sample = np.asarray(ref.sample, dtype=float)
        return cls(
            edges=np.asarray(ref.edges, dtype=float),
            counts=np.asarray(ref.counts, dtype=float),
            sample=sample,
            mean=float(sample.mean()) if sample.size else math.nan,
            sd=float(sample.std(ddof=1)) if sample.size > 1 else math.nan,
            missing_rate=ref.missing / ref.total if ref.total else 0.0,
        )


def compare_numeric(
    name: str, ref: NumericBaseline, values: np.ndarray, alpha: float, psi_max: float
) -> FeatureDrift:
    present = values[~np.isnan(values)]
    window_psi = psi(ref.counts, bin_counts(present, ref.edges))
    ks = ks_test(ref.sample, present)
    mean = float(present.mean()) if present.size else math.nan
    shift = (mean - ref.mean) / ref.sd if ref.sd > 0 else math.nan
    missing = 1 - present.size / values.size if values.size else 0.0
    reasons = _reasons(window_psi, ks.p_value, alpha, psi_max, "ks")
    return FeatureDrift(
        feature=name,
        kind="numeric",
        count=int(present.size),
        psi=_num(window_psi),
        ks_statistic=_num(ks.statistic),
        ks_p_value=_num(ks.p_value),
        missing_rate=missing,
        reference_missing_rate=ref.missing_rate,
        missing_rate_change=missing - ref.missing_rate,
        mean=_num(mean),
        reference_mean=_num(ref.mean),
        mean_shift_sd=_num(shift),
        drifted=bool(reasons),
        reasons=reasons,
    )


def compare_categorical(
    name: str,
    ref: CategoricalReference,
    categories: list[str],
    codes: np.ndarray,
    alpha: float,
    psi_max: float,
) -> FeatureDrift:
    present = codes[~np.isnan(codes)].astype(int)
    # one column per known category plus one for categories unseen in training
    window_counts = np.bincount(present, minlength=len(categories) + 1)[: len(categories) + 1]
    ref_counts = np.array([ref.frequencies.get(c, 0) for c in categories] + [0], dtype=float)
    window_psi = psi(ref_counts, window_counts)
    chi2 = chi_square_test(ref_counts, window_counts)
    missing = 1 - present.size / codes.size if codes.size else 0.0
    ref_missing = ref.missing / ref.total if ref.total else 0.0
    reasons = _reasons(window_psi, chi2.p_value, alpha, psi_max, "chi2")
    return FeatureDrift(
        feature=name,
        kind="categorical",
        count=int(present.size),
        psi=_num(window_psi),
        chi2_statistic=_num(chi2.statistic),
        chi2_p_value=_num(chi2.p_value),
        missing_rate=missing,
        reference_missing_rate=ref_missing,
        missing_rate_change=missing - ref_missing,
        drifted=bool(reasons),
        reasons=reasons,
    )


def compare_scores(
    ref: NumericBaseline | None, scores: np.ndarray, alpha: float, psi_max: float
) -> PredictionDrift:
    if ref is None:
        return PredictionDrift(
            psi=None,
            ks_statistic=None,
            ks_p_value=None,
            mean=_num(scores.mean()),
            reference_mean=None,
            drifted=False,
        )
    window_psi = psi(ref.counts, bin_counts(scores, ref.edges))
    ks = ks_test(ref.sample, scores)
    reasons = _reasons(window_psi, ks.p_value, alpha, psi_max, "ks")
    return PredictionDrift(
        psi=_num(window_psi),
        ks_statistic=_num(ks.statistic),
        ks_p_value=_num(ks.p_value),
        mean=_num(float(scores.mean())) if scores.size else None,
        reference_mean=_num(ref.mean),
        drifted=bool(reasons),
        reasons=reasons,
    )


def _reasons(window_psi: float, p_value: float, alpha: float, psi_max: float, test: str) -> list[str]:
    reasons = []
    if math.isfinite(window_psi) and window_psi >= psi_max:
        reasons.append(f"psi {window_psi:.3f} >= {psi_max}")
    if math.isfinite(p_value) and p_value < alpha:
        reasons.append(f"{test} p-value {p_value:.3g} < {alpha:.3g}")
    return reasons


def test_count(spec: FeatureSpec) -> int:
    """Tests in one window's family: one per feature plus the score."""
    return len(spec.features) + 1


# ---------------------------------------------------------------- detectors


class StreamDetectors:
    """ADWIN and PageHinkley over one stream of values (scores, or errors once labelled)."""

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


# ---------------------------------------------------------------- windows


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


class VersionMonitor:
    """Windows and score detectors of one model version."""

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
        self.window = DriftWindow(0)

    def observe(self, columns: MonitorColumns) -> list[DriftReport]:
        """Add events in order; returns the reports of the windows they closed."""
        reports: list[DriftReport] = []
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
                reports.append(self._close(closed_by))
        return reports

    def _close(self, closed_by: str) -> DriftReport:
        window = self.window
        self.window = DriftWindow(window.index + 1)
        rows = np.concatenate([c.rows for c in window.chunks])
        scores = np.concatenate([np.asarray(c.scores, dtype=float) for c in window.chunks])
        return self.report(window, rows, scores, closed_by)

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

    def register(self, bundle: ModelBundle) -> None:
        """Watch a model version (a swap registers the new bundle; its reference comes with it)."""
        key = (bundle.name, bundle.version)
        if key not in self._versions:
            self._versions[key] = VersionMonitor(bundle, self.thresholds, self.window_events, self.window_ms)

    def observe(self, columns: MonitorColumns) -> list[DriftReport]:
        monitor = self._versions.get((columns.model_name, columns.model_version))
        if monitor is None:
            self.unknown_version_events += len(columns)
            return []
        return monitor.observe(columns)

    def open_events(self) -> int:
        return sum(m.window.events for m in self._versions.values())


def alert_for(report: DriftReport) -> DriftAlert | None:
    """The alert a report raises, or None when no threshold was crossed."""
    if not report.drifted:
        return None
    shifts = [
        FeatureShift(
            feature=f.feature,
            psi=f.psi,
            p_value=f.ks_p_value if f.kind == "numeric" else f.chi2_p_value,
            statistic=f.ks_statistic if f.kind == "numeric" else f.chi2_statistic,
            mean_shift_sd=f.mean_shift_sd,
            missing_rate_change=f.missing_rate_change,
            reasons=f.reasons,
        )
        for f in report.features
        if f.drifted
    ]
    parts = [f"{s.feature} ({'; '.join(s.reasons)})" for s in shifts]
    if report.prediction.drifted:
        parts.append(f"prediction ({'; '.join(report.prediction.reasons)})")
    return DriftAlert(
        model_name=report.model_name,
        model_version=report.model_version,
        window=report.window,
        start_event_time=report.start_event_time,
        end_event_time=report.end_event_time,
        features=shifts,
        prediction_drifted=report.prediction.drifted,
        changes=report.changes,
        message=f"{report.model_name} {report.model_version} window {report.window}: drift in "
        + ", ".join(parts),
        created_at=report.created_at,
    )
