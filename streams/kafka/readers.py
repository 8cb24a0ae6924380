"""Read a compacted topic's latest value per key, from the start until it is quiet.

A consumer that assigns itself every partition (no consumer group: every reader
needs every record) and stops once nothing new arrived for ``idle_s``. Also returns
the next position per partition, so a reader can follow the topic from there.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from streams.settings import Settings


def reader(settings: Settings, purpose: str) -> Consumer:
    return Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"streamscore-{purpose}-{uuid.uuid4().hex[:8]}",  # never joined or committed
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
        }
    )


def partitions_of(consumer: Consumer, topic: str, timeout_s: float = 10.0) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise RuntimeError(f"topic {topic!r} not found on the broker")
    return sorted(metadata.partitions)


def read_latest(
    settings: Settings, topic: str, idle_s: float = 1.0, prefix: str = ""
) -> tuple[dict[str, bytes], dict[int, int]]:
    """Latest value per key starting with ``prefix`` (a tombstone removes it), and next positions."""
    consumer = reader(settings, "read")
    latest: dict[str, bytes] = {}
    positions: dict[int, int] = {}
    try:
        partitions = partitions_of(consumer, topic)
        positions = dict.fromkeys(partitions, 0)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle_s:
            for message in consumer.consume(500, 0.1):
                if message.error() is not None:
                    continue
                quiet_since = time.monotonic()
                positions[message.partition()] = message.offset() + 1
                key = (message.key() or b"").decode(errors="replace")
                if not key.startswith(prefix):
                    continue
                if message.value() is None:
                    latest.pop(key, None)
                else:
                    latest[key] = message.value()
    finally:
        consumer.close()
    return latest, positions
