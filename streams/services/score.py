"""The batched score path: a Faust worker service driving its own consumer over ``features``.

Faust's per-message consumer and stream machinery caps an agent near 13,000
events/s on two cores (FIELD-NOTES), whatever the agent does. This service runs
inside the Faust worker and its lifecycle, but consumes and produces in batches
with a group-managed confluent-kafka consumer on a thread of its own, so the
event loop stays free for the web server and the other agents.

Delivery: at-least-once. A batch's offsets are committed only after every
prediction, dead letter and monitoring record of that batch is acknowledged by
the broker (``flush``). The wait for those acknowledgements overlaps the fetch
of the next batch; if any delivery fails, the batch is consumed again.
A crash before the commit replays the batch; predictions carry ``event_id`` so
consumers can deduplicate.

With ``processing_guarantee=exactly_once`` each batch is one Kafka transaction
instead: its outputs and its consumer offsets (``send_offsets_to_transaction``)
commit or abort together, under a ``transactional.id`` stable across restarts of the
worker instance, so a restart fences the previous incarnation and aborts its open
transaction. A failed batch is aborted and consumed again. Batches do not overlap
there (the commit waits for the acknowledgements); the default path is untouched.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streams.services.handler import OUTPUT_MESSAGE_BYTES, BatchListener, BatchStats, Headers, ScoreHandler
from streams.services.supervisor import ThreadedService
from streams.settings import Settings

log = logging.getLogger(__name__)

TRANSACTION_TIMEOUT_MS = 60_000
_TXN_CALL_TIMEOUT_S = 1.0  # one wait of a transactional call; repeated until done or stopping


def consumer_config(settings: Settings, group_id: str) -> dict:
    return {
        **settings.kafka_client_config(),
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": int(settings.session_timeout_s * 1000),
        "heartbeat.interval.ms": max(100, int(settings.session_timeout_s * 1000) // 3),
        # Tansu answers a waiting fetch only when this wait runs out, so it bounds latency
        # when the consumer is caught up. (queued.min.messages raised to 20000 cost 40% of
        # throughput on Tansu: measured 28.6k vs 49.6k events/s in one run.)
        "fetch.wait.max.ms": settings.fetch_wait_max_ms,
        "enable.partition.eof": False,
        # librdkafka's default, stated: input from a transactional producer is read once committed
        "isolation.level": "read_committed",
    }


def producer_config(settings: Settings) -> dict:
    config = {
        **settings.kafka_client_config(),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 2,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "partitioner": "murmur2_random",
        "message.max.bytes": OUTPUT_MESSAGE_BYTES,
        "delivery.report.only.error": True,
    }
    if settings.exactly_once:
        config["transactional.id"] = settings.transactional_id
        # an instance that dies and is not restarted blocks read_committed readers of its
        # partitions until the broker aborts its open transaction after this long
        config["transaction.timeout.ms"] = TRANSACTION_TIMEOUT_MS
    return config


@dataclass(frozen=True)
class _Pending:
    """A batch whose outputs are produced but not yet acknowledged, so not yet committed."""

    records: list[Message]
    stats: BatchStats
    seconds: float


class BatchScoreService(ThreadedService):
    """Consume a batch, score it, produce the results, wait for acks, commit; repeat."""

    thread_name = "score-batch"

    def __init__(
        self, settings: Settings, handler: ScoreHandler, on_batch: BatchListener | None = None, **kwargs
    ) -> None:
        super().__init__(join_timeout_s=settings.shutdown_timeout_s, **kwargs)
        self.settings = settings
        self.handler = handler
        self.on_batch = on_batch
        self._failed_deliveries: list[str] = []
        self._pending: _Pending | None = None
        self._producer: Producer
        self._consumer: Consumer
        self.assigned: set[tuple[str, int]] = set()

    def _run(self) -> None:
        settings = self.settings
        consumer = Consumer(consumer_config(settings, settings.group_id))
        producer = Producer({**producer_config(settings), "on_delivery": self._on_delivery_error})
        consumer.subscribe(
            [settings.topic_features],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )

        def emit(topic: str, key: bytes | None, value: bytes | None, headers: Headers | None) -> None:
            while True:
                try:
                    producer.produce(topic, value, key, headers=headers)
                    return
                except BufferError:  # local queue full: let deliveries drain
                    producer.poll(0.05)

        self._producer, self._consumer = producer, consumer
        try:
            if settings.exactly_once:
                self._run_transactions(consumer, producer, emit)
            else:
                self._run_at_least_once(consumer, producer, emit)
        finally:
            self._close(consumer, producer)

    def _run_at_least_once(self, consumer: Consumer, producer: Producer, emit) -> None:
        settings = self.settings
        linger_s = settings.batch_linger_ms / 1000.0
        while not self._stopping.is_set():
            # The previous batch's outputs are in flight while this fetch waits.
            messages = consumer.consume(settings.batch_size, linger_s)
            records = [m for m in messages if not _is_error(m)]
            if self._pending is not None and not self._settle(fetched=records):
                continue
            if not records:
                producer.poll(0)
                continue
            started = time.perf_counter()
            stats = self.handler.handle(records, emit)
            producer.poll(0)
            self._pending = _Pending(records, stats, time.perf_counter() - started)
        if self._pending is not None:
            self._settle(synchronous=True)

    def _run_transactions(self, consumer: Consumer, producer: Producer, emit) -> None:
        """One transaction per batch: outputs and offsets commit together or not at all."""
        settings = self.settings
        linger_s = settings.batch_linger_ms / 1000.0
        # fences an earlier incarnation of this instance and aborts its open transaction
        self._transactional_call(producer.init_transactions)
        log.info("transactional producer %s ready", settings.transactional_id)
        while not self._stopping.is_set():
            messages = consumer.consume(settings.batch_size, linger_s)
            records = [m for m in messages if not _is_error(m)]
            if not records:
                continue
            started = time.perf_counter()
            producer.begin_transaction()
            try:
                stats = self.handler.handle(records, emit)
                producer.send_offsets_to_transaction(
                    _next_offsets(records), consumer.consumer_group_metadata(), settings.shutdown_timeout_s
                )
                committed = self._transactional_call(producer.commit_transaction)
            except KafkaException as exc:
                error = exc.args[0]
                if error.fatal():  # fenced by a newer incarnation, or the broker lost our state
                    raise
                log.error("transaction failed (%s); aborting, the batch is consumed again", error)
                committed = False
            if not committed:
                self._abort(producer)
                _rewind(consumer, records)
                continue
            if self.on_batch is not None:
                self.on_batch(stats, time.perf_counter() - started)

    def _transactional_call(self, call) -> bool:
        """Repeat a transactional call that timed out until it completes (True) or the service stops."""
        while True:
            try:
                call(_TXN_CALL_TIMEOUT_S)
                return True
            except KafkaException as exc:
                error = exc.args[0]
                if not error.retriable() or error.txn_requires_abort():
                    raise
                if self._stopping.is_set():
                    log.warning("stopping during %s: %s", call.__name__, error)
                    return False

    def _abort(self, producer: Producer) -> None:
        self._failed_deliveries.clear()
        try:
            producer.abort_transaction(self.settings.shutdown_timeout_s)
        except KafkaException as exc:
            if exc.args[0].fatal():
                raise
            log.warning("abort failed: %s", exc.args[0])

    def _settle(self, fetched: list[Message] | None = None, synchronous: bool = False) -> bool:
        """Wait for the pending batch's outputs; commit its offsets if all were acknowledged.

        Otherwise seek back so the pending batch, and anything ``fetched`` after it, is
        consumed again; False then.
        """
        pending, self._pending = self._pending, None
        assert pending is not None
        if not self._flush(self._producer):
            _rewind(self._consumer, pending.records + (fetched or []))
            return False
        self._consumer.commit(offsets=_next_offsets(pending.records), asynchronous=not synchronous)
        if self.on_batch is not None:
            self.on_batch(pending.stats, pending.seconds)
        return True

    def _flush(self, producer: Producer) -> bool:
        """Wait until the broker acknowledged everything produced; False if any delivery failed."""
        while producer.flush(0.5) > 0:
            if self._stopping.is_set():
                log.warning(
                    "stopping with %d unacknowledged messages; their batch is not committed", len(producer)
                )
                return False
        if self._failed_deliveries:
            log.error(
                "%d deliveries failed (first: %s); consuming the batch again",
                len(self._failed_deliveries),
                self._failed_deliveries[0],
            )
            self._failed_deliveries.clear()
            return False
        return True

    def _close(self, consumer: Consumer, producer: Producer) -> None:
        deadline = time.monotonic() + self.settings.shutdown_timeout_s / 2
        while len(producer) and time.monotonic() < deadline:
            producer.flush(0.5)
        try:
            consumer.close()
        except Exception:
            log.warning("consumer close failed", exc_info=True)

    def _on_delivery_error(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failed_deliveries.append(f"{msg.topic()}: {err}")

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned |= {(p.topic, p.partition) for p in partitions}
        log.info("assigned %s", sorted(self.assigned))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._pending is not None:  # hand over committed offsets, not a replay
            self._settle(synchronous=True)
        self.assigned -= {(p.topic, p.partition) for p in partitions}
        log.info("revoked %s", [(p.topic, p.partition) for p in partitions])


def _is_error(message: Message) -> bool:
    error = message.error()
    if error is None:
        return False
    log.warning("consumer error on %s [%s]: %s", message.topic(), message.partition(), error)
    return True


def _next_offsets(records: list[Message]) -> list[TopicPartition]:
    """One past the highest offset seen per partition: the position to commit."""
    highest: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic(), record.partition())
        offset = record.offset()
        if offset >= highest.get(key, -1):
            highest[key] = offset
    return [TopicPartition(t, p, o + 1) for (t, p), o in highest.items()]


def _rewind(consumer: Consumer, records: list[Message]) -> None:
    """Seek each partition back to the first offset of the batch, to consume it again."""
    lowest: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic(), record.partition())
        lowest[key] = min(lowest.get(key, record.offset()), record.offset())
    for (topic, partition), offset in lowest.items():
        consumer.seek(TopicPartition(topic, partition, offset))
