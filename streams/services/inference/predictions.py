"""Predictions of the inference endpoint, also written to ``predictions`` (STREAMSCORE_INFER_PREDICTIONS).

Each row answered over the API becomes the prediction the stream would write for it (the
same body and CloudEvents headers), with ``topic`` the request's path, ``partition`` and
``offset`` -1, ``latency_ms`` from the request's arrival, and a ``streamscore.origin: api``
header. Bounded: the producer holds at most ``MAX_QUEUED`` records; a request that finds it
full has its predictions dropped and counted, and the caller's answer never waits on Kafka.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from confluent_kafka import KafkaError, Producer
from mode import Service

from schemas import headers as h
from scoring.model.validation import ParsedEvent
from streams.kafka.config import producer_config
from streams.kafka.records import Headers
from streams.services.score import Answered, BatchStats, ValidEvents, emit_predictions
from streams.settings import Settings

MAX_QUEUED = 50_000
FLUSH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ApiRecord:
    """Where an API row came from, in the shape ``emit_predictions`` reads a consumed record."""

    path: str
    received_ms: int

    def topic(self) -> str:
        return self.path

    def partition(self) -> int:
        return -1

    def offset(self) -> int:
        return -1

    def timestamp(self) -> tuple[int, int]:
        return (0, self.received_ms)


class ApiPredictions(Service):
    """Writes answered rows to the predictions topic; flushes what is queued when the worker stops."""

    def __init__(self, settings: Settings, producer: Producer | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.topic = settings.topic_predictions
        self.with_headers = settings.prediction_headers
        self.producer = producer or Producer(
            {**producer_config(settings), "queue.buffering.max.messages": MAX_QUEUED, "linger.ms": 5}
        )
        self.queued = self.dropped = self.failed = 0

    def write(self, path: str, received_ms: int, events: list[ParsedEvent], answered: list[Answered]) -> None:
        record = ApiRecord(path, received_ms)
        for part in answered:
            rows = part.rows.tolist()
            batch = ValidEvents(
                [record] * len(rows),
                [events[r].event_id for r in rows],
                [events[r].entity_id for r in rows],
                [events[r].event_time_ms for r in rows],
                [events[r].row for r in rows],
            )
            emit_predictions(
                self.topic, self.with_headers, part.model, batch, part.result, self._emit, {}, BatchStats()
            )
        self.producer.poll(0)

    def _emit(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None) -> None:
        marked = [*(headers or []), (h.PREDICTION_ORIGIN, h.ORIGIN_API)]
        try:
            self.producer.produce(topic, value, key, headers=marked, on_delivery=self._delivered)
            self.queued += 1
        except BufferError:
            self.dropped += 1

    def _delivered(self, error: KafkaError | None, _message: object) -> None:
        if error is not None:
            self.failed += 1

    async def on_stop(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.producer.flush, FLUSH_TIMEOUT_S)
