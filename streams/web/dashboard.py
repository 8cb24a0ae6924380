"""The live dashboard of a worker: ``GET /dashboard`` (one HTML page) polling ``GET /dashboard/data``.

A Faust timer samples what the worker already counts, every ``dashboard_interval_s``:
the score counters and latency histograms (rates and percentiles from the change since
the last sample, so the hot path pays nothing), the consumer lag from the last lag
sample. Drift reports, performance estimates and KPI snapshots (with the estimates'
checks) arrive through the metrics' listeners. Each
chart keeps ``dashboard_points`` samples in a ring buffer; nothing is kept on disk.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from typing import TYPE_CHECKING

from schemas.drift import DriftReport
from schemas.feedback import MetricsSnapshot
from schemas.keys import ModelKey, Task
from streams.services.score.handler import ScoreHandler
from streams.services.score.telemetry import ScoreCounters
from streams.settings import Settings
from streams.web.estimate_board import EstimateBoard
from streams.web.metrics import LagCollector, WorkerMetrics

if TYPE_CHECKING:
    import faust

    from streams.services.parts import WorkerParts

QUANTILES = (0.5, 0.95, 0.99)
RATIO_WINDOW_S = 300.0  # dead letters per consumed event over this span, as the Prometheus rule
MAX_ALERTS = 50
MAX_VERSIONS = 100


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile``: ``q`` of cumulative ``(upper bound, count)`` buckets.

    Linear inside the bucket the rank falls in; a rank in the ``+Inf`` bucket gives the
    highest finite bound. None when the buckets hold nothing.

    >>> histogram_quantile(0.5, [(1.0, 2), (2.0, 4), (math.inf, 4)])
    1.0
    >>> histogram_quantile(0.75, [(1.0, 2), (2.0, 4), (math.inf, 4)])
    1.5
    """
    if not 0 < q <= 1:
        raise ValueError(f"quantile must be in (0, 1]; got {q}")
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def bucket_delta(
    now: Sequence[tuple[str, int]], before: Sequence[tuple[str, int]] | None
) -> list[tuple[float, int]]:
    """Cumulative buckets of what was observed between two reads of the same histogram."""
    previous = [count for _, count in before] if before else [0] * len(now)
    return [(float(bound), count - old) for (bound, count), old in zip(now, previous, strict=True)]


def rate(now: float, before: float, seconds: float) -> float:
    """Change per second of a counter; 0 over no time."""
    return (now - before) / seconds if seconds > 0 else 0.0


@dataclass(frozen=True)
class Sample:
    """One point of every time-series chart."""

    at: float
    consumed: int
    scored: int
    dead_letters: int
    events_per_s: float
    predictions_per_s: float
    dead_letters_per_s: float
    p50: float | None  # seconds, Kafka timestamp to prediction, over the last interval
    p95: float | None
    p99: float | None
    lag: int | None  # records, summed over the worker's groups; None before the first lag sample
    lag_seconds: float | None  # the largest


class Dashboard:
    """Ring buffers of the worker's counters, the latest drift and KPIs, model versions and alerts."""

    def __init__(
        self, settings: Settings, counters: ScoreCounters, handler: ScoreHandler, lag: LagCollector
    ) -> None:
        self.settings = settings
        self.counters = counters
        self.handler = handler
        self.lag = lag
        self._samples: deque[Sample] = deque(maxlen=settings.dashboard_points)
        self._histogram: list[tuple[str, int]] | None = None
        self._versions: deque[dict] = deque(maxlen=MAX_VERSIONS)
        self._alerts: deque[dict] = deque(maxlen=MAX_ALERTS)
        self._firing: dict[str, str] = {}
        self._drift: dict | None = None
        self._kpis: dict | None = None
        self._kpi_history: deque[dict] = deque(maxlen=settings.dashboard_points)
        self._lock = threading.Lock()  # KPI snapshots come from the learn thread
        self.estimates = EstimateBoard(settings.dashboard_points, self._alert)
        self._note_version()

    # -- inputs

    def sample(self, now: float | None = None) -> Sample:
        """Take one point: call on a timer, never per event."""
        now = time.time() if now is None else now
        snap = self.counters.snapshot()
        histogram = self.counters.histograms()["latency_seconds"][0]
        window = bucket_delta(histogram, self._histogram)
        self._histogram = histogram
        last = self._samples[-1] if self._samples else None
        seconds = now - last.at if last else now - self.counters.started_at
        consumed, scored, dead = snap["consumed"], snap["scored"], snap["dead_letters_total"]
        p50, p95, p99 = (histogram_quantile(q, window) for q in QUANTILES)
        rows = self.lag.rows if self.lag.sampled_at is not None else None
        sample = Sample(
            at=now,
            consumed=consumed,
            scored=scored,
            dead_letters=dead,
            events_per_s=rate(consumed, last.consumed if last else 0, seconds),
            predictions_per_s=rate(scored, last.scored if last else 0, seconds),
            dead_letters_per_s=rate(dead, last.dead_letters if last else 0, seconds),
            p50=p50,
            p95=p95,
            p99=p99,
            lag=sum(r.lag for r in rows) if rows is not None else None,
            lag_seconds=max((r.lag_seconds or 0.0 for r in rows), default=0.0) if rows is not None else None,
        )
        self._samples.append(sample)
        self._note_version()
        self._check(sample)
        return sample

    def on_drift_report(self, report: DriftReport) -> None:
        self._drift = {
            "model": str(ModelKey(report.model_name, report.model_version)),
            "window": report.window,
            "events": report.events,
            "created_at": report.created_at / 1000,
            "threshold": report.thresholds.psi,
            "features": [{"feature": f.feature, "psi": f.psi, "drifted": f.drifted} for f in report.features],
            "prediction_psi": report.prediction.psi,
        }
        if report.drifted:
            from scoring.drift import alert_for  # loaded already wherever the drift role runs

            alert = alert_for(report)
            self._alert("drift", alert.message if alert else "drift", report.created_at / 1000)

    def on_snapshot(self, snapshot: MetricsSnapshot) -> None:
        overall = [row for row in snapshot.kpis if row.segment_feature == "all"]
        kpis = {
            "champion": snapshot.champion,
            "challenger": snapshot.challenger,
            "primary_metric": snapshot.primary_metric,
            "created_at": snapshot.created_at / 1000,
            "labels": snapshot.labels.model_dump(),
            "models": [{"model": r.model, "count": r.count, "rolling": r.rolling} for r in overall],
        }
        point = {"at": snapshot.created_at / 1000}
        for row in overall:
            role = "challenger" if row.model == snapshot.challenger else "champion"
            if role == "challenger" or row.model == snapshot.champion:
                point[role] = row.rolling.get(snapshot.primary_metric)
        with self._lock:
            self._kpis = kpis
            self._kpi_history.append(point)
        for change in snapshot.changes:
            self._alert(
                "concept_drift",
                f"{change.detector} on the error stream of version {change.model_version}: "
                f"change at event {change.event_id} "
                f"({change.source_topic} [{change.partition}] @{change.offset})",
                snapshot.created_at / 1000,
            )
        champion = next((r for r in overall if r.model == snapshot.champion), None)
        metric = Task(snapshot.task).metric_name(self.settings.alert_kpi_metric)  # multiclass f1: f1_macro
        value = champion.rolling.get(metric) if champion else None
        low = value is not None and value < self.settings.alert_kpi_min
        self._fire(
            "kpi",
            low,
            f"{snapshot.champion} rolling {metric} {value} < {self.settings.alert_kpi_min}",
        )

    # -- derived

    def _note_version(self) -> None:
        """Append to the version timeline when the handler serves a bundle it did not before."""
        bundle, loaded_at = self.handler.bundle, self.handler.loaded_at
        last = self._versions[-1] if self._versions else None
        if last is None or (last["version"], last["loaded_at"]) != (bundle.version, loaded_at):
            self._versions.append({"name": bundle.name, "version": bundle.version, "loaded_at": loaded_at})

    def _check(self, sample: Sample) -> None:
        s = self.settings
        lagging = sample.lag is not None and (
            sample.lag > s.alert_lag_records or (sample.lag_seconds or 0.0) > s.alert_lag_seconds
        )
        self._fire("lag", lagging, f"consumer lag {sample.lag} records, {sample.lag_seconds or 0:.0f} s")
        past = [x for x in self._samples if x.at >= sample.at - RATIO_WINDOW_S]
        consumed = sample.consumed - past[0].consumed
        dead = sample.dead_letters - past[0].dead_letters
        ratio = dead / consumed if consumed else 0.0
        self._fire(
            "dead_letters", ratio > s.alert_dead_letter_ratio, f"{ratio:.1%} of consumed events dead-lettered"
        )

    def _fire(self, kind: str, firing: bool, message: str) -> None:
        """Alert once when a condition starts to hold; keep it listed as firing until it stops."""
        with self._lock:
            if firing and kind not in self._firing:
                self._firing[kind] = message
                self._alerts.append({"at": time.time(), "kind": kind, "message": message})
            elif firing:
                self._firing[kind] = message
            else:
                self._firing.pop(kind, None)

    def _alert(self, kind: str, message: str, at: float) -> None:
        with self._lock:
            self._alerts.append({"at": at, "kind": kind, "message": message})

    # -- output

    def data(self) -> dict:
        """What ``/dashboard/data`` serves: column per series, newest alert first."""
        samples = list(self._samples)
        series = {name: [getattr(x, name) for x in samples] for name in Sample.__dataclass_fields__}
        last = samples[-1] if samples else None
        bundle = self.handler.bundle
        s = self.settings
        with self._lock:
            kpis, kpi_history = self._kpis, list(self._kpi_history)
            alerts, firing = list(reversed(self._alerts)), dict(self._firing)
        return {
            "now": time.time(),
            "interval_s": s.dashboard_interval_s,
            "roles": sorted(r.value for r in s.role_set),
            "model": {"name": bundle.name, "version": bundle.version, "loaded_at": self.handler.loaded_at},
            "versions": list(self._versions),
            "totals": asdict(last) if last else None,
            "series": series,
            "lag": [asdict(r) for r in self.lag.rows],
            "lag_sampled_at": self.lag.sampled_at,
            "drift": self._drift,
            "kpis": kpis,
            "kpi_history": kpi_history,
            "estimates": self.estimates.data(),
            "alerts": alerts,
            "firing": firing,
            "thresholds": {
                "lag_records": s.alert_lag_records,
                "lag_seconds": s.alert_lag_seconds,
                "dead_letter_ratio": s.alert_dead_letter_ratio,
                "psi": s.drift_psi_threshold,
                "kpi_metric": s.alert_kpi_metric,
                "kpi_min": s.alert_kpi_min,
            },
        }


def page() -> str:
    """The dashboard's one HTML file: inline CSS and JS, no network fetch but ``/dashboard/data``."""
    return resources.files("streams.web").joinpath("dashboard.html").read_text(encoding="utf-8")


def register_dashboard(
    app: faust.App, settings: Settings, parts: WorkerParts, metrics: WorkerMetrics
) -> Dashboard:
    """The sampling timer, the two views, and the listeners on drift reports and KPI snapshots."""
    from faust.web import Request, Response, View

    dashboard = Dashboard(settings, parts.counters, parts.handler, metrics.lag)
    metrics.drift.listeners.append(dashboard.on_drift_report)
    metrics.kpis.listeners.append(dashboard.on_snapshot)
    metrics.kpis.listeners.append(dashboard.estimates.on_snapshot)
    metrics.estimates.listeners.append(dashboard.estimates.on_estimate)
    html = page()

    @app.timer(interval=settings.dashboard_interval_s)
    async def sample_dashboard() -> None:
        dashboard.sample()

    @app.page("/dashboard")
    class DashboardPage(View):
        async def get(self, request: Request) -> Response:
            return self.html(html)

    @app.page("/dashboard/data")
    class DashboardData(View):
        async def get(self, request: Request) -> Response:
            return self.json(dashboard.data())

    return dashboard
