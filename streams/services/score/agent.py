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

import faust

from streams.kafka.records import Headers
from streams.services.loop.faust_record import FaustRecord
from streams.services.score.batch_stats import BatchListener
from streams.services.score.handler import ScoreHandler
from streams.settings import Settings

log = logging.getLogger(__name__)


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
