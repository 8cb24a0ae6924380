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
open for probes), and the worker warns at start when they are open on an address other
than loopback. A body over STREAMSCORE_INFER_MAX_BYTES is refused unread, a request of more
rows than STREAMSCORE_INFER_MAX_ROWS before any is scored (413), and a request that finds
STREAMSCORE_INFER_MAX_IN_FLIGHT others being answered gets 503 with ``Retry-After`` before
its body is read: so the memory of a burst is bounded by that many requests' bodies, their
answers and a slice of rows each. Each request is counted per endpoint, timed, and its
error counted by reason (``/metrics``).
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version as package_version

import faust
import orjson
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from streams.services.inference.errors import BadRequest, Busy, InferenceError, TooLarge, Unauthorized
from streams.services.inference.predictions import ApiPredictions
from streams.services.inference.protocol import InferenceService
from streams.services.parts import WorkerParts
from streams.settings import Settings
from streams.web.control_views import bearer_matches
from streams.web.inference_metrics import InferenceCollector, InferenceCounters

log = logging.getLogger(__name__)

INLINE_BYTES = 65_536  # larger requests are decoded and scored off the event loop
Work = Callable[..., Awaitable[tuple[dict, int]]]


def register_inference(
    app: faust.App, settings: Settings, parts: WorkerParts, registry: CollectorRegistry
) -> None:
    """The /v2 pages of a score worker, its counters on ``registry``, its prediction writer if asked."""
    service = InferenceService(parts.handler, lambda: all(parts.ready().values()), settings.infer_max_rows)
    counters = InferenceCounters()
    if settings.infer_token is None and not _loopback(settings.web_host):
        log.warning(
            "the /v2 inference endpoints are open to anyone who can reach %s:%d: set STREAMSCORE_INFER_TOKEN "
            "(clients send Authorization: Bearer ...) or STREAMSCORE_WEB_HOST=127.0.0.1",
            settings.web_host,
            settings.web_port,
        )
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
        if counters.in_flight >= settings.infer_max_in_flight:
            busy = f"{counters.in_flight} requests are being answered (STREAMSCORE_INFER_MAX_IN_FLIGHT)"
            raise Busy(f"{busy}: retry in a second")
        counters.in_flight += 1  # on the event loop only: no lock
        body = b""
        try:
            body = await _read_bounded(request, settings.infer_max_bytes)
            header_length = _header_length(request)
            work = (service.infer, name, version, body, header_length, writer is not None)
            if len(body) <= INLINE_BYTES:
                answer = work[0](*work[1:])
            else:
                answer = await asyncio.get_running_loop().run_in_executor(None, *work)
        finally:
            counters.in_flight -= 1
            if counters.in_flight == 0 and len(body) > INLINE_BYTES:
                _give_back_freed_heap()
        counters.rows += answer.rows
        if writer is not None:
            for events, answered in answer.slices:
                writer.write(request.path, answer.received_ms, events, answered)
        return answer.response, 200


def _give_back_freed_heap() -> None:
    """After a burst: what the requests' threads freed goes back to the system.

    A request's rows are many small objects, made on an executor thread; glibc keeps what a
    thread frees in that thread's arena, so without a trim four 4 MB requests left the worker
    ~75 MiB above its idle RSS for good (``tests/integration/test_inference_limits.py``).
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _malloc_trim():  # glibc's, else None
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
                error, headers = None, None
                try:
                    if private and token is not None and not bearer_matches(request, token):
                        raise Unauthorized("a valid bearer token is required (Authorization: Bearer ...)")
                    body, status = await work(request, **params)
                except InferenceError as exc:
                    error, body, status = exc.reason, {"error": str(exc)}, exc.status
                    if isinstance(exc, Busy):
                        headers = {"Retry-After": str(exc.retry_after_s)}
                counters.record(endpoint, time.perf_counter() - started, error)
                return view.bytes(
                    orjson.dumps(body), content_type="application/json", status=status, headers=headers
                )

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
