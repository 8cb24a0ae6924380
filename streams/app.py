"""The one Faust app of a streamscore worker, its score path and its web views."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faust
from faust.web import Request, Response, View
from mode import Service

from scoring.bundle import ModelBundle
from streams.agent_path import register_score_agent
from streams.batch_path import BatchScoreService
from streams.handler import ScoreHandler
from streams.settings import ScorePath, Settings
from streams.telemetry import ScoreCounters

log = logging.getLogger(__name__)


@dataclass
class WorkerParts:
    """What a worker runs: the Faust app plus the services that live beside it."""

    app: faust.App
    handler: ScoreHandler
    counters: ScoreCounters
    services: list[Service]


def faust_broker_options(settings: Settings) -> dict:
    options: dict = {
        "broker": f"kafka://{settings.kafka_bootstrap}",
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": max(0.1, settings.session_timeout_s / 3),
    }
    if settings.kafka_sasl_mechanism:
        options["broker_credentials"] = faust.SASLCredentials(
            username=settings.kafka_sasl_username or "",
            password=settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else "",
            mechanism=settings.kafka_sasl_mechanism,
        )
    return options


def create_service(settings: Settings, bundle: ModelBundle) -> WorkerParts:
    app = faust.App(
        settings.app_id,
        **faust_broker_options(settings),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        producer_acks=-1,
        store="memory://",
        datadir=str(settings.data_dir / settings.app_id),
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        autodiscover=False,
    )
    handler = ScoreHandler(settings, bundle)
    counters = ScoreCounters()
    services: list[Service] = []
    if settings.score_path is ScorePath.batch:
        batch = BatchScoreService(settings, handler, on_batch=counters.record)
        services.append(batch)
        ready = lambda: bool(batch.assigned)  # noqa: E731
    else:
        register_score_agent(app, settings, handler, on_batch=counters.record)
        ready = lambda: bool(app.consumer.assignment())  # noqa: E731
    _register_views(app, handler, counters, ready)
    return WorkerParts(app, handler, counters, services)


def _register_views(app: faust.App, handler: ScoreHandler, counters: ScoreCounters, ready) -> None:
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
            return self.json(
                {**counters.snapshot(), "model_name": bundle.name, "model_version": bundle.version}
            )
