"""Where ``tail`` starts reading each partition, and the records from there (outside any group).

The reading itself is ``streams.kafka.readers.read_until_quiet``: it never trusts a reported
end offset to stop (the embedded broker's lags its log), so "the end" here is where the broker
says a partition ends, and "the last N" reads on from N before that to what is really there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import closing

from confluent_kafka import KafkaException, Message, TopicPartition

from streams.kafka.errors import BrokerUnreachable
from streams.kafka.readers import METADATA_TIMEOUT_S, ReadCounts, partitions_of, read_until_quiet, reader
from streams.settings import Settings

QUIET_S = 2.0  # without --follow: reading ends after this long with nothing new

Positions = dict[tuple[str, int], int]


def start_positions(settings: Settings, topic: str, where: str, last: int = 0) -> Positions:
    """Per partition: its first offset (``beginning``), its end (``end``), or ``last`` before its end."""
    consumer = reader(settings, "tail-offsets")
    try:
        out = {}
        for partition in partitions_of(consumer, topic, settings):
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=METADATA_TIMEOUT_S, cached=False
                )
            except KafkaException as exc:
                raise BrokerUnreachable(settings.kafka_bootstrap, str(exc.args[0])) from exc
            start = {"beginning": low, "end": high}.get(where, max(low, high - last))
            out[(topic, partition)] = start
        return out
    finally:
        consumer.close()


def records(
    settings: Settings, topic: str, start: Positions, follow: bool, counts: ReadCounts | None = None
) -> Iterator[Message]:
    """The records from ``start`` on: until quiet, or with ``follow`` until the caller stops."""
    quiet = math.inf if follow else QUIET_S
    reading = read_until_quiet(settings, [topic], quiet, start=start, purpose="tail", counts=counts)
    with closing(reading):  # the consumer closes however the caller stops (Ctrl-C included)
        yield from reading
