"""Consumer-group lag read from the broker alone: committed offsets, end offsets, lag.

Works against any Kafka-protocol cluster with the admin API (list groups, fetch
committed offsets) and a plain consumer for end offsets and for the timestamp of the
next unconsumed record, which gives the lag in seconds: how old the oldest record
the group has not yet consumed is.

The end offset is the broker's reported high watermark, checked by reading forward
from just before it: Tansu 0.6.0 reports the start of the last record batch rather
than the end of the log (FIELD-NOTES), so its watermark alone undercounts lag by up
to a batch. On Apache Kafka the read finds nothing past the watermark and costs one
record.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

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
    admin = AdminClient(settings.kafka_client_config())
    probe = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"streamscore-status-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
        }
    )
    out: list[PartitionLag] = []
    try:
        for group in groups:
            request = [ConsumerGroupTopicPartitions(group)]
            futures = admin.list_consumer_group_offsets(request, request_timeout=timeout_s)
            committed = futures[group].result(timeout=timeout_s).topic_partitions or []
            for tp in sorted(committed, key=lambda t: (t.topic, t.partition)):
                if tp.error is not None:
                    continue
                _, reported = probe.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), timeout=timeout_s
                )
                end = _read_end(probe, tp.topic, tp.partition, reported)
                position = max(tp.offset, 0)
                lag = max(0, end - position)
                seconds = _age_of(probe, tp.topic, tp.partition, position) if with_seconds and lag else None
                out.append(PartitionLag(group, tp.topic, tp.partition, tp.offset, end, lag, seconds))
    finally:
        probe.close()
    return out


def _read_end(consumer: Consumer, topic: str, partition: int, reported: int, quiet_s: float = 0.3) -> int:
    """One past the last offset readable from just before ``reported`` on (at least ``reported``)."""
    consumer.assign([TopicPartition(topic, partition, max(0, reported - 1))])
    end, deadline = reported, time.monotonic() + 5.0
    quiet_since = time.monotonic() + 1.5  # the first fetch of a new assignment takes longer
    try:
        while time.monotonic() - quiet_since < quiet_s and time.monotonic() < deadline:
            for record in consumer.consume(10_000, 0.1):
                if record.error() is None:
                    end = max(end, record.offset() + 1)
                    quiet_since = time.monotonic()
    finally:
        consumer.unassign()
    return end


def _age_of(
    consumer: Consumer, topic: str, partition: int, offset: int, timeout_s: float = 2.0
) -> float | None:
    """Seconds since the record at ``offset`` was written (its timestamp), if it can be read."""
    consumer.assign([TopicPartition(topic, partition, offset)])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            record = consumer.poll(0.2)
            if record is not None and record.error() is None:
                return max(0.0, time.time() - record.timestamp()[1] / 1000)
    finally:
        consumer.unassign()
    return None
