"""Write feature events to Kafka with confluent-kafka, from a file or a synthetic stream."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import orjson
from confluent_kafka import Producer

from streams.kafka.config import command_producer_config
from streams.kafka.errors import DeliveryFailed
from streams.settings import Settings

DELIVERY_TIMEOUT_S = 30  # librdkafka's message.timeout.ms of a command's records
# librdkafka's own lines (refused connections, request timeouts) go here, not to stderr:
# DeliveryFailed sums them up; the command line shows them with --debug
LIBRDKAFKA_LOG = logging.getLogger("streamscore.librdkafka")


def make_producer(settings: Settings, **overrides) -> Producer:
    return Producer({**command_producer_config(settings), **overrides})


def produce_payloads(
    settings: Settings,
    payloads: Iterable[tuple[bytes | None, bytes | None]],
    rate: float | None = None,
    topic: str | None = None,
) -> int:
    """Produce ``(key, value)`` pairs, at most ``rate`` per second if given; returns the count.

    Every record is acknowledged within ``DELIVERY_TIMEOUT_S`` or the call raises
    ``DeliveryFailed`` with librdkafka's reason; nothing is left queued behind it.
    """
    failures: list[str] = []

    def failed(error, _message) -> None:  # called for failed deliveries only
        failures.append(error.str())

    producer = make_producer(
        settings,
        **{
            "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000),
            "delivery.report.only.error": True,
            "on_delivery": failed,
            "logger": LIBRDKAFKA_LOG,
        },
    )
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
    remaining = producer.flush(DELIVERY_TIMEOUT_S + 5)
    if remaining:  # drop what is still queued, so the producer closes without complaint
        producer.purge()
        producer.flush(1)
    if failures or remaining:
        reason = failures[0] if failures else "not acknowledged in time"
        raise DeliveryFailed(len(failures) + remaining, topic, settings.kafka_bootstrap, reason)
    return count


def event_payloads(events: Iterable[dict]) -> Iterable[tuple[bytes, bytes]]:
    for event in events:
        yield str(event["entity_id"]).encode(), orjson.dumps(event)
