"""The worker's own pages: ``/health``, ``/ready``, ``/stats``, ``/explain``, ``/metrics``.

``/health`` answers 200 while no role has given up (``ok``, or ``degraded`` while one
restarts) and 503 once one has (``failed``): restarting the process is then the remedy.
``/ready`` answers 200 when every role runs with partitions assigned, else 503.
"""

from __future__ import annotations

import faust
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, generate_latest

from scoring.errors import InvalidEvent, UnknownClass
from streams.services.learn.shard import unknown_classes
from streams.services.parts import WorkerParts

# Prometheus text format 0.0.4; aiohttp adds the charset itself and refuses one here
PROMETHEUS_TEXT = "text/plain; version=0.0.4"


def stats_body(parts: WorkerParts) -> dict:
    handler, counters = parts.handler, parts.counters
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
            "ignored": parts.control.ignored,
            "timeline": parts.control.timeline,
        }
    if parts.drift_counters is not None and parts.drift_step is not None:
        body["drift"] = {**vars(parts.drift_counters), **parts.drift_step.stats()}
    if parts.learn is not None:
        body["learn"] = {
            **parts.learn.counters,
            **parts.learn.join_counts(),
            "estimate_checks": parts.learn.estimates.counters,
        }
        if parts.learn.bundle.classes is not None:  # multiclass: labels naming no class, not measured
            body["learn"]["unknown_classes"] = unknown_classes(parts.learn.shards.values())
    body["loops"] = {
        name: {
            "batches": s.batches,
            "records": s.records,
            "commits": vars(s.commits),
            "delivery_failures": s.delivery_failures,
        }
        for name, s in parts.loops.items()
    }
    return body


def register_views(app: faust.App, parts: WorkerParts, registry: CollectorRegistry) -> None:
    handler = parts.handler

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            body = parts.health()
            return self.json(body, status=503 if body["status"] == "failed" else 200)

    @app.page("/ready")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            roles = parts.ready()
            ready = all(roles.values())
            body = {
                "ready": ready,
                "partitions_assigned": ready,
                "roles": roles,
                "model": handler.bundle.version,
            }
            return self.json(body, status=200 if ready else 503)

    @app.page("/stats")
    class Stats(View):
        async def get(self, request: Request) -> Response:
            return self.json(stats_body(parts))

    @app.page("/explain")
    class Explain(View):
        """POST a feature event: its score and every feature's contribution (``?class=NAME``: a
        multiclass model's contributions to that class, not the predicted one)."""

        async def post(self, request: Request) -> Response:
            try:
                return self.json(handler.explain_event(await request.read(), request.query.get("class")))
            except InvalidEvent as exc:
                return self.json({"error": exc.reason, "stage": exc.stage.value}, status=400)
            except UnknownClass as exc:
                return self.json({"error": str(exc)}, status=400)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(generate_latest(registry), content_type=PROMETHEUS_TEXT)
