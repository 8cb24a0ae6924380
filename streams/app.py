"""The assembly of a streamscore worker: the one Faust app, its roles as supervised services, its pages.

Nothing below this module imports it: pages and commands get the parts handed in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import faust

from scoring.lifecycle.decisions import Serving
from scoring.model.bundle import ModelBundle
from streams.kafka.config import faust_broker_options
from streams.kafka.names import groups
from streams.services.control.step import ControlStep, model_sources, run_control, startup_serving
from streams.services.loop.stats import LoopStats
from streams.services.loop.supervisor import SupervisedService
from streams.services.parts import WorkerParts
from streams.services.score.agent import register_score_agent
from streams.services.score.handler import ScoreHandler
from streams.services.score.step import ScoreStep, run_score
from streams.services.score.telemetry import ScoreCounters
from streams.services.shared.monitor_decodes import MonitorDecodes
from streams.services.shared.state_intake import StateRefusal
from streams.settings import DriftWindows, Role, ScorePath, Settings
from streams.web.control_views import register_control_views
from streams.web.dashboard import register_dashboard
from streams.web.inference import register_inference
from streams.web.metrics import LagCollector, RoleCollector, WorkerMetrics, worker_registry
from streams.web.views import register_views

log = logging.getLogger(__name__)


def create_service(settings: Settings, bundle: ModelBundle) -> WorkerParts:
    """The worker's parts: what serves (the recorded state, else ``bundle``), its roles, its pages."""
    sources = model_sources(settings, bundle)
    serving, positions, startup_alert = startup_serving(settings, bundle, sources)
    handler = ScoreHandler(settings, serving.champion)
    handler.serve(serving)
    parts = WorkerParts(_faust_app(settings), handler, ScoreCounters())
    worker = _Assembly(settings, parts)
    readers = sum(settings.runs(role) for role in (Role.drift, Role.learn))
    if readers and (readers > 1 or settings.runs(Role.score)):
        # drift and learn both read monitor: each record decoded once; and the records this
        # worker's score role wrote are taken as its columns, not decoded
        parts.monitor_decodes = MonitorDecodes(readers)
        if settings.runs(Role.score):
            handler.monitor_written = parts.monitor_decodes.wrote
    # every role follows model-updates: the score role swaps, the drift role watches the new references
    parts.control = ControlStep(
        settings,
        handler,
        positions,
        sources,
        on_serving=lambda s: _watch(parts, s, worker.metrics),
        startup_alert=startup_alert,
    )
    worker.supervise("control", lambda stats: run_control(settings, parts.control, stats), None)
    worker.add_score()
    if settings.runs(Role.drift):
        worker.add_drift(serving)
    if settings.runs(Role.learn):
        worker.add_learn(serving.champion)
    worker.add_pages()
    return parts


def _faust_app(settings: Settings) -> faust.App:
    return faust.App(
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


class _Assembly:
    """Wires roles into ``parts``: each a supervised loop with its stats, its lag, its metrics."""

    def __init__(self, settings: Settings, parts: WorkerParts) -> None:
        self.settings, self.parts, self.names = settings, parts, groups(settings)
        # series of the served models, and of the side topics this worker reads, at 0
        self.metrics = worker_registry(parts.counters, parts.handler, settings.role_set, parts.refusals)
        side_topics = {
            Role.drift: [settings.topic_monitor],
            Role.learn: [settings.topic_monitor, settings.topic_labels],
        }
        parts.refusals.start(sorted({t for role in settings.role_set for t in side_topics.get(role, [])}))
        state_topics = set()  # what the roles read of state: refusals per reason (issue 29)
        if settings.runs(Role.drift) and settings.drift_windows is DriftWindows.partitions:
            state_topics |= {settings.topic_drift_partials, settings.topic_checkpoints}
        if settings.runs(Role.learn):
            state_topics.add(settings.topic_checkpoints)
        parts.refusals.start(sorted(state_topics), StateRefusal)

    def supervise(self, name: str, work: Callable[[LoopStats], Callable], group: str | None) -> None:
        stats = LoopStats()
        service = SupervisedService(name, work(stats), join_timeout_s=self.settings.shutdown_timeout_s)
        self.parts.supervise(service, stats)
        if group is not None:
            self.metrics.lag.watch(group, stats)

    def add_score(self) -> None:
        settings, parts = self.settings, self.parts
        if not settings.runs(Role.score):
            return
        if settings.score_path is ScorePath.batch:
            step = ScoreStep(parts.handler, parts.counters.record)
            self.supervise("score", lambda stats: run_score(settings, step, stats), self.names.score)
        else:
            register_score_agent(parts.app, settings, parts.handler, on_batch=parts.counters.record)
            parts.faust_agents = True

    def add_drift(self, serving: Serving) -> None:
        # imported here: scipy and river cost a score-only worker ~60 MB and half a second
        from scoring.drift import DriftMonitor
        from streams.services.drift.agent import register_drift_agent
        from streams.services.drift.sharded import ShardedDriftStep
        from streams.services.drift.step import DriftStep, drift_thresholds, run_drift

        settings, parts = self.settings, self.parts
        parts.drift = DriftMonitor(
            drift_thresholds(settings),
            window_events=settings.drift_window_events,
            window_s=settings.drift_window_seconds,
        )
        sharded = settings.drift_windows is DriftWindows.partitions
        step = (ShardedDriftStep if sharded else DriftStep)(
            settings,
            parts.drift,
            parts.refusals,
            on_report=self.metrics.drift.on_report,
            on_estimate=self.metrics.estimates.on_estimate,
            decodes=parts.monitor_decodes,
        )
        parts.drift_step, parts.drift_counters = step, step.counters
        _watch(parts, serving)
        if settings.drift_path is ScorePath.batch:
            self.supervise("drift", lambda stats: run_drift(settings, step, stats), self.names.drift)
        else:
            register_drift_agent(parts.app, settings, step)
            parts.faust_agents = True

    def add_learn(self, bundle: ModelBundle) -> None:
        from streams.services.learn.step import LearnStep, run_learn

        settings, parts = self.settings, self.parts
        kpis = self.metrics.kpis
        parts.learn = LearnStep(
            settings,
            bundle,
            parts.refusals,
            on_snapshot=kpis.record,
            on_alert=kpis.on_concept_alert,
            decodes=parts.monitor_decodes,
        )
        self.supervise("learn", lambda stats: run_learn(settings, parts.learn, stats), self.names.learn)

    def add_pages(self) -> None:
        settings, parts, metrics = self.settings, self.parts, self.metrics
        if settings.control_token is not None:
            register_control_views(parts.app, settings, parts.control)
        if parts.faust_agents:
            _sample_faust_lag(parts.app, settings, metrics.lag, self.names.faust)
        metrics.registry.register(RoleCollector(parts))
        register_views(parts.app, parts, metrics.registry)
        if settings.runs(Role.score):
            register_inference(parts.app, settings, parts, metrics.registry)
        register_dashboard(parts.app, settings, parts, metrics)


def _watch(parts: WorkerParts, serving: Serving, metrics: WorkerMetrics | None = None) -> None:
    """Drift windows for every bundle that serves (their references come with them), and its counters."""
    if metrics is not None:
        metrics.serve(serving)
    if parts.drift_step is not None:
        for bundle in (serving.champion, serving.challenger):
            if bundle is not None:
                parts.drift_step.register(bundle)


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
