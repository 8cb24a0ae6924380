"""Backfill: re-score a range of the features topic with a model, into another topic.

Reads every partition of the source topic from an offset or a time to an offset, a
time, or the end, with a consumer of its own (no group commits), and scores the
records with the same ``ScoreHandler`` as the stream. Predictions go to the output
topic; invalid records are counted, not dead-lettered again (the live worker did
that the first time).

The end of the range is found by reading: the embedded broker's reported end offsets
lag behind the log (Tansu 0.6.0 reports the start of a partition's last record
batch as its end), so "to the end" means until no record has arrived for ``idle_s``
seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Message, Producer

from scoring.errors import ConfigError
from scoring.model.bundle import ModelBundle
from streams.kafka.config import producer_config
from streams.kafka.errors import DeliveryFailed
from streams.kafka.readers import offsets_for_time, partitions, read_until_quiet
from streams.kafka.records import Headers
from streams.services.score.handler import ScoreHandler
from streams.settings import Settings


@dataclass
class Range:
    from_offset: int | None = None
    from_time_ms: int | None = None
    to_offset: int | None = None  # inclusive
    to_time_ms: int | None = None  # inclusive

    def __post_init__(self) -> None:
        if (self.from_offset is None) == (self.from_time_ms is None):
            raise ConfigError("give exactly one of from_offset and from_time")

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
    producer = Producer(producer_config(settings))
    stats = ReplayStats()
    topic = settings.topic_features

    def emit(
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        partition: int | None = None,
    ) -> None:
        if topic == out_topic:  # predictions only; dead letters and monitor records were written live
            producer.produce(topic, value, key, headers=headers)

    def score(batch: list[Message]) -> None:
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

    start = start_positions(settings, topic, span)
    batch: list[Message] = []
    for record in read_until_quiet(settings, [topic], idle_s, start, purpose="replay", stop=span.past_end):
        if span.before_start(record):
            continue
        batch.append(record)
        if len(batch) >= batch_size:
            score(batch)
            batch = []
    if batch:
        score(batch)
    remaining = producer.flush(60)
    if remaining:
        raise DeliveryFailed(remaining, out_topic, settings.kafka_bootstrap)
    return stats


def start_positions(settings: Settings, topic: str, span: Range) -> dict[tuple[str, int], int]:
    """Where the range starts in each partition (by time: the broker's lookup, else the start)."""
    ids = partitions(settings, topic)
    if span.from_offset is not None:
        return {(topic, p): span.from_offset for p in ids}
    found = offsets_for_time(settings, topic, ids, span.from_time_ms)
    # a broker without time lookup: read from the start; records before from_time are skipped
    return found if found is not None else {(topic, p): 0 for p in ids}
