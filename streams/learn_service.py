"""The learn role: joins ``labels`` to ``monitor``, publishes KPIs, trains the River challenger.

Like the batch score path, a ``mode.Service`` inside the Faust worker driving its own
confluent-kafka consumer on a thread (monitoring messages carry hundreds of rows
each, and the join and River's ``learn_one`` are per-event Python work that should
not sit on the event loop). Statistics and models live in ``scoring.feedback``.

State survives a restart through checkpoints on the compacted ``checkpoints`` topic:
every snapshot writes the learner's state together with the positions it had read to
in ``monitor`` and ``labels``, and a restarted learner seeks back to exactly those
positions, so each label is counted once. River objects travel as a pickle signed
with the worker's state key (``scoring.checkpoint``); a checkpoint that fails the
check is not loaded and the learner starts fresh.

The learner keeps KPIs over every partition of ``labels``: run one learn worker per
deployment (a second one would split the partitions and both would see half).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from pydantic import ValidationError

from schemas import headers as h
from schemas.feedback import ConceptDriftAlert, MetricsSnapshot
from schemas.messages import Label
from scoring import checkpoint
from scoring.bundle import ModelBundle
from scoring.feedback import Learner
from scoring.lifecycle import promote
from scoring.linear_model import linear_from_river
from scoring.retrain import KpiWatch
from streams.batch_path import consumer_config, producer_config
from streams.compacted import read_latest
from streams.control import live_update, publish_update
from streams.drift_agent import decode_monitor
from streams.settings import Settings
from streams.threaded import ThreadedService

log = logging.getLogger(__name__)

CHUNK_BYTES = 800_000  # a checkpoint larger than this is split over several messages
RESTORE_IDLE_S = 2.0  # the checkpoint topic is read until it stays quiet this long


class LearnService(ThreadedService):
    thread_name = "learn"

    def __init__(
        self,
        settings: Settings,
        bundle: ModelBundle,
        on_snapshot: Callable[[MetricsSnapshot], None] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(join_timeout_s=settings.shutdown_timeout_s, **kwargs)
        self.settings = settings
        self.on_snapshot = on_snapshot
        threshold = settings.retrain_kpi_threshold
        self.kpi_watch = KpiWatch(threshold, bundle.task.value) if threshold is not None else None
        segments = tuple(s.strip() for s in settings.segment_features.split(",") if s.strip())
        self.learner = Learner(
            bundle.spec,
            bundle.reference,
            bundle.task.value,
            threshold=bundle.metadata.threshold,
            window=settings.kpi_window,
            segment_features=segments,
            challenger=settings.challenger,
            ttl_ms=int(settings.label_ttl_seconds * 1000),
            max_entries=settings.label_join_max,
        )
        self.prefix = f"{settings.faust_app_id}/learn"
        self.positions: dict[str, int] = {}  # "topic:partition" -> next offset to read
        self.counters = {"monitor_messages": 0, "labels": 0, "bad_messages": 0, "snapshots": 0, "restored": 0}
        self.assigned: set[tuple[str, int]] = set()
        self._generation = 0
        self._previous_chunks = 0
        self._changes: list = []
        self._export_refused = False

    # -- lifecycle

    def _key(self) -> bytes:
        key = self.settings.state_key_bytes()
        if key is None:
            key = checkpoint.load_or_create_key(Path(self.settings.data_dir) / "state.key")
        return key

    # -- the loop

    def _run(self) -> None:
        s = self.settings
        key = self._key()
        self._restore(key)
        consumer = Consumer(consumer_config(s, f"{s.faust_app_id}-learn"))
        producer = Producer(producer_config(s))
        consumer.subscribe(
            [s.topic_monitor, s.topic_labels], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        matched_at_snapshot, last_snapshot = 0, time.monotonic()
        try:
            while not self._stopping.is_set():
                for message in consumer.consume(1000, 0.1):
                    if message.error() is not None:
                        if message.error().code() != KafkaError._PARTITION_EOF:
                            log.warning("consumer error: %s", message.error())
                        continue
                    self._handle(message, producer)
                    self.positions[f"{message.topic()}:{message.partition()}"] = message.offset() + 1
                    # every N labels joined (a monitoring message can settle many early labels at once)
                    if self.learner.join.matched - matched_at_snapshot >= s.metrics_every_labels:
                        self._snapshot(producer, consumer, key)
                        matched_at_snapshot, last_snapshot = self.learner.join.matched, time.monotonic()
                producer.poll(0)
                if time.monotonic() - last_snapshot >= s.metrics_interval_s:
                    self._snapshot(producer, consumer, key)
                    matched_at_snapshot, last_snapshot = self.learner.join.matched, time.monotonic()
        finally:
            producer.flush(5)
            consumer.close()

    def _handle(self, message: Message, producer: Producer) -> None:
        """Feed one message to the learner; an unreadable one is counted and skipped."""
        try:
            if message.topic() == self.settings.topic_labels:
                label = Label.model_validate_json(message.value() or b"")
                changes = self.learner.label(label.event_id, label.label, label.label_time)
                self.counters["labels"] += 1
                self._alert(changes, producer)
                return
            changes = self.learner.observe(decode_monitor(message.value() or b""))
            self.counters["monitor_messages"] += 1
            self._alert(changes, producer)
        except (ValidationError, ValueError, KeyError, TypeError) as exc:
            self.counters["bad_messages"] += 1
            log.warning(
                "unreadable message on %s [%d] @%d skipped: %s",
                message.topic(),
                message.partition(),
                message.offset(),
                exc,
            )

    def _alert(self, changes: list, producer: Producer) -> None:
        for change in changes:
            self._changes.append(change)
            model = next((m for m in self.learner.detectors if m.endswith(":" + change.model_version)), "")
            alert = ConceptDriftAlert(
                model=model,
                change=change,
                message=(
                    f"{change.detector} on the error stream of {model}: change at event {change.event_id} "
                    f"({change.source_topic} [{change.partition}] @{change.offset})"
                ),
                created_at=int(time.time() * 1000),
            )
            producer.produce(
                self.settings.topic_drift,
                alert.model_dump_json().encode(),
                model.encode(),
                headers=[(h.CE_TYPE, b"io.streamscore.concept-drift.alert.v1")],
            )
            log.warning("concept drift: %s", alert.message)

    # -- snapshots and checkpoints

    def _snapshot(self, producer: Producer, consumer: Consumer, key: bytes) -> None:
        snapshot = self.learner.snapshot(self._changes, self.settings.segment_gap)
        self._changes = []
        producer.produce(
            self.settings.topic_metrics, snapshot.model_dump_json().encode(), snapshot.champion.encode()
        )
        request = self.kpi_watch.check(snapshot) if self.kpi_watch is not None else None
        if request is not None:
            producer.produce(self.settings.topic_retrain, request.model_dump_json().encode(), b"kpi")
            log.warning("retraining requested: %s", request.reason)
        self._export_challenger(producer, snapshot)
        if self.settings.auto_promote:
            self._promote_winners()
        state = {**self.learner.state(), "positions": self.positions}
        payload = checkpoint.encode(state, self.learner.river_objects(), key)
        self._write_checkpoint(producer, payload)
        if producer.flush(30) > 0:
            log.error("snapshot or checkpoint not acknowledged; next snapshot tries again")
            return
        self.counters["snapshots"] += 1
        if self.on_snapshot is not None:
            self.on_snapshot(snapshot)
        offsets = [TopicPartition(t, int(p), o) for t, p, o in _split_positions(self.positions)]
        if offsets:
            consumer.commit(offsets=offsets, asynchronous=True)  # for lag monitoring only

    def _promote_winners(self) -> None:
        """Promote a shadow challenger that beats the champion on the same labelled events."""
        s = self.settings
        for tally in self.learner.tallies.values():
            if tally.promoted or not tally.challenger_wins(s.promote_min_pairs, s.promote_p_value):
                continue
            name, _, version = tally.challenger.rpartition(":")
            current, _ = live_update(s, name)
            if current is None or current.challenger is None or current.challenger.version != version:
                continue  # no longer the challenger
            reason = (
                f"won {tally.only_challenger_right} to {tally.only_champion_right} of {tally.pairs} "
                f"paired labelled events (McNemar p {tally.p_value():.2g})"
            )
            publish_update(s, promote(current, reason=reason))
            tally.promoted = True
            log.warning("promoted %s: %s", tally.challenger, reason)

    def _export_challenger(self, producer: Producer, snapshot: MetricsSnapshot) -> None:
        """The challenger as weights in JSON (no pickle), for ``streamscore model publish-challenger``."""
        try:
            model = linear_from_river(self.learner.challenger, self.learner.spec)
        except ValueError as exc:
            if not self._export_refused:
                log.info("the challenger is not exported as a bundle: %s", exc)
            self._export_refused = True
            return
        row = snapshot.overall(snapshot.challenger)
        export = {
            "model": model.model_dump(mode="json"),
            "metrics": {k: v for k, v in (row.cumulative if row else {}).items() if v is not None},
            "labels": row.count if row else 0,
            "created_at": snapshot.created_at,
        }
        producer.produce(self.settings.topic_checkpoints, orjson.dumps(export), challenger_key(self.settings))

    def _write_checkpoint(self, producer: Producer, payload: bytes) -> None:
        """Chunks under generation keys, then the head naming them, then tombstones for the last."""
        topic, previous = self.settings.topic_checkpoints, self._generation
        self._generation += 1
        chunks = [payload[i : i + CHUNK_BYTES] for i in range(0, len(payload), CHUNK_BYTES)] or [b""]
        for i, chunk in enumerate(chunks):
            producer.produce(topic, chunk, f"{self.prefix}/{self._generation}/{i}".encode())
        head = {"generation": self._generation, "chunks": len(chunks)}
        producer.produce(topic, orjson.dumps(head), f"{self.prefix}/head".encode())
        for i in range(self._previous_chunks):
            producer.produce(topic, None, f"{self.prefix}/{previous}/{i}".encode())
        self._previous_chunks = len(chunks)

    def _restore(self, key: bytes) -> None:
        latest, _ = read_latest(
            self.settings, self.settings.topic_checkpoints, RESTORE_IDLE_S, self.prefix + "/"
        )
        head = latest.get(f"{self.prefix}/head")
        if head is None:
            log.info("no learner checkpoint under %s: starting fresh", self.prefix)
            return
        meta = orjson.loads(head)
        parts = [latest.get(f"{self.prefix}/{meta['generation']}/{i}") for i in range(meta["chunks"])]
        if any(p is None for p in parts):
            log.error("learner checkpoint %s is incomplete: starting fresh", meta)
            return
        try:
            state, objects = checkpoint.decode(b"".join(parts), key)
        except checkpoint.CheckpointRejected:
            log.error("learner checkpoint signature does not match the state key: starting fresh")
            return
        self.learner.restore(state, objects)
        self.positions = dict(state["positions"])
        self._generation, self._previous_chunks = meta["generation"], meta["chunks"]
        self.counters["restored"] = 1
        log.info("learner restored from checkpoint generation %d", meta["generation"])

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            position = self.positions.get(f"{tp.topic}:{tp.partition}")
            if position is not None:
                tp.offset = position
        consumer.assign(partitions)
        self.assigned |= {(p.topic, p.partition) for p in partitions}

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned -= {(p.topic, p.partition) for p in partitions}


def challenger_key(settings: Settings) -> bytes:
    """Where the exported challenger is kept on the checkpoints topic (one learn worker per app)."""
    return f"{settings.app_id}/challenger-model".encode()


def _split_positions(positions: dict[str, int]) -> list[tuple[str, str, int]]:
    out = []
    for name, offset in positions.items():
        topic, _, partition = name.rpartition(":")
        out.append((topic, partition, offset))
    return out
