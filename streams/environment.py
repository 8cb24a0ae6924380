"""The ``STREAMSCORE_*`` environment, read once at the entry point into ``Settings``.

An unknown ``STREAMSCORE_*`` variable is an error naming the closest known one (a typo
such as ``STREAMSCORE_BATCHSIZE`` would otherwise be ignored), and a bad value is one
line naming the variable, the value and what it should hold, not pydantic's report.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping

from pydantic import ValidationError

from scoring.errors import ConfigError
from streams.settings import Settings

# STREAMSCORE_* variables the project reads that are not settings (grep the repository for more)
NOT_SETTINGS = {
    "STREAMSCORE_DEBUG": "1: errors at the command line show their traceback",
    "STREAMSCORE_TEST_BROKER": "kafka-container: the integration tests run on Apache Kafka in Docker",
    "STREAMSCORE_TEST_TIME_SCALE": "a number: the tests multiply their deadlines by it (tests/conditions.py)",
    # read by docker compose when it builds the stack (docker-compose.yml), not by streamscore
    "STREAMSCORE_BIND": "compose: the host address the stack's ports are published on",
    "STREAMSCORE_IMAGE_TAG": "compose: the tag of the image built once for every service",
    "STREAMSCORE_KAFKA_HOST_ADVERTISED": "compose: the address Kafka advertises to clients on the host",
}
_EXPECTED = {  # pydantic error type -> what the variable should hold
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "greater_than": "a number > {gt}",
    "greater_than_equal": "a number >= {ge}",
    "less_than": "a number < {lt}",
    "less_than_equal": "a number <= {le}",
    "enum": "{expected}",
}


def variable(field: str) -> str:
    """The environment variable of a setting: ``batch_size`` -> ``STREAMSCORE_BATCH_SIZE``."""
    return f"STREAMSCORE_{field.upper()}"


def debug_requested() -> bool:
    """``STREAMSCORE_DEBUG=1`` (or true, yes): errors at the command line show their traceback."""
    return os.environ.get("STREAMSCORE_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """An unknown ``STREAMSCORE_*`` variable is a ``ConfigError`` naming the closest known one."""
    known = {variable(name) for name in Settings.model_fields} | NOT_SETTINGS.keys()
    environ = os.environ if environ is None else environ
    for name in sorted(environ):
        upper = name.upper()  # pydantic-settings matches names case-insensitively
        if not upper.startswith("STREAMSCORE_") or upper in known:
            continue
        suffixes = {k.removeprefix("STREAMSCORE_"): k for k in known}
        close = difflib.get_close_matches(
            upper.removeprefix("STREAMSCORE_"), sorted(suffixes), n=1, cutoff=0.7
        )
        guess = f"; did you mean {suffixes[close[0]]}?" if close else ""
        raise ConfigError(
            f"unknown environment variable {name}{guess}\n"
            "every STREAMSCORE_* variable names a setting (docs/reference/settings.md lists them): "
            "fix or unset it"
        )


def load_settings(**overrides: object) -> Settings:
    """The settings of a command: checked environment, then ``STREAMSCORE_*`` overridden by ``overrides``.

    A bad value is a one-line ``ConfigError`` naming the variable (or the setting, for an
    override), the value and what it should be, instead of pydantic's report.
    """
    check_environment()
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, overrides)) from None


def _describe(exc: ValidationError, overrides: Mapping[str, object]) -> str:
    error, more = exc.errors()[0], len(exc.errors()) - 1
    tail = f" (and {more} more)" if more else ""
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:  # a rule across settings (a model validator): its message names them
        return message + tail
    field = str(error["loc"][0])
    secret = field in {"kafka_sasl_password", "kafka_ssl_key_password", "control_token", "state_key"}
    shown = "(hidden)" if secret else repr(str(error["input"])[:60])
    name = field if field in overrides else variable(field)
    expected = _EXPECTED.get(error["type"], "").format(**error.get("ctx", {}))
    default = Settings.model_fields[field].default
    shown_default = str(default).lower() if isinstance(default, bool) else str(default)
    unset = (
        f"; unset it for the default {shown_default}" if default not in (None, "") and name != field else ""
    )
    what = f"expected {expected}" if expected else message
    return f"{name}={shown} is not valid: {what}{unset}{tail}"
