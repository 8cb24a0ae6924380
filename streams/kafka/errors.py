"""The broker branch of the project's error tree (the whole tree: ``scoring.errors``).

::

    StreamscoreError
    └── BrokerError              the broker cannot do what was asked
        ├── BrokerUnreachable    no answer from the bootstrap servers in time
        ├── TopicMissing         a topic the command needs does not exist
        ├── DeliveryFailed       records were not acknowledged by the broker
        ├── CommitRefused        the group moved on (member gone, new generation): offsets not committed
        └── TlsError             no TLS connection: a CA, certificate or key file, or the handshake

``CommitRefused`` is part of a consumer's life (a rebalance, a lost session): the service
loop logs and counts it and goes on; the records are consumed again by whoever owns them.
"""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import KafkaError

from scoring.errors import StreamscoreError


class BrokerError(StreamscoreError):
    """The broker cannot do what was asked."""


class BrokerUnreachable(BrokerError):
    """Its message is two lines: what failed, then what to do."""

    def __init__(self, bootstrap: str, detail: str = "") -> None:
        more = f" ({detail})" if detail else ""
        super().__init__(
            f"no Kafka broker answered at {bootstrap}{more}\n"
            "start one with `streamscore broker`, or point --bootstrap or STREAMSCORE_KAFKA_BOOTSTRAP "
            "at yours"
        )
        self.bootstrap = bootstrap


class TopicMissing(BrokerError):
    def __init__(self, topic: str, bootstrap: str) -> None:
        super().__init__(
            f"topic {topic!r} does not exist on {bootstrap}; a worker creates its topics at start"
        )
        self.topic = topic


class DeliveryFailed(BrokerError):
    """Records were produced but not acknowledged (``undelivered`` of them)."""

    def __init__(self, undelivered: int, topic: str, bootstrap: str, reason: str = "") -> None:
        because = f": {reason}" if reason else ""
        super().__init__(
            f"{undelivered} records were not delivered to {topic} at {bootstrap}{because}\n"
            f"is the broker still up? `streamscore status --bootstrap {bootstrap}` asks it"
        )
        self.undelivered = undelivered


class CommitRefused(BrokerError):
    """The coordinator refused an offset commit because this member or generation is gone."""


class TlsError(BrokerError):
    """No TLS connection to the broker: one line naming the problem and the file (or setting) behind it.

    ``path`` is that file when there is one. The message never holds a password.
    """

    def __init__(self, problem: str, path: Path | None = None) -> None:
        super().__init__(f"TLS: {problem}")
        self.path = path


# A commit refused for these reasons is expected during a rebalance or after a lost
# session: the partitions belong to a new generation (maybe to this same member again).
GROUP_MOVED_ON = frozenset(
    {
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.FENCED_INSTANCE_ID,
        KafkaError._ASSIGNMENT_LOST,
        KafkaError._STATE,
    }
)

# Transient: the broker or the coordinator cannot be reached right now; worth another try.
TRANSIENT = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError._WAIT_COORD,
        KafkaError.NETWORK_EXCEPTION,
    }
)
