"""What a person at the command line sees when a command fails: one or two lines, never a traceback.

The first line says what is wrong, the second (when there is one) what to do. ``--debug``
or ``STREAMSCORE_DEBUG=1`` lets the exception through instead, traceback and all.
"""

from __future__ import annotations

import sys

from confluent_kafka import KafkaException
from pydantic import ValidationError

from scoring.errors import StreamscoreError

PROG = "streamscore"


def lines_for(exc: BaseException) -> list[str]:
    """The lines shown for ``exc``: its own message for the project's errors, a summary otherwise."""
    if isinstance(exc, StreamscoreError):
        return str(exc).splitlines() or [type(exc).__name__]
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or exc.title
        return [f"{where}: {first['msg']}"]
    if isinstance(exc, KafkaException):
        error = exc.args[0] if exc.args else None
        detail = error.str() if hasattr(error, "str") else str(exc)
        return [f"Kafka: {detail}", "is the broker up and the address right? `streamscore status` asks it"]
    if isinstance(exc, OSError) and exc.filename is not None:
        return [f"{exc.filename}: {exc.strerror or exc}"]
    if isinstance(exc, OSError):
        return [str(exc)]
    return [
        f"unexpected {type(exc).__name__}: {str(exc)[:300]}",
        "this is a bug; run again with --debug for the traceback and report it",
    ]


def report(exc: BaseException) -> int:
    """Print the lines for ``exc`` on stderr; returns the exit status (the error's own, else 1)."""
    first, *rest = lines_for(exc)
    print(f"{PROG}: error: {first}", file=sys.stderr)
    for line in rest:
        print(f"  {line}", file=sys.stderr)
    return exc.exit_status if isinstance(exc, StreamscoreError) else 1
