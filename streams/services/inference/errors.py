"""Why an inference request gets no answer: the protocol's HTTP statuses, each with a reason for /metrics.

The branch of ``scoring.errors.StreamscoreError`` the ``/v2`` endpoints raise::

    InferenceError      a request is not answered; ``status`` (HTTP) and ``reason`` (a metrics label)
    ├── BadRequest      400: the body, an input or a parameter is wrong; the message names it
    ├── Unauthorized    401: the bearer token is missing or wrong (STREAMSCORE_INFER_TOKEN)
    ├── NotFound        404: no such model or version serves here
    ├── TooLarge        413: the body is over STREAMSCORE_INFER_MAX_BYTES, or its rows over _MAX_ROWS
    ├── ModelFailed     500: the model could not score a valid row
    ├── NotReady        503: the worker is not ready (its /ready)
    └── Busy            503: STREAMSCORE_INFER_MAX_IN_FLIGHT requests are being answered (Retry-After)
"""

from __future__ import annotations

from scoring.errors import StreamscoreError


class InferenceError(StreamscoreError):
    status = 500
    reason = "error"


class BadRequest(InferenceError):
    status, reason = 400, "bad_request"


class Unauthorized(InferenceError):
    status, reason = 401, "unauthorized"


class NotFound(InferenceError):
    status, reason = 404, "not_found"


class TooLarge(InferenceError):
    status, reason = 413, "too_large"


class ModelFailed(InferenceError):
    status, reason = 500, "model_failed"


class NotReady(InferenceError):
    status, reason = 503, "not_ready"


class Busy(InferenceError):
    status, reason = 503, "busy"
    retry_after_s = 1


REASONS = tuple(e.reason for e in (BadRequest, Unauthorized, NotFound, TooLarge, ModelFailed, NotReady, Busy))
