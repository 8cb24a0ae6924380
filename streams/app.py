"""The one Faust app of a streamscore worker, its score path and its web views."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import faust
from faust.web import Request, Response, View
from mode import Service
from prometheus_client import CollectorRegistry, generate_latest

from scoring.bundle import ModelBundle
from scoring.errors import InvalidEvent
from scoring.lifecycle import Serving
from streams.agent_path import register_score_agent
from streams.batch_path import BatchScoreService
from streams.control import ControlService, startup_serving
from streams.control_views import register_control_views
from streams.dashboard import register_dashboard
from streams.handler import ScoreHandler
from streams.metrics import WorkerMetrics, worker_registry
from streams.settings import Role, ScorePath, Settings

if TYPE_CHECKING:
    from scoring.drift import DriftMonitor
    from streams.drift_agent import DriftCounters
    from streams.learn_service import LearnService
from streams.telemetry import ScoreCounters

log = logging.getLogger(__name__)

# Prometheus text format 0.0.4; aiohttp adds the charset itself and refuses one here
PROMETHEUS_TEXT = "text/plain; version=0.0.4"


@dataclass
class WorkerParts:
    """What a worker runs: the Faust app plus the services that live beside it."""

    app: faust.App
    handler: ScoreHandler
    counters: ScoreCounters
    services: list[Service]
    registry: CollectorRegistry
    drift: DriftMonitor | None = None
    drift_counters: DriftCounters | None = None
    learn: LearnService | None = None
    control: ControlService | None = None


def faust_broker_options(settings: Settings) -> dict:
    options: dict = {
        "broker": f"kafka://{settings.kafka_bootstrap}",
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": max(0.1, settings.session_timeout_s / 3),
    }
    ssl_context = settings.ssl_context()  # None unless the protocol is SSL or SASL_SSL
    if settings.kafka_sasl_mechanism:
        options["broker_credentials"] = faust.SASLCredentials(
            username=settings.kafka_sasl_username or "",
            password=settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else "",
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ssl_context,
        )
    elif ssl_context is not None:
        options["broker_credentials"] = faust.SSLCredentials(ssl_context)
    return options


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
    metrics = worker_registry(counters, handler, settings.role_set)  # series of the served models at 0
    parts = WorkerParts(app, handler, counters, [], metrics.registry)
    # every role follows model-updates: the score role swaps, the drift role watches the new references
    parts.control = ControlService(
        settings,
        handler,
        positions,
        on_serving=lambda s: _watch(parts, s, metrics),
        startup_alert=startup_alert,
    )
    parts.services.append(parts.control)
    checks: list[Callable[[], bool]] = []
    if settings.runs(Role.score) and settings.score_path is ScorePath.batch:
        batch = BatchScoreService(settings, handler, on_batch=counters.record)
        parts.services.append(batch)
        checks.append(lambda: bool(batch.assigned))
    elif settings.runs(Role.score):
        register_score_agent(app, settings, handler, on_batch=counters.record)
        checks.append(lambda: bool(app.consumer.assignment()))
    if settings.runs(Role.drift):
        # imported here: scipy and river cost a score-only worker ~60 MB and half a second
        from scoring.drift import DriftMonitor, DriftThresholds
        from streams.drift_agent import DriftService, DriftStep, register_drift_agent

        parts.drift = DriftMonitor(
            DriftThresholds(psi=settings.drift_psi_threshold, p_value=settings.drift_p_value),
            window_events=settings.drift_window_events,
            window_s=settings.drift_window_seconds,
        )
        _watch(parts, serving)
        step = DriftStep(settings, parts.drift, metrics.drift)
        parts.drift_counters = step.counters
        if settings.drift_path is ScorePath.batch:
            drift_service = DriftService(settings, step)
            parts.services.append(drift_service)
            checks.append(lambda: bool(drift_service.assigned))
        else:
            register_drift_agent(app, settings, step)
            checks.append(lambda: bool(app.consumer.assignment()))
    if settings.runs(Role.learn):
        from streams.learn_service import LearnService

        parts.learn = LearnService(settings, bundle, on_snapshot=metrics.kpis.record)
        parts.services.append(parts.learn)
        checks.append(lambda: bool(parts.learn.assigned))
    ready = lambda: all(check() for check in checks)  # noqa: E731
    if settings.control_token is not None:
        register_control_views(app, settings, parts.control)
    _sample_lag(app, settings, metrics.lag)
    _register_views(app, parts, ready)
    register_dashboard(app, settings, parts, metrics)
    return parts


def _watch(parts: WorkerParts, serving: Serving, metrics: WorkerMetrics | None = None) -> None:
    """Drift windows for every bundle that serves (their references come with them), and its counters."""
    if metrics is not None:
        metrics.serve(serving)
    if parts.drift is not None:
        for bundle in (serving.champion, serving.challenger):
            if bundle is not None:
                parts.drift.register(bundle)


def _sample_lag(app: faust.App, settings: Settings, collector) -> None:
    """Every ``lag_interval_s``, the lag of this worker's consumer groups, read off the event loop."""
    from streams.status import group_lag

    groups = []
    if settings.runs(Role.score) and settings.score_path is ScorePath.batch:
        groups.append(settings.group_id)
    if settings.runs(Role.learn):
        groups.append(f"{settings.faust_app_id}-learn")
    if settings.runs(Role.drift) and settings.drift_path is ScorePath.batch:
        groups.append(f"{settings.faust_app_id}-drift")
    faust_agents = settings.runs(Role.drift) and settings.drift_path is ScorePath.agent
    if faust_agents or (settings.runs(Role.score) and settings.score_path is ScorePath.agent):
        groups.append(settings.faust_app_id)

    @app.timer(interval=settings.lag_interval_s)
    async def sample_lag() -> None:
        loop = asyncio.get_running_loop()
        try:
            collector.rows = await loop.run_in_executor(None, group_lag, settings, groups)
            collector.sampled_at = time.time()
        except Exception:
            log.warning("sampling consumer lag failed", exc_info=True)


def _register_views(app: faust.App, parts: WorkerParts, ready) -> None:
    handler, counters = parts.handler, parts.counters

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    @app.page("/ready")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            assigned = ready()
            body = {"ready": assigned, "partitions_assigned": assigned, "model": handler.bundle.version}
            return self.json(body, status=200 if assigned else 503)

    @app.page("/stats")
    class Stats(View):
        async def get(self, request: Request) -> Response:
            bundle = handler.bundle
            body = {**counters.snapshot(), "model_name": bundle.name, "model_version": bundle.version}
            serving = handler.serving
            if serving.challenger is not None and serving.mode is not None:
                body["challenger"] = {
                    "model_version": serving.challenger.version,
                    "mode": serving.mode.value,
                    "share": serving.share,
                }
            if parts.control is not None:
                body["control"] = {
                    "applied": parts.control.applied,
                    "refused": parts.control.refused,
                    "timeline": parts.control.timeline,
                }
            if parts.drift_counters is not None and parts.drift is not None:
                body["drift"] = {
                    **vars(parts.drift_counters),
                    "open_window_events": parts.drift.open_events(),
                    "unknown_version_events": parts.drift.unknown_version_events,
                }
            if parts.learn is not None:
                body["learn"] = {**parts.learn.counters, **parts.learn.learner.join.counts()}
            return self.json(body)

    @app.page("/explain")
    class Explain(View):
        """POST a feature event: its score and every feature's contribution."""

        async def post(self, request: Request) -> Response:
            try:
                return self.json(handler.explain_event(await request.read()))
            except InvalidEvent as exc:
                return self.json({"error": exc.reason, "stage": exc.stage.value}, status=400)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(generate_latest(parts.registry), content_type=PROMETHEUS_TEXT)
