"""``/v2``: the Open Inference Protocol's REST endpoints (KServe, MLServer, Triton), on score workers.

::

    GET  /v2                                          server metadata
    GET  /v2/health/live                              200 while no role gave up (as /health)
    GET  /v2/health/ready                             200 when the worker is ready (as /ready), else 503
    GET  /v2/models/{name}[/versions/{version}]       inputs, outputs, versions serving
    GET  /v2/models/{name}[/versions/{version}]/ready
    POST /v2/models/{name}[/versions/{version}]/infer

Requests are scored by the stream's own path (``streams.services.inference.protocol``). Errors
answer ``{"error": "..."}`` with the protocol's status (``inference_errors``). The model
endpoints take a bearer token when STREAMSCORE_INFER_TOKEN is set (the health ones stay
open for probes); a body over STREAMSCORE_INFER_MAX_BYTES is refused unread. Each
request is counted per endpoint, timed, and its error counted by reason (``/metrics``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version as package_version

import faust
import orjson
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from streams.services.inference.errors import BadRequest, InferenceError, TooLarge, Unauthorized
from streams.services.inference.predictions import ApiPredictions
from streams.services.inference.protocol import InferenceService
from streams.services.parts import WorkerParts
from streams.settings import Settings
from streams.web.control_views import bearer_matches
from streams.web.inference_metrics import InferenceCollector, InferenceCounters

INLINE_BYTES = 65_536  # larger requests are decoded and scored off the event loop
Work = Callable[..., Awaitable[tuple[dict, int]]]


def register_inference(
    app: faust.App, settings: Settings, parts: WorkerParts, registry: CollectorRegistry
) -> None:
    """The /v2 pages of a score worker, its counters on ``registry``, its prediction writer if asked."""
    service = InferenceService(parts.handler, lambda: all(parts.ready().values()))
    counters = InferenceCounters()
    writer = ApiPredictions(settings) if settings.infer_predictions else None
    if writer is not None:
        parts.services.append(writer)
    registry.register(InferenceCollector(counters, writer))
    routes = _Routes(app, settings, counters)

    @routes.get("/v2", "health")
    async def server_metadata(request: Request) -> tuple[dict, int]:
        return {"name": "streamscore", "version": package_version("streamscore"), "extensions": []}, 200

    @routes.get("/v2/health/live", "health")
    async def live(request: Request) -> tuple[dict, int]:
        alive = parts.health()["status"] != "failed"
        return {"live": alive}, 200 if alive else 503

    @routes.get("/v2/health/ready", "health")
    async def ready(request: Request) -> tuple[dict, int]:
        is_ready = service.ready()
        return {"ready": is_ready}, 200 if is_ready else 503

    @routes.get("/v2/models/{name}", "metadata", private=True)
    @routes.get("/v2/models/{name}/versions/{version}", "metadata", private=True)
    async def metadata(request: Request, name: str, version: str | None = None) -> tuple[dict, int]:
        return service.metadata(name, version), 200

    @routes.get("/v2/models/{name}/ready", "ready", private=True)
    @routes.get("/v2/models/{name}/versions/{version}/ready", "ready", private=True)
    async def model_ready(request: Request, name: str, version: str | None = None) -> tuple[dict, int]:
        is_ready = service.model_ready(name, version)
        return {"name": name, "ready": is_ready}, 200 if is_ready else 503

    @routes.post("/v2/models/{name}/infer", "infer")
    @routes.post("/v2/models/{name}/versions/{version}/infer", "infer")
    async def infer(request: Request, name: str, version: str | None = None) -> tuple[dict, int]:
        service.admit(name, version)  # 404 or 503 before reading a body
        body = await _read_bounded(request, settings.infer_max_bytes)
        header_length = _header_length(request)
        if len(body) <= INLINE_BYTES:
            answer = service.infer(name, version, body, header_length)
        else:
            loop = asyncio.get_running_loop()
            answer = await loop.run_in_executor(None, service.infer, name, version, body, header_length)
        counters.rows += len(answer.events)
        if writer is not None:
            writer.write(request.path, answer.received_ms, answer.events, answer.answered)
        return answer.response, 200


class _Routes:
    """Registers one page per path; every answer is timed and counted, every error is JSON."""

    def __init__(self, app: faust.App, settings: Settings, counters: InferenceCounters) -> None:
        self.app, self.settings, self.counters = app, settings, counters

    def get(self, path: str, endpoint: str, private: bool = False) -> Callable[[Work], Work]:
        return self._register("get", path, endpoint, private)

    def post(self, path: str, endpoint: str) -> Callable[[Work], Work]:
        return self._register("post", path, endpoint, True)

    def _register(self, method: str, path: str, endpoint: str, private: bool) -> Callable[[Work], Work]:
        counters, token = self.counters, self.settings.infer_token

        def decorate(work: Work) -> Work:
            async def answer(view: View, request: Request, **params: str) -> Response:
                started = time.perf_counter()
                error = None
                try:
                    if private and token is not None and not bearer_matches(request, token):
                        raise Unauthorized("a valid bearer token is required (Authorization: Bearer ...)")
                    body, status = await work(request, **params)
                except InferenceError as exc:
                    error, body, status = exc.reason, {"error": str(exc)}, exc.status
                counters.record(endpoint, time.perf_counter() - started, error)
                return view.bytes(orjson.dumps(body), content_type="application/json", status=status)

            name = "v2" + path.replace("/", "_").replace("{", "").replace("}", "")
            self.app.page(path, name=name)(type(name, (View,), {method: answer}))
            return work

        return decorate


async def _read_bounded(request: Request, limit: int) -> bytes:
    """The body, or ``TooLarge`` as soon as it is known to pass ``limit`` (aiohttp's own cap is not used)."""
    too_large = TooLarge(f"the request is over STREAMSCORE_INFER_MAX_BYTES ({limit} bytes)")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.content.iter_chunked(65_536):
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _header_length(request: Request) -> int | None:
    value = request.headers.get("Inference-Header-Content-Length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"Inference-Header-Content-Length {value[:20]!r} is not an integer") from None
