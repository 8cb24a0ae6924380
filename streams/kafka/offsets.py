"""Offsets of a batch and committing them: the two things every consuming loop does the same way.

A commit the coordinator refuses because the group moved on (``errors.GROUP_MOVED_ON``:
the session was lost during a broker pause, a rebalance started) is expected: the
partitions' records are consumed again by their next owner, so at-least-once holds.
``commit`` logs it, counts it and returns False. A transient error (broker unreachable)
is retried until ``deadline_s``; anything else raises.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streams.kafka.errors import GROUP_MOVED_ON, TRANSIENT

log = logging.getLogger(__name__)

TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Position:
    """Where a partition stands after a batch: the next offset to read, and the last record's time."""

    offset: int
    timestamp_ms: int


def positions(records: Sequence) -> dict[TopicPartitionKey, Position]:
    """Per partition, one past the last offset in ``records`` and that record's timestamp.

    A consumer returns each partition's records in offset order, so the last one of a
    partition is its highest: read backwards, one lookup per record.
    """
    out: dict[TopicPartitionKey, Position] = {}
    for record in reversed(records):
        key = (record.topic(), record.partition())
        if key not in out:
            out[key] = Position(record.offset() + 1, record.timestamp()[1])
    return out


def to_commit(at: dict[TopicPartitionKey, Position]) -> list[TopicPartition]:
    return [TopicPartition(topic, partition, p.offset) for (topic, partition), p in at.items()]


def first_offsets(records: Sequence) -> list[TopicPartition]:
    """Per partition, the lowest offset in ``records``: where to seek to consume them again."""
    lowest: dict[TopicPartitionKey, int] = {}
    for record in records:
        key = (record.topic(), record.partition())
        lowest[key] = min(lowest.get(key, record.offset()), record.offset())
    return [TopicPartition(t, p, o) for (t, p), o in lowest.items()]


@dataclass
class CommitCounters:
    committed: int = 0
    refused: int = 0  # the group moved on: the records will be consumed again
    retried: int = 0  # transient errors retried
    abandoned: int = 0  # transient errors until the deadline: not committed


def is_group_moved_on(error: KafkaError) -> bool:
    return error.code() in GROUP_MOVED_ON


def commit(
    consumer,
    offsets: list[TopicPartition],
    counters: CommitCounters,
    synchronous: bool = False,
    deadline_s: float = 10.0,
    stopping: threading.Event | None = None,
) -> bool:
    """Commit ``offsets``; False when they were not committed (refused, or the broker stayed away)."""
    if not offsets:
        return True
    give_up_at = time.monotonic() + deadline_s
    while True:
        try:
            consumer.commit(offsets=offsets, asynchronous=not synchronous)
            counters.committed += 1
            return True
        except KafkaException as exc:
            error = exc.args[0]
            if is_group_moved_on(error):
                counters.refused += 1
                log.warning(
                    "commit refused, the group moved on (%s): these records will be read again", error
                )
                return False
            if error.code() not in TRANSIENT:
                raise
            if time.monotonic() >= give_up_at or (stopping is not None and stopping.is_set()):
                counters.abandoned += 1
                log.warning(
                    "commit not done, broker unreachable (%s): these records will be read again", error
                )
                return False
            counters.retried += 1
            time.sleep(0.2)
