"""When a service loop commits its offsets: one class per rule.

=================  ======================================================  ===========
policy             commits                                                 used by
=================  ======================================================  ===========
``AfterAcks``      a batch's offsets once all its outputs are acknowledged  score
``Transactional``  outputs and offsets as one Kafka transaction per batch   score (EOS)
``Periodic``       what was read, every few seconds, after a flush          drift
``CommitPolicy``   nothing (the step commits itself, or nothing is owed)    learn, control
=================  ======================================================  ===========

Every policy settles what it holds when partitions are revoked, drops it when they are
lost (a commit would be refused: the session is gone) and settles at the end. A commit
refused because the group moved on is counted, never raised (``streams.kafka.offsets``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from streams.kafka.offsets import Position, TopicPartitionKey, first_offsets, positions, to_commit
from streams.services.loop.service_loop import CommitPolicy
from streams.services.loop.supervisor import Fatal

log = logging.getLogger(__name__)

_TXN_CALL_TIMEOUT_S = 1.0  # one wait of a transactional call; repeated until done or stopping
_FENCED = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})


def _note_and_finish(policy: CommitPolicy, records: list[Message], result: Any, seconds: float) -> None:
    policy.loop.note_positions(positions(records))
    policy.loop.step.committed(result, seconds)


class Never(CommitPolicy):
    """Commits nothing: the step commits what it has made durable itself, or nothing is owed."""

    def after(self, records: list[Message], result: Any, seconds: float) -> None:
        _note_and_finish(self, records, result, seconds)


@dataclass(frozen=True)
class _Pending:
    """A batch whose outputs are produced but not yet acknowledged, so not yet committed."""

    records: list[Message]
    result: Any
    seconds: float


class AfterAcks(CommitPolicy):
    """At-least-once: a batch's offsets are committed after every output of it is acknowledged.

    The wait for the acknowledgements overlaps the fetch of the next batch. If a delivery
    failed, the batch (and the one fetched after it) is consumed again.
    """

    def __init__(self) -> None:
        self._pending: _Pending | None = None

    def before(self, records: list[Message]) -> bool:
        if self._pending is None:
            return True
        return self._settle(fetched=records)

    def after(self, records: list[Message], result: Any, seconds: float) -> None:
        self._pending = _Pending(records, result, seconds)
        self.loop.producer.poll(0)

    def revoked(self, partitions: list[TopicPartition]) -> None:
        if self._pending is not None:  # hand over committed offsets, not a replay
            self._settle(synchronous=True)

    def lost(self, partitions: list[TopicPartition]) -> None:
        if self._pending is not None:
            log.warning(
                "%s: partitions lost with a batch in flight: its records will be read again", self.loop.name
            )
            self._pending = None

    def finish(self) -> None:
        if self._pending is not None:
            self._settle(synchronous=True)

    def _settle(self, fetched: list[Message] | None = None, synchronous: bool = False) -> bool:
        """Wait for the pending batch's outputs; commit its offsets if all were acknowledged.

        Otherwise seek back so the pending batch, and anything ``fetched`` after it, is
        consumed again; False then.
        """
        pending, self._pending = self._pending, None
        assert pending is not None
        loop = self.loop
        if not loop.flush(timeout_s=None):
            loop.rewind(first_offsets(pending.records + (fetched or [])))
            return False
        at = positions(pending.records)
        loop.note_positions(at)
        loop.commit(to_commit(at), synchronous=synchronous)
        loop.step.committed(pending.result, pending.seconds)  # delivered, whether or not the commit held
        return True


class Transactional(CommitPolicy):
    """Exactly-once: each batch's outputs and offsets are one transaction, committed or aborted together.

    The producer's ``transactional.id`` is stable across restarts of the worker instance,
    so a restart fences the previous incarnation and aborts its open transaction. A failed
    batch is aborted and consumed again. Batches do not overlap here.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    def start(self, loop) -> None:
        super().start(loop)
        self._call(loop.producer.init_transactions)  # fences an earlier incarnation of this instance
        log.info("%s: transactional producer ready", loop.name)

    def process(self, records: list[Message]) -> Any:
        loop = self.loop
        producer = loop.producer
        producer.begin_transaction()
        try:
            result = loop.step.process(records, loop)
            at = positions(records)
            producer.send_offsets_to_transaction(
                to_commit(at), loop.consumer.consumer_group_metadata(), self.timeout_s
            )
            committed = self._call(producer.commit_transaction)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() in _FENCED:  # a newer incarnation of this instance runs: leave it be
                raise Fatal(f"transactional producer fenced: {error}") from exc
            if error.fatal():  # the broker lost our state: a restart with a new producer mends it
                raise
            log.error("%s: transaction failed (%s); aborting, the batch is consumed again", loop.name, error)
            committed = False
        if not committed:
            self._abort()
            loop.rewind(first_offsets(records))
            return _ABORTED
        loop.note_positions(at)
        return result

    def after(self, records: list[Message], result: Any, seconds: float) -> None:
        if result is not _ABORTED:
            self.loop.step.committed(result, seconds)

    def _call(self, call) -> bool:
        """Repeat a transactional call that timed out until it completes (True) or the loop stops."""
        while True:
            try:
                call(_TXN_CALL_TIMEOUT_S)
                return True
            except KafkaException as exc:
                error = exc.args[0]
                if not error.retriable() or error.txn_requires_abort():
                    raise
                if self.loop.stopping.is_set():
                    log.warning("%s: stopping during %s: %s", self.loop.name, call.__name__, error)
                    return False

    def _abort(self) -> None:
        self.loop.forget_failures()
        try:
            self.loop.producer.abort_transaction(self.timeout_s)
        except KafkaException as exc:
            if exc.args[0].fatal():
                raise
            log.warning("%s: abort failed: %s", self.loop.name, exc.args[0])


_ABORTED = object()


class Periodic(CommitPolicy):
    """Commit what was read every ``every_s`` seconds, once the outputs before it are acknowledged.

    For derived data (drift windows live in memory): a restart reads at most ``every_s``
    of records again.
    """

    def __init__(self, every_s: float, flush_timeout_s: float = 10.0) -> None:
        self.every_s = every_s
        self.flush_timeout_s = flush_timeout_s
        self._read: dict[TopicPartitionKey, Position] = {}
        self._last = time.monotonic()

    def before(self, records: list[Message]) -> bool:
        if self._read and time.monotonic() - self._last >= self.every_s:
            self._commit(self._read)
        return True

    def after(self, records: list[Message], result: Any, seconds: float) -> None:
        at = positions(records)
        self._read.update(at)
        self.loop.note_positions(at)
        self.loop.step.committed(result, seconds)

    def revoked(self, partitions: list[TopicPartition]) -> None:
        keys = {(p.topic, p.partition) for p in partitions}
        self._commit({k: v for k, v in self._read.items() if k in keys}, synchronous=True)

    def lost(self, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            self._read.pop((p.topic, p.partition), None)

    def finish(self) -> None:
        self._commit(self._read, synchronous=True)

    def _commit(self, held: dict[TopicPartitionKey, Position], synchronous: bool = False) -> None:
        self._last = time.monotonic()
        if not held or not self.loop.flush(self.flush_timeout_s):
            return  # outputs not acknowledged yet: the next period tries again
        self.loop.commit(to_commit(held), synchronous=synchronous)
        for key in list(held):
            self._read.pop(key, None)
