"""In-memory stand-ins for confluent-kafka's Consumer and Producer, to drive a service loop in a unit test.

They do what the loop relies on and record what it did: offsets committed, seeks, records
produced. A test scripts the consumer's life as a list of turns: each turn is a batch to
return from ``consume`` and, optionally, something to happen during that call (a rebalance
callback, an error to raise from the next commit).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streams.services.loop.service_loop import ClientCallbacks

TOPIC = "features"


@dataclass
class FakeRecord:
    topic_: str
    partition_: int
    offset_: int
    value_: bytes | None = b"{}"
    key_: bytes | None = None
    timestamp_ms: int = 1_700_000_000_000

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_

    def headers(self) -> list | None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, self.timestamp_ms)

    def error(self) -> None:
        return None


def records(partition: int, first: int, n: int, topic: str = TOPIC) -> list[FakeRecord]:
    return [
        FakeRecord(topic, partition, first + i, value_=f'{{"i": {first + i}}}'.encode()) for i in range(n)
    ]


def kafka_error(code: int) -> KafkaException:
    return KafkaException(KafkaError(code))


@dataclass
class Turn:
    """One call to ``consume``: ``during`` runs inside it (as librdkafka runs callbacks), then ``batch``."""

    batch: list[FakeRecord] = field(default_factory=list)
    during: Callable[[FakeConsumer], None] | None = None


class FakeConsumer:
    def __init__(self, turns: list[Turn], stopping: threading.Event, partitions: list[int] = (0, 1)) -> None:
        self.turns = list(turns)
        self.stopping = stopping
        self.partitions = [TopicPartition(TOPIC, p) for p in partitions]
        self.commits: list[tuple[list[tuple[str, int, int]], bool]] = []
        self.seeks: list[tuple[str, int, int]] = []
        self.commit_errors: list[KafkaException] = []  # raised by the next commits, in order
        self.closed = False
        self.callbacks: dict[str, Callable] = {}
        self._assigned = False

    # the loop's side

    def subscribe(self, topics, on_assign=None, on_revoke=None, on_lost=None) -> None:
        self.callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}

    def assign(self, partitions) -> None:
        pass

    def consume(self, num_messages: int, timeout: float) -> list[FakeRecord]:
        if not self._assigned:
            self._assigned = True
            self.callbacks["assign"](self, list(self.partitions))
        if not self.turns:
            self.stopping.set()
            return []
        turn = self.turns[0]
        if turn.during is not None:
            turn.during(self)
            turn.during = None
        taken, rest = turn.batch[:num_messages], turn.batch[num_messages:]
        if rest:
            turn.batch = rest
        else:
            self.turns.pop(0)
        return list(taken)

    def poll(self, timeout: float) -> FakeRecord | None:
        """One record: the first of the next turn's batch (the rest stays for ``consume``).

        With no turn left it returns nothing; the next ``consume`` then ends the test's run.
        """
        if not self.turns:
            return None
        batch = self.consume(1, timeout)
        return batch[0] if batch else None

    def commit(self, offsets=None, asynchronous=True) -> None:
        if self.commit_errors:
            raise self.commit_errors.pop(0)
        self.commits.append(([(tp.topic, tp.partition, tp.offset) for tp in offsets], not asynchronous))

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def consumer_group_metadata(self) -> object:
        return object()

    def close(self) -> None:
        self.closed = True

    # what a test does to it

    def revoke(self) -> None:
        self.callbacks["revoke"](self, list(self.partitions))

    def lose(self) -> None:
        self.callbacks["lost"](self, list(self.partitions))

    def reassign(self) -> None:
        self.callbacks["assign"](self, list(self.partitions))

    def committed_offsets(self) -> dict[tuple[str, int], int]:
        """The last committed offset per partition."""
        out: dict[tuple[str, int], int] = {}
        for offsets, _ in self.commits:
            for topic, partition, offset in offsets:
                out[(topic, partition)] = offset
        return out


class FakeProducer:
    """Acknowledges everything on ``flush`` unless told to hold (``unacked``) or fail (``fail_next``)."""

    def __init__(self, on_delivery: Callable | None = None) -> None:
        self.on_delivery = on_delivery
        self.produced: list[tuple[str, bytes | None, bytes | None]] = []
        self.in_flight: list[tuple[str, bytes | None, bytes | None]] = []
        self.hold = 0  # flush calls that leave records unacknowledged
        self.fail_next = 0  # records whose delivery fails at the next flush

    def produce(self, topic, value=None, key=None, partition=None, headers=None) -> None:
        self.in_flight.append((topic, key, value))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        if self.hold > 0:
            self.hold -= 1
            return len(self.in_flight)
        for topic, key, value in self.in_flight:
            if self.fail_next > 0 and self.on_delivery is not None:
                self.fail_next -= 1
                self.on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), _Delivered(topic))
                continue
            self.produced.append((topic, key, value))
        self.in_flight.clear()
        return 0

    def __len__(self) -> int:
        return len(self.in_flight)


@dataclass
class _Delivered:
    topic_: str

    def topic(self) -> str:
        return self.topic_


class FakeClients:
    """A client factory for ``ServiceLoop`` that hands out one fake pair and keeps them for the test."""

    def __init__(self, turns: list[Turn], stopping: threading.Event, partitions: list[int] = (0, 1)) -> None:
        self.consumer = FakeConsumer(turns, stopping, partitions)
        self.producer: FakeProducer | None = None
        self.made = 0

    def __call__(self, callbacks: ClientCallbacks) -> tuple[FakeConsumer, FakeProducer]:
        self.made += 1
        self.producer = FakeProducer(callbacks.producer.get("on_delivery"))
        return self.consumer, self.producer
