"""Write feature events to Kafka with confluent-kafka, from a file or a synthetic stream."""

from __future__ import annotations

import time
from collections.abc import Iterable

import orjson
from confluent_kafka import Producer

from streams.kafka.config import command_producer_config
from streams.kafka.errors import DeliveryFailed
from streams.settings import Settings


def make_producer(settings: Settings, **overrides) -> Producer:
    return Producer({**command_producer_config(settings), **overrides})


def produce_payloads(
    settings: Settings,
    payloads: Iterable[tuple[bytes | None, bytes | None]],
    rate: float | None = None,
    topic: str | None = None,
) -> int:
    """Produce ``(key, value)`` pairs, at most ``rate`` per second if given; returns the count."""
    producer = make_producer(settings)
    topic = topic or settings.topic_features
    started = time.monotonic()
    count = 0
    step = max(1, int(rate / 200)) if rate else 10_000  # pace (and serve callbacks) ~200 times a second
    for key, value in payloads:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        if count % step == 0:
            producer.poll(0)
            ahead = count / rate - (time.monotonic() - started) if rate else 0
            if ahead > 0:
                time.sleep(ahead)
    remaining = producer.flush(30)
    if remaining:
        raise DeliveryFailed(remaining, topic, settings.kafka_bootstrap)
    return count


def event_payloads(events: Iterable[dict]) -> Iterable[tuple[bytes, bytes]]:
    for event in events:
        yield str(event["entity_id"]).encode(), orjson.dumps(event)
