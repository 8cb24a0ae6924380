"""What a service loop counts, read by ``/metrics``, ``/stats`` and ``/dashboard`` from other threads.

Lag comes from the loop's own consumer: librdkafka's statistics (``statistics.interval.ms``)
carry each assigned partition's ``consumer_lag``, with no request of their own to the broker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from streams.kafka.offsets import CommitCounters, TopicPartitionKey


@dataclass
class PartitionLag:
    """One assigned partition as librdkafka's statistics see it."""

    topic: str
    partition: int
    lag: int  # records between the consumer's position and the end of the log (0 when unknown)
    end: int  # the high watermark
    committed: int
    sampled_at: float


@dataclass
class LoopStats:
    """What a loop counted; read by ``/metrics`` and ``/stats`` from other threads (plain values)."""

    batches: int = 0
    records: int = 0
    delivery_failures: int = 0
    consumer_errors: int = 0
    commits: CommitCounters = field(default_factory=CommitCounters)
    assigned: set[TopicPartitionKey] = field(default_factory=set)
    lag: dict[TopicPartitionKey, PartitionLag] = field(default_factory=dict)
    last_record_ms: dict[TopicPartitionKey, int] = field(default_factory=dict)

    def lag_seconds(self, key: TopicPartitionKey, now_s: float | None = None) -> float:
        """How far behind a partition is in time: the age of the last record read, while records wait.

        The next unread record was written after the last one read, so this is an upper bound
        of the oldest unread record's age; 0 when nothing waits.
        """
        row = self.lag.get(key)
        last = self.last_record_ms.get(key)
        if row is None or row.lag <= 0 or last is None:
            return 0.0
        return max(0.0, (now_s if now_s is not None else time.time()) - last / 1000)


def lag_from_statistics(
    statistics: dict, assigned: set[TopicPartitionKey]
) -> dict[TopicPartitionKey, PartitionLag]:
    """Per assigned partition, librdkafka's own view: ``consumer_lag``, ``hi_offset``, ``committed_offset``.

    ``consumer_lag`` is -1 until the partition has a position and a watermark; it is read as 0
    then, and clamped at 0 (Tansu 0.6.0 reports the start of the last record batch as the high
    watermark, so it can trail the log).
    """
    now = time.time()
    out: dict[TopicPartitionKey, PartitionLag] = {}
    for topic, body in statistics.get("topics", {}).items():
        for partition_id, row in body.get("partitions", {}).items():
            key = (topic, int(partition_id))
            if key not in assigned:
                continue
            out[key] = PartitionLag(
                topic,
                key[1],
                lag=max(0, int(row.get("consumer_lag", -1))),
                end=int(row.get("hi_offset", -1)),
                committed=int(row.get("committed_offset", -1)),
                sampled_at=now,
            )
    return out
