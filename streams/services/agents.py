"""The plain Faust score path: an agent over ``features`` using Faust's own consumer.

Kept as ``STREAMSCORE_SCORE_PATH=agent`` so the benchmark can show both paths. It
shares the score step with the batch path (``ScoreHandler``). The agent reads raw
bytes (Faust's decoder would ack and drop a bad payload) and never lets an
exception out (Faust acks an event whose agent raised). ``take_events`` acks its
buffer only after the loop body returns, and the body waits for the producer to
flush first, so an offset is committed only after its outputs are delivered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import faust

from streams.kafka.records import Headers
from streams.services.batch_stats import BatchListener
from streams.services.drift import DriftStep
from streams.services.handler import ScoreHandler
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FaustRecord:
    """A Faust event's message, shaped like ``confluent_kafka.Message`` for the handler."""

    message: faust.types.tuples.Message

    def topic(self) -> str:
        return self.message.topic

    def partition(self) -> int:
        return self.message.partition

    def offset(self) -> int:
        return self.message.offset

    def key(self) -> bytes | None:
        return self.message.key

    def value(self) -> bytes | None:
        return self.message.value

    def headers(self) -> Headers:
        return list(self.message.headers or [])

    def timestamp(self) -> tuple[int, int]:
        return (1, int(self.message.timestamp * 1000))


def register_score_agent(
    app: faust.App, settings: Settings, handler: ScoreHandler, on_batch: BatchListener | None = None
) -> None:
    features = app.topic(settings.topic_features, key_serializer="raw", value_serializer="raw")
    linger_s = settings.batch_linger_ms / 1000.0

    @app.agent(features, name="score", concurrency=1)
    async def score(stream: faust.StreamT) -> None:
        outgoing: list[tuple[str, bytes | None, bytes | None, Headers | None]] = []
        async for events in stream.take_events(settings.batch_size, within=linger_s):
            started = time.perf_counter()
            outgoing.clear()
            stats = handler.handle([FaustRecord(e.message) for e in events], lambda *r: outgoing.append(r))
            await _deliver(app, outgoing)
            if on_batch is not None:
                on_batch(stats, time.perf_counter() - started)


async def _deliver(app: faust.App, outgoing: list) -> None:
    """Send and flush the batch's outputs, retrying until the broker takes them all.

    Retrying (duplicates possible) rather than raising: an exception leaving the
    agent would ack the batch with its outputs undelivered.
    """
    while True:
        try:
            for topic, key, value, headers, *partition in outgoing:
                await app.producer.send(topic, key, value, partition[0] if partition else None, None, headers)
            await app.producer.flush()
            return
        except Exception:
            log.exception("delivering %d records failed; retrying", len(outgoing))
            await asyncio.sleep(1.0)


def register_drift_agent(app: faust.App, settings: Settings, step: DriftStep) -> None:
    """The drift path as a plain Faust agent over ``monitor`` (``STREAMSCORE_DRIFT_PATH=agent``)."""
    source = app.topic(settings.topic_monitor, key_serializer="raw", value_serializer="raw")
    sinks: dict[str, faust.TopicT] = {}

    def sink(name: str) -> faust.TopicT:
        if name not in sinks:
            sinks[name] = app.topic(name, key_serializer="raw", value_serializer="raw")
        return sinks[name]

    @app.agent(source, name="drift", concurrency=1)
    async def drift(stream: faust.StreamT) -> None:
        outgoing: list[tuple[str, bytes | None, bytes | None, Headers | None]] = []
        async for event in stream.events():
            outgoing.clear()
            step.handle(FaustRecord(event.message), lambda *r: outgoing.append(r))
            for topic, key, body, headers, *_ in outgoing:
                await sink(topic).send(key=key, value=body, headers=headers)
