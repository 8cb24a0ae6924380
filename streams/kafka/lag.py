"""Consumer-group lag read from the broker alone: committed offsets, end offsets, lag.

Works against any Kafka-protocol cluster with the admin API (list groups, fetch
committed offsets) and a plain consumer for end offsets and for the timestamp of the
next unconsumed record, which gives the lag in seconds: how old the oldest record
the group has not yet consumed is.

The end offset is the broker's reported high watermark, checked by reading forward
from just before it: Tansu 0.6.0 reports the start of the last record batch rather
than the end of the log, so its watermark alone undercounts lag by up
to a batch. On Apache Kafka the read finds nothing past the watermark and costs one
record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.kafka.config import admin_config, reader_config
from streams.settings import Settings


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int  # -1 when the group has committed nothing here
    end: int
    lag: int
    lag_seconds: float | None  # age of the next unconsumed record; None when caught up


def list_groups(admin: AdminClient, prefix: str = "", timeout_s: float = 10) -> list[str]:
    result = admin.list_consumer_groups(request_timeout=timeout_s).result(timeout=timeout_s)
    return sorted(g.group_id for g in result.valid if g.group_id.startswith(prefix))


def group_lag(
    settings: Settings, groups: list[str], with_seconds: bool = True, timeout_s: float = 10
) -> list[PartitionLag]:
    """Lag of every partition each group has committed to."""
    admin = AdminClient(admin_config(settings))
    probe = Consumer(reader_config(settings, "status"))
    out: list[PartitionLag] = []
    try:
        committed: list[tuple[str, TopicPartition]] = []
        for group in groups:
            request = [ConsumerGroupTopicPartitions(group)]
            futures = admin.list_consumer_group_offsets(request, request_timeout=timeout_s)
            found = futures[group].result(timeout=timeout_s).topic_partitions or []
            committed += [(group, tp) for tp in sorted(found, key=lambda t: (t.topic, t.partition))]
        committed = [(group, tp) for group, tp in committed if tp.error is None]
        reported = {}
        for _, tp in committed:
            key = (tp.topic, tp.partition)
            if key not in reported:
                reported[key] = probe.get_watermark_offsets(TopicPartition(*key), timeout=timeout_s)[1]
        ends = _read_ends(probe, reported)
        behind = {
            (group, tp.topic, tp.partition): max(tp.offset, 0)
            for group, tp in committed
            if ends[(tp.topic, tp.partition)] > max(tp.offset, 0)
        }
        ages = _ages(probe, behind) if with_seconds else {}
        for group, tp in committed:
            end = ends[(tp.topic, tp.partition)]
            lag = max(0, end - max(tp.offset, 0))
            seconds = ages.get((group, tp.topic, tp.partition))
            out.append(PartitionLag(group, tp.topic, tp.partition, tp.offset, end, lag, seconds))
    finally:
        probe.close()
    return out


def _read_ends(
    consumer: Consumer, reported: dict[tuple[str, int], int], quiet_s: float = 0.3
) -> dict[tuple[str, int], int]:
    """Per partition, one past the last offset readable from just before ``reported`` on (at least that).

    All partitions are read at once: the first fetch of a new assignment takes over a second,
    which one partition at a time made a sample of a worker's dozen partitions take half a minute.
    """
    ends = dict(reported)
    if not ends:
        return ends
    consumer.assign([TopicPartition(t, p, max(0, end - 1)) for (t, p), end in ends.items()])
    deadline = time.monotonic() + 5.0
    quiet_since = time.monotonic() + 1.5  # the first fetch of a new assignment takes longer
    try:
        while time.monotonic() - quiet_since < quiet_s and time.monotonic() < deadline:
            for record in consumer.consume(10_000, 0.1):
                if record.error() is None:
                    key = (record.topic(), record.partition())
                    ends[key] = max(ends[key], record.offset() + 1)
                    quiet_since = time.monotonic()
    finally:
        consumer.unassign()
    return ends


def _ages(
    consumer: Consumer, positions: dict[tuple[str, str, int], int], timeout_s: float = 2.0
) -> dict[tuple[str, str, int], float]:
    """Seconds since the record at each (group, topic, partition)'s position was written, where readable.

    Every partition is read at once, like ``_read_ends``.
    """
    pending: dict[tuple[str, int, int], list[tuple[str, str, int]]] = {}
    for key, offset in positions.items():
        pending.setdefault((key[1], key[2], offset), []).append(key)
    ages: dict[tuple[str, str, int], float] = {}
    while pending:
        # a partition is assigned at one offset at a time: groups at different offsets of one take turns
        deadline = time.monotonic() + timeout_s
        batch: dict[tuple[str, int], int] = {}
        for topic, partition, offset in pending:
            batch.setdefault((topic, partition), offset)
        consumer.assign([TopicPartition(t, p, o) for (t, p), o in batch.items()])
        try:
            waiting = set(batch)
            while waiting and time.monotonic() < deadline:
                for record in consumer.consume(1000, 0.2):
                    key = (record.topic(), record.partition())
                    if record.error() is None and key in waiting and record.offset() >= batch[key]:
                        waiting.discard(key)
                        age = max(0.0, time.time() - record.timestamp()[1] / 1000)
                        for owner in pending.pop((*key, batch[key])):
                            ages[owner] = age
        finally:
            consumer.unassign()
        for key in waiting:  # nothing readable there in time: no age
            pending.pop((*key, batch[key]), None)
    return ages
