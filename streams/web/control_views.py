"""``/control/model``: the model commands over HTTP, behind a bearer token, off unless a token is set.

GET shows what this worker serves and the recorded live state; POST runs a command
(``{"action": "deploy", "version": "2"}``, see ``streams.services.control.commands``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging

import faust
from faust.web import Request, Response, View
from pydantic import SecretStr, ValidationError

from schemas.commands import MODEL_COMMAND
from scoring.errors import StreamscoreError
from streams.kafka.errors import BrokerError
from streams.services.control.commands import execute
from streams.services.control.step import ControlStep
from streams.services.shared.model_updates import live_update
from streams.settings import Settings

log = logging.getLogger(__name__)


def authorized(request: Request, settings: Settings) -> bool:
    return bearer_matches(request, settings.control_token)


def bearer_matches(request: Request, token: SecretStr | None) -> bool:
    """The request carries ``Authorization: Bearer <token>``; never with no token set."""
    if token is None:
        return False
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.encode(), token.get_secret_value().encode()
    )


def register_control_views(app: faust.App, settings: Settings, control: ControlStep) -> None:
    @app.page("/control/model")
    class ModelControl(View):
        async def get(self, request: Request) -> Response:
            if not authorized(request, settings):
                return self.json({"error": "a valid bearer token is required"}, status=401)
            loop = asyncio.get_running_loop()
            update, _ = await loop.run_in_executor(None, live_update, settings, control.handler.bundle.name)
            return self.json(
                {
                    "serving": control.handler.bundle.version,
                    "timeline": control.timeline,
                    "recorded": update.model_dump(mode="json") if update else None,
                }
            )

        async def post(self, request: Request) -> Response:
            if not authorized(request, settings):
                return self.json({"error": "a valid bearer token is required"}, status=401)
            try:
                command = MODEL_COMMAND.validate_json(await request.read())
            except ValidationError as exc:
                return self.json({"error": f"bad request: {_first_error(exc)}"}, status=400)
            loop = asyncio.get_running_loop()
            try:
                update = await loop.run_in_executor(None, execute, settings, command)
            except BrokerError as exc:
                return self.json({"error": str(exc)}, status=503)
            except StreamscoreError as exc:
                return self.json({"error": str(exc)}, status=409)
            log.info("control: %s published over HTTP", update.action)
            return self.json(update.model_dump(mode="json"))


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in error["loc"][1:]) or "body"  # the first part names the union member
    return f"{where}: {error['msg']}"
