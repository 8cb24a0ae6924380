"""Reading topics outside any consumer group: from the start (or given offsets) until quiet.

Every reader here assigns partitions itself (every reader needs every record; nothing is
committed) and stops once nothing new arrived for ``idle_s``: the embedded broker's
reported end offsets lag behind its log (Tansu 0.6.0 reports the start of a
partition's last record batch), so "to the end" is found by reading, never by
trusting a watermark.

- ``read_until_quiet``: every record of some topics, from the start or from positions.
- ``read_latest``: a compacted topic's latest value per key (a tombstone removes it).
- ``read_json``: decoded JSON values, skipping (and counting) what does not decode.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import orjson
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from streams.kafka.config import reader_config
from streams.kafka.errors import BrokerUnreachable, TopicMissing
from streams.settings import Settings

log = logging.getLogger(__name__)

METADATA_TIMEOUT_S = 10.0
BEHIND_S = 30.0  # longest wait to reach a partition's reported end


def reader(settings: Settings, purpose: str, fetch_wait_max_ms: int = 50) -> Consumer:
    """A consumer for assigning partitions by hand (no group join, no commits)."""
    return Consumer(reader_config(settings, purpose, fetch_wait_max_ms))


def partitions_of(
    consumer: Consumer, topic: str, settings: Settings, timeout_s: float = METADATA_TIMEOUT_S
) -> list[int]:
    """The partition ids of ``topic``; ``TopicMissing`` or ``BrokerUnreachable`` otherwise."""
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    except KafkaException as exc:
        raise BrokerUnreachable(settings.kafka_bootstrap, str(exc.args[0])) from exc
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise TopicMissing(topic, settings.kafka_bootstrap)
    return sorted(metadata.partitions)


def partitions(settings: Settings, topic: str) -> list[int]:
    consumer = reader(settings, "metadata")
    try:
        return partitions_of(consumer, topic, settings)
    finally:
        consumer.close()


def end_offsets(settings: Settings, topic: str, ids: list[int]) -> dict[int, int]:
    """Each partition's end offset as the broker reports it (those it does not answer for are left out)."""
    consumer = reader(settings, "end-offsets")
    out = {}
    try:
        for p in ids:
            try:
                out[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), METADATA_TIMEOUT_S, False)[
                    1
                ]
            except KafkaException:
                continue
    finally:
        consumer.close()
    return out


def offsets_for_time(
    settings: Settings, topic: str, ids: list[int], time_ms: int
) -> dict[tuple[str, int], int] | None:
    """Per partition, the first offset at or after ``time_ms``; None if the broker cannot say."""
    consumer = reader(settings, "time-lookup")
    try:
        found = consumer.offsets_for_times([TopicPartition(topic, p, time_ms) for p in ids], timeout=10)
    except KafkaException:
        return None
    finally:
        consumer.close()
    if any(tp.offset < 0 for tp in found):
        return None
    return {(tp.topic, tp.partition): tp.offset for tp in found}


@dataclass
class ReadCounts:
    """What a reader saw: records read, and records it skipped because they did not decode."""

    read: int = 0
    skipped: int = 0
    positions: dict[tuple[str, int], int] = field(default_factory=dict)  # next offset per partition


def read_until_quiet(
    settings: Settings,
    topics: list[str],
    idle_s: float = 1.0,
    start: dict[tuple[str, int], int] | None = None,
    purpose: str = "read",
    counts: ReadCounts | None = None,
    stop: Callable[[Message], bool] | None = None,
    deadline_s: float | None = None,
) -> Iterator[Message]:
    """Every record of ``topics`` (tombstones too), from offset 0 or ``start``, until ``idle_s`` of quiet.

    ``stop(record)`` True ends the partition of that record (the record itself is not yielded).
    With ``deadline_s``, reading ends then at the latest (to wait for records still to come,
    pass a long ``idle_s`` and stop iterating when satisfied).
    """
    counts = counts if counts is not None else ReadCounts()
    consumer = reader(settings, purpose)
    try:
        assignment = []
        for topic in topics:
            for partition in partitions_of(consumer, topic, settings):
                offset = (start or {}).get((topic, partition), 0)
                assignment.append(TopicPartition(topic, partition, offset))
                counts.positions[(topic, partition)] = offset
        behind = _behind(consumer, assignment)
        consumer.assign(assignment)
        open_partitions = set(counts.positions)
        quiet_since = time.monotonic()
        give_up_behind = quiet_since + BEHIND_S
        end = math.inf if deadline_s is None else quiet_since + deadline_s
        while (
            open_partitions and (behind or time.monotonic() - quiet_since < idle_s) and time.monotonic() < end
        ):
            if behind and time.monotonic() > give_up_behind:
                log.warning("%s: the reported end was not reached in %.0f s", purpose, BEHIND_S)
                behind.clear()
            for message in consumer.consume(1000, 0.1):
                if message.error() is not None:
                    continue
                key = (message.topic(), message.partition())
                if key not in open_partitions:
                    continue
                quiet_since = time.monotonic()
                if behind.get(key, 0) <= message.offset() + 1:
                    behind.pop(key, None)
                if stop is not None and stop(message):
                    open_partitions.discard(key)
                    consumer.pause([TopicPartition(*key)])
                    continue
                counts.read += 1
                counts.positions[key] = message.offset() + 1
                yield message
    finally:
        consumer.close()


def _behind(consumer: Consumer, assignment: list[TopicPartition]) -> dict[tuple[str, int], int]:
    """Partitions whose reported end is past their start: the reader waits to reach that end at least.

    (The reported end can trail the log on the embedded broker, so reaching it is necessary,
    not sufficient: the quiet period still follows.)
    """
    out = {}
    for tp in assignment:
        try:
            _, high = consumer.get_watermark_offsets(tp, timeout=METADATA_TIMEOUT_S, cached=False)
        except KafkaException:
            continue
        if high > tp.offset:
            out[(tp.topic, tp.partition)] = high
    return out


def read_latest(
    settings: Settings, topic: str, idle_s: float = 1.0, prefix: str = ""
) -> tuple[dict[str, bytes], dict[int, int]]:
    """Latest value per key starting with ``prefix`` (a tombstone removes it), and next positions."""
    latest: dict[str, bytes] = {}
    counts = ReadCounts()
    for message in read_until_quiet(settings, [topic], idle_s, purpose="latest", counts=counts):
        key = (message.key() or b"").decode(errors="replace")
        if not key.startswith(prefix):
            continue
        if message.value() is None:
            latest.pop(key, None)
        else:
            latest[key] = message.value()
    return latest, {partition: offset for (_, partition), offset in counts.positions.items()}


def read_json(
    settings: Settings, topic: str, idle_s: float = 3.0, counts: ReadCounts | None = None
) -> Iterator[dict]:
    """The JSON object values of ``topic`` from the start; anything else is skipped and counted."""
    counts = counts if counts is not None else ReadCounts()
    for message in read_until_quiet(settings, [topic], idle_s, purpose="json", counts=counts):
        try:
            body = orjson.loads(message.value() or b"")
        except orjson.JSONDecodeError:
            body = None
        if isinstance(body, dict):
            yield body
        else:
            counts.skipped += 1
