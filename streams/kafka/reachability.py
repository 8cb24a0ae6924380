"""Is a broker there? One short metadata request before a command starts its real work.

Without it a command against a wrong address waits out librdkafka's own timeouts (16 s
for a worker's topic check, 30 s for a producer's flush) and ends in a traceback; with it
the command fails within ``timeout_s`` naming the address it tried and librdkafka's reason
(connection refused, name not resolved, TLS handshake failed, ...).
"""

from __future__ import annotations

import logging
import re

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streams.kafka.config import admin_config
from streams.kafka.errors import BrokerUnreachable
from streams.settings import Settings

# "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)"
_REASON = re.compile(r"^(?:.*?/bootstrap: )?(?P<reason>.*?)(?: \(after \d+ms in state \w+.*\))?$")


class _LastError(logging.Handler):
    """Keeps librdkafka's last error line instead of printing every refused connection."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.last = message.split("]: ", 1)[-1]  # drop "FAIL [rdkafka#producer-1] [thrd:...]"


_log = logging.getLogger("streamscore.kafka.reachability")
_log.propagate = False


def check_reachable(settings: Settings, timeout_s: float = 5.0) -> None:
    """Return once the bootstrap servers answer a metadata request; else raise ``BrokerUnreachable``."""
    errors = _LastError()
    _log.addHandler(errors)
    admin = AdminClient(admin_config(settings), logger=_log)
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        admin.poll(0)  # delivers the queued log lines to the handler
        match = _REASON.match(errors.last)
        reason = match.group("reason") if match and errors.last else exc.args[0].str()
        raise BrokerUnreachable(settings.kafka_bootstrap, f"{reason}; waited {timeout_s:g} s") from None
    finally:
        _log.removeHandler(errors)
