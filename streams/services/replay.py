"""Backfill: re-score a range of the features topic with a model, into another topic.

Reads every partition of the source topic from an offset or a time to an offset, a
time, or the end, with a consumer of its own (no group commits), and scores the
records with the same ``ScoreHandler`` as the stream. Predictions go to the output
topic; invalid records are counted, not dead-lettered again (the live worker did
that the first time).

The end of the range is found by reading: the embedded broker's reported end offsets
lag behind the log (FIELD-NOTES), so "to the end" means until no record has arrived
for ``idle_s`` seconds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from scoring.bundle import ModelBundle
from streams.services.handler import Headers, ScoreHandler
from streams.services.score import producer_config
from streams.settings import Settings


@dataclass
class Range:
    from_offset: int | None = None
    from_time_ms: int | None = None
    to_offset: int | None = None  # inclusive
    to_time_ms: int | None = None  # inclusive

    def __post_init__(self) -> None:
        if (self.from_offset is None) == (self.from_time_ms is None):
            raise ValueError("give exactly one of from_offset and from_time")

    def past_end(self, record: Message) -> bool:
        if self.to_offset is not None and record.offset() > self.to_offset:
            return True
        return self.to_time_ms is not None and record.timestamp()[1] > self.to_time_ms

    def before_start(self, record: Message) -> bool:
        return self.from_time_ms is not None and record.timestamp()[1] < self.from_time_ms


@dataclass
class ReplayStats:
    read: int = 0
    scored: int = 0
    invalid: int = 0
    partitions: dict[int, tuple[int, int]] = field(default_factory=dict)  # first and last offset scored


def replay(
    settings: Settings,
    bundle: ModelBundle,
    out_topic: str,
    span: Range,
    idle_s: float = 3.0,
    batch_size: int = 2000,
    on_batch: Callable[[ReplayStats], None] | None = None,
) -> ReplayStats:
    handler = ScoreHandler(
        settings.model_copy(update={"topic_predictions": out_topic, "monitor_enabled": False}), bundle
    )
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"streamscore-replay-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        }
    )
    producer = Producer(producer_config(settings))
    stats = ReplayStats()
    try:
        partitions = _start_positions(consumer, settings.topic_features, span)
        consumer.assign(partitions)
        open_partitions = {tp.partition for tp in partitions}
        last_record = time.monotonic()

        def emit(topic: str, key: bytes | None, value: bytes | None, headers: Headers | None) -> None:
            if topic == out_topic:  # predictions only; dead letters and monitor records were written live
                producer.produce(topic, value, key, headers=headers)

        while open_partitions and time.monotonic() - last_record < idle_s:
            batch = []
            for record in consumer.consume(batch_size, 0.2):
                if record.error() is not None or record.partition() not in open_partitions:
                    continue
                last_record = time.monotonic()
                if span.past_end(record):
                    open_partitions.discard(record.partition())
                    consumer.pause([TopicPartition(record.topic(), record.partition())])
                    continue
                if span.before_start(record):
                    continue
                batch.append(record)
            if not batch:
                continue
            result = handler.handle(batch, emit)
            stats.read += len(batch)
            stats.scored += result.scored
            stats.invalid += sum(result.dead_letters.values())
            for record in batch:
                first, _ = stats.partitions.get(record.partition(), (record.offset(), 0))
                stats.partitions[record.partition()] = (first, record.offset())
            producer.poll(0)
            if on_batch is not None:
                on_batch(stats)
        if producer.flush(60) > 0:
            raise RuntimeError("replayed predictions were not all acknowledged by the broker")
    finally:
        consumer.close()
    return stats


def _start_positions(consumer: Consumer, topic: str, span: Range) -> list[TopicPartition]:
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    if metadata.error is not None:
        raise RuntimeError(f"topic {topic}: {metadata.error}")
    ids = sorted(metadata.partitions)
    if span.from_offset is not None:
        return [TopicPartition(topic, p, span.from_offset) for p in ids]
    try:
        found = consumer.offsets_for_times(
            [TopicPartition(topic, p, span.from_time_ms) for p in ids], timeout=10
        )
        if all(tp.offset >= 0 for tp in found):
            return found
    except Exception:  # noqa: BLE001 - a broker without time lookup: scan from the start
        pass
    return [TopicPartition(topic, p, 0) for p in ids]  # records before from_time are skipped
