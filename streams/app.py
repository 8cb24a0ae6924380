"""The assembly of a streamscore worker: the one Faust app, its roles as supervised services, its pages.

Nothing below this module imports it: pages and commands get the parts handed in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import faust

from scoring.bundle import ModelBundle
from scoring.lifecycle import Serving
from streams.kafka.config import faust_broker_options
from streams.kafka.names import groups
from streams.services.agents import register_score_agent
from streams.services.control import ControlStep, run_control, startup_serving
from streams.services.handler import ScoreHandler
from streams.services.loop import LoopStats
from streams.services.parts import WorkerParts
from streams.services.score import ScoreStep, run_score
from streams.services.supervisor import SupervisedService
from streams.services.telemetry import ScoreCounters
from streams.settings import Role, ScorePath, Settings
from streams.web.control_views import register_control_views
from streams.web.dashboard import register_dashboard
from streams.web.metrics import LagCollector, WorkerMetrics, worker_registry
from streams.web.views import register_views

if TYPE_CHECKING:
    from scoring.drift import VersionMonitor  # imported where the drift role runs: scipy and river

log = logging.getLogger(__name__)


def create_service(settings: Settings, bundle: ModelBundle) -> WorkerParts:
    app = faust.App(
        settings.faust_app_id,
        **faust_broker_options(settings),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        producer_acks=-1,
        store="memory://",
        datadir=str(settings.data_dir / settings.faust_app_id),
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        autodiscover=False,
    )
    serving, positions, startup_alert = startup_serving(settings, bundle)
    bundle = serving.champion
    handler = ScoreHandler(settings, bundle)
    handler.serve(serving)
    counters = ScoreCounters()
    metrics = worker_registry(counters, handler)
    parts = WorkerParts(app, handler, counters)
    names = groups(settings)

    def supervised(name: str, work, stats: LoopStats, group: str | None) -> None:
        parts.supervise(SupervisedService(name, work, join_timeout_s=settings.shutdown_timeout_s), stats)
        if group is not None:
            metrics.lag.watch(group, stats)

    # every role follows model-updates: the score role swaps, the drift role watches the new references
    parts.control = ControlStep(
        settings, handler, positions, on_serving=lambda s: _watch(parts, s), startup_alert=startup_alert
    )
    stats = LoopStats()
    supervised("control", run_control(settings, parts.control, stats), stats, None)
    if settings.runs(Role.score) and settings.score_path is ScorePath.batch:
        stats = LoopStats()
        supervised(
            "score", run_score(settings, ScoreStep(handler, counters.record), stats), stats, names.score
        )
    elif settings.runs(Role.score):
        register_score_agent(app, settings, handler, on_batch=counters.record)
        parts.faust_agents = True
    if settings.runs(Role.drift):
        _add_drift(settings, parts, metrics, serving, supervised)
    if settings.runs(Role.learn):
        from streams.services.learn import LearnStep, run_learn

        parts.learn = LearnStep(settings, bundle, on_snapshot=metrics.kpis.record)
        stats = LoopStats()
        supervised("learn", run_learn(settings, parts.learn, stats), stats, names.learn)
    if settings.control_token is not None:
        register_control_views(app, settings, parts.control)
    if parts.faust_agents:
        _sample_faust_lag(app, settings, metrics.lag, names.faust)
    register_views(app, parts, metrics.registry)
    register_dashboard(app, settings, parts, metrics)
    return parts


def _add_drift(
    settings: Settings, parts: WorkerParts, metrics: WorkerMetrics, serving: Serving, supervised
) -> None:
    # imported here: scipy and river cost a score-only worker ~60 MB and half a second
    from scoring.drift import DriftMonitor, DriftThresholds
    from streams.services.drift import DriftStep, register_drift_agent, run_drift

    parts.drift = DriftMonitor(
        DriftThresholds(psi=settings.drift_psi_threshold, p_value=settings.drift_p_value),
        window_events=settings.drift_window_events,
        window_s=settings.drift_window_seconds,
    )
    parts.drift.on_register = lambda version: _estimate_series(metrics, version)
    _watch(parts, serving)
    step = DriftStep(
        settings, parts.drift, on_report=metrics.drift.on_report, on_estimate=metrics.estimates.on_estimate
    )
    parts.drift_counters = step.counters
    if settings.drift_path is ScorePath.batch:
        stats = LoopStats()
        supervised("drift", run_drift(settings, step, stats), stats, groups(settings).drift)
    else:
        register_drift_agent(parts.app, settings, step)
        parts.faust_agents = True


def _estimate_series(metrics: WorkerMetrics, version: VersionMonitor) -> None:
    """/metrics' estimated KPIs of a newly watched version, if its bundle can estimate them."""
    if version.estimator is not None:
        metrics.estimates.watch(version.name, version.version, version.estimator.metric_names)


def _watch(parts: WorkerParts, serving: Serving) -> None:
    """Drift windows for every bundle that serves (their references come with them)."""
    if parts.drift is not None:
        for bundle in (serving.champion, serving.challenger):
            if bundle is not None:
                parts.drift.register(bundle)


def _sample_faust_lag(app: faust.App, settings: Settings, collector: LagCollector, group: str) -> None:
    """Faust's own group (agent paths only) is sampled from the broker every ``lag_interval_s``.

    The service loops report lag from their consumers' statistics instead; the agent paths
    are kept for comparison and pay for the extra reads.
    """
    from streams.kafka.lag import group_lag

    @app.timer(interval=settings.lag_interval_s)
    async def sample_lag() -> None:
        loop = asyncio.get_running_loop()
        try:
            collector.sampled = await loop.run_in_executor(None, group_lag, settings, [group])
            collector.sampled_at_ = time.time()
        except Exception:
            log.warning("sampling consumer lag failed", exc_info=True)
