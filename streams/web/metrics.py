"""Prometheus metrics of a worker, served at ``/metrics``: one registry per worker.

Score-path counters are read from ``ScoreCounters`` at scrape time (``collectors.py``);
drift statistics are gauges set once per closed window, KPIs once per metrics snapshot
(``gauges.py``), estimates once per estimate (``estimates.py``). The series of every model
a worker serves start at 0 (``WorkerMetrics.serve``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from scoring.lifecycle.decisions import Serving
from streams.services.score.handler import ScoreHandler
from streams.services.score.telemetry import ScoreCounters
from streams.services.shared.intake import Refusals
from streams.settings import Role
from streams.web.collectors import (
    LagCollector,
    ModelCollector,
    RefusalCollector,
    RoleCollector,
    ScoreCollector,
)
from streams.web.estimates import EstimateGauges
from streams.web.gauges import DriftGauges, KpiGauges

__all__ = ["LagCollector", "RoleCollector", "WorkerMetrics", "worker_registry"]


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry
    drift: DriftGauges
    kpis: KpiGauges
    lag: LagCollector
    estimates: EstimateGauges
    roles: frozenset[Role] = field(default_factory=lambda: frozenset(Role))

    def serve(self, serving: Serving) -> None:
        """Call at start and at every change of the models served: their counters exist from then on."""
        for bundle in (serving.champion, serving.challenger):
            if bundle is None:
                continue
            if Role.drift in self.roles:
                self.drift.start(bundle.name, bundle.version)
                self.estimates.start(bundle)
            if Role.learn in self.roles:
                self.kpis.start(bundle.version)


def worker_registry(
    counters: ScoreCounters,
    handler: ScoreHandler,
    roles: frozenset[Role] = frozenset(Role),
    refusals: Refusals | None = None,
) -> WorkerMetrics:
    """The registry of a worker running ``roles``; the series of the models it serves start at 0."""
    registry = CollectorRegistry()
    registry.register(ScoreCollector(counters))
    if refusals is not None:
        registry.register(RefusalCollector(refusals))
    registry.register(ModelCollector(handler))
    lag = LagCollector()
    registry.register(lag)
    estimates = EstimateGauges(registry)
    metrics = WorkerMetrics(registry, DriftGauges(registry), KpiGauges(registry), lag, estimates, roles)
    metrics.kpis.listeners.append(estimates.on_snapshot)
    metrics.serve(handler.serving)
    return metrics
