"""The one consume -> process -> produce -> commit loop every service runs on.

A service is a ``Step`` (what to do with a batch of records) and a ``CommitPolicy``
(when offsets are committed: after the batch's outputs are acknowledged, periodically,
in a transaction, or never). The loop owns the clients, which it gets from a factory so
a test can hand it fakes, and everything that is the same for every service:

- subscribing (or assigning partitions itself) and the rebalance callbacks: no exception
  ever leaves a callback (librdkafka would raise it out of ``consume``); the policy
  settles what it holds for revoked partitions and drops what it holds for lost ones;
- an ``emit`` that waits for room in the producer's queue instead of failing;
- delivery failures, commit outcomes and librdkafka's statistics (per-partition lag,
  without any request of its own) counted in ``LoopStats``.

The loop returns when ``stopping`` is set, after the policy's final settle; an exception
out of the step or the clients ends it, and the supervisor (``supervisor.py``) starts it
again with new clients. The step's interface is in ``step.py``; ``runner.py`` builds
the loop a supervised role runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, TopicPartition

from streams.kafka.offsets import Position, TopicPartitionKey, commit
from streams.kafka.records import Headers
from streams.services.loop.stats import LoopStats, lag_from_statistics
from streams.services.loop.step import Assign, Step, Subscribe

log = logging.getLogger(__name__)


class Stopped(Exception):
    """Raised out of ``emit`` when the service stops while the producer's queue is full."""


@dataclass
class ClientCallbacks:
    """Callbacks the loop wants in its clients' configurations (they are fixed at creation)."""

    consumer: dict[str, Callable[..., Any]]
    producer: dict[str, Callable[..., Any]]


ClientFactory = Callable[[ClientCallbacks], tuple[Any, Any]]  # -> (consumer, producer)


class CommitPolicy:
    """When a loop commits. The default commits nothing (``Never``)."""

    def start(self, loop: ServiceLoop) -> None:
        self.loop = loop

    def before(self, records: list[Message]) -> bool:
        """Before a batch is processed (also with no records); False: the batch was rewound, skip it."""
        return True

    def process(self, records: list[Message]) -> Any:
        """Run the step on the batch (a transaction wraps it)."""
        return self.loop.step.process(records, self.loop)

    def after(self, records: list[Message], result: Any, seconds: float) -> None:
        """After a batch is processed."""
        self.loop.step.committed(result, seconds)

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Partitions are revoked in a rebalance: settle what is held for them."""

    def lost(self, partitions: list[TopicPartition]) -> None:
        """Partitions are lost (the session expired): drop what is held; committing would be refused."""

    def finish(self) -> None:
        """The loop stops: settle what is held."""


class ServiceLoop:
    """Consume -> step -> produce -> commit, until ``stopping`` is set."""

    def __init__(
        self,
        name: str,
        clients: ClientFactory,
        step: Step,
        policy: CommitPolicy,
        source: Subscribe | Assign,
        stopping: threading.Event,
        batch_size: int = 1000,
        linger_s: float = 0.1,
        stats: LoopStats | None = None,
        commit_deadline_s: float = 10.0,
    ) -> None:
        self.name = name
        self.step = step
        self.policy = policy
        self.source = source
        self.stopping = stopping
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.stats = stats if stats is not None else LoopStats()
        self.commit_deadline_s = commit_deadline_s
        self._failed_deliveries: list[str] = []
        callbacks = ClientCallbacks(
            consumer={"on_commit": self._on_commit, "stats_cb": self._on_statistics},
            producer={"on_delivery": self._on_delivery},
        )
        self.consumer, self.producer = clients(callbacks)

    # -- what steps and policies use

    def emit(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        partition: int | None = None,
        /,
    ) -> None:
        producer = self.producer
        while True:
            try:
                if partition is None:
                    producer.produce(topic, value, key, headers=headers)
                else:
                    producer.produce(topic, value, key, partition, headers=headers)
                return
            except BufferError:  # the local queue is full: let deliveries drain
                producer.poll(0.05)
                if self.stopping.is_set():
                    raise Stopped from None

    def flush(self, timeout_s: float | None) -> bool:
        """Wait for every produced record's acknowledgement; False if one failed, time ran out or we stop.

        ``timeout_s=None`` waits as long as it takes (backpressure: nothing is read meanwhile).
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.producer.flush(
            0.5 if deadline is None else min(0.5, max(0.0, deadline - time.monotonic()))
        ):
            if self.stopping.is_set() or (deadline is not None and time.monotonic() >= deadline):
                log.warning("%s: %d records not acknowledged, not committed", self.name, len(self.producer))
                return False
        if self._failed_deliveries:
            log.error(
                "%s: %d deliveries failed (first: %s)",
                self.name,
                len(self._failed_deliveries),
                self._failed_deliveries[0],
            )
            self.stats.delivery_failures += len(self._failed_deliveries)
            self._failed_deliveries.clear()
            return False
        return True

    def forget_failures(self) -> None:
        """Drop failed deliveries noted so far (their batch is being aborted and read again)."""
        self._failed_deliveries.clear()

    def commit(self, offsets: list[TopicPartition], synchronous: bool = False) -> bool:
        return commit(
            self.consumer,
            offsets,
            self.stats.commits,
            synchronous=synchronous,
            deadline_s=self.commit_deadline_s,
            stopping=self.stopping,
        )

    def rewind(self, offsets: list[TopicPartition]) -> None:
        """Seek back so these records are consumed again (partitions no longer assigned are skipped)."""
        for tp in offsets:
            if (tp.topic, tp.partition) not in self.stats.assigned:
                continue
            try:
                self.consumer.seek(tp)
            except Exception as exc:  # noqa: BLE001 - a partition revoked meanwhile: its next owner reads it
                log.warning(
                    "%s: seek to %s [%d] @%d failed: %s", self.name, tp.topic, tp.partition, tp.offset, exc
                )

    # -- the loop

    def run(self) -> None:
        try:
            if isinstance(self.source, Subscribe):
                self.consumer.subscribe(
                    self.source.topics,
                    on_assign=self._on_assign,
                    on_revoke=self._on_revoke,
                    on_lost=self._on_lost,
                )
            else:
                self.consumer.assign(self.source.partitions)
                self.stats.assigned |= {(tp.topic, tp.partition) for tp in self.source.partitions}
            self.policy.start(self)
            self.step.start(self)
            self._turns()
        finally:
            self._close()

    def next_batch(self) -> list[Message]:
        """What the consumer has already fetched, up to ``batch_size``, without waiting for more.

        Only when nothing is queued does it wait, up to ``linger_s``, for the first record
        and take it at once with whatever came with it: a batch never waits to fill, so a
        light load is served record by record and a heavy one in full batches.
        """
        consume = self.consumer.consume
        messages = consume(self.batch_size, 0)
        if messages:
            return messages
        first = self.consumer.poll(self.linger_s)
        if first is None:
            return []
        return [first, *consume(self.batch_size - 1, 0)] if self.batch_size > 1 else [first]

    def _turns(self) -> None:
        policy, step, stats = self.policy, self.step, self.stats
        while not self.stopping.is_set():
            messages = self.next_batch()
            records = [m for m in messages if not self._is_error(m)] if messages else []
            if policy.before(records) and records:
                started = time.perf_counter()
                try:
                    result = policy.process(records)
                except Stopped:
                    break
                stats.batches += 1
                stats.records += len(records)
                policy.after(records, result, time.perf_counter() - started)
            else:
                self.producer.poll(0)
            step.tick(self)
        step.finish(self)
        policy.finish()

    def _close(self) -> None:
        try:
            self.producer.flush(1.0)
        except Exception:
            log.warning("%s: producer flush at close failed", self.name, exc_info=True)
        try:
            self.consumer.close()
        except Exception:
            log.warning("%s: consumer close failed", self.name, exc_info=True)

    def _is_error(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return False
        self.stats.consumer_errors += 1
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning(
                "%s: consumer error on %s [%s]: %s", self.name, message.topic(), message.partition(), error
            )
        return True

    def note_positions(self, at: dict[TopicPartitionKey, Position]) -> None:
        """Remember the time of the last record read per partition (for lag in seconds)."""
        last = self.stats.last_record_ms
        for key, position in at.items():
            last[key] = position.timestamp_ms

    # -- callbacks (librdkafka calls them from consume/poll on this thread; none may raise)

    def _on_assign(self, consumer, partitions: list[TopicPartition]) -> None:
        try:
            self.step.assigned(partitions)
            consumer.assign(partitions)
            self.stats.assigned |= {(p.topic, p.partition) for p in partitions}
            log.info("%s: assigned %s", self.name, sorted((p.topic, p.partition) for p in partitions))
        except Exception:
            log.exception("%s: assigning partitions failed", self.name)

    def _on_revoke(self, consumer, partitions: list[TopicPartition]) -> None:
        self._leave(partitions, self.policy.revoked, self.step.revoked, "revoked")

    def _on_lost(self, consumer, partitions: list[TopicPartition]) -> None:
        self._leave(partitions, self.policy.lost, self.step.lost, "lost")

    def _leave(self, partitions: list[TopicPartition], settle, step_leave, how: str) -> None:
        try:
            settle(partitions)
        except Exception:
            log.exception("%s: settling %s partitions failed", self.name, how)
        try:
            step_leave(partitions)
        except Exception:
            log.exception("%s: the step failed on %s partitions", self.name, how)
        keys = {(p.topic, p.partition) for p in partitions}
        self.stats.assigned -= keys
        for key in keys:
            self.stats.lag.pop(key, None)
        log.info("%s: %s %s", self.name, how, sorted(keys))

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if error is None:
            return
        if error.code() == KafkaError._NO_OFFSET:
            return
        self.stats.commits.refused += 1
        log.warning("%s: asynchronous commit failed (%s): those records will be read again", self.name, error)

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failed_deliveries.append(f"{message.topic()}: {error}")

    def _on_statistics(self, text: str) -> None:
        try:
            self.stats.lag = lag_from_statistics(orjson.loads(text), self.stats.assigned)
        except Exception:
            log.debug("%s: unreadable statistics", self.name, exc_info=True)
