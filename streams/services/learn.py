"""The learn role: joins ``labels`` to ``monitor``, publishes KPIs, trains the River challenger.

A service loop over both topics in its own consumer group (monitoring messages carry
hundreds of rows each; the join and River's ``learn_one`` are per-event Python work that
should not sit on the event loop). Statistics and models live in ``scoring.feedback``.
It also reads the performance estimates on ``drift`` and checks each window's against
its labels (``estimates.py``): the checks go out inside the KPI snapshots.

State survives a restart through checkpoints (``checkpoints.py``): every snapshot writes
the learner's state with the positions it had read to in ``monitor`` and ``labels``, and
a restarted learner seeks back to exactly those positions, so each label is counted
once. The group's commits after a snapshot serve lag monitoring only.

The learner keeps KPIs over every partition of ``labels``: run one learn worker per
deployment (a second one would split the partitions and both would see half).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from pydantic import ValidationError

from schemas import headers as h
from schemas.feedback import ConceptDriftAlert, MetricsSnapshot
from schemas.messages import Label
from scoring import checkpoint
from scoring.bundle import ModelBundle
from scoring.feedback import Learner
from scoring.retrain import KpiWatch
from streams.kafka.config import group_consumer_config, producer_config
from streams.kafka.names import groups
from streams.services.challenger import ChallengerDuties
from streams.services.checkpoints import CheckpointStore
from streams.services.drift import decode_monitor
from streams.services.estimates import EstimateChecks
from streams.services.loop import (
    ClientCallbacks,
    ClientFactory,
    LoopContext,
    LoopStats,
    ServiceLoop,
    Step,
    Subscribe,
)
from streams.services.policies import Never
from streams.settings import Settings

log = logging.getLogger(__name__)


def learner_for(settings: Settings, bundle: ModelBundle) -> Learner:
    segments = tuple(s.strip() for s in settings.segment_features.split(",") if s.strip())
    return Learner(
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


def state_key(settings: Settings) -> bytes:
    if settings.state_key is not None:
        return bytes.fromhex(settings.state_key.get_secret_value())
    return checkpoint.load_or_create_key(Path(settings.data_dir) / "state.key")


class LearnStep(Step):
    """Feeds labels and monitoring records to the learner; snapshots and checkpoints it."""

    def __init__(
        self,
        settings: Settings,
        bundle: ModelBundle,
        on_snapshot: Callable[[MetricsSnapshot], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_snapshot = on_snapshot
        threshold = settings.retrain_kpi_threshold
        self.kpi_watch = KpiWatch(threshold, bundle.task.value) if threshold is not None else None
        self.bundle = bundle
        self.learner = learner_for(settings, bundle)
        self.estimates = EstimateChecks()  # each drift window's estimate against its labels
        self.estimates.follow(self.learner)
        self.challenger = ChallengerDuties(settings)
        self.positions: dict[str, int] = {}  # "topic:partition" -> next offset to read
        self.counters = {"monitor_messages": 0, "labels": 0, "bad_messages": 0, "snapshots": 0, "restored": 0}
        self.store: CheckpointStore | None = None
        self._changes: list = []
        self._matched_at_snapshot = 0
        self._last_snapshot = time.monotonic()

    # -- the loop's hooks

    def start(self, context: LoopContext) -> None:
        self.store = CheckpointStore(
            self.settings, f"{self.settings.faust_app_id}/learn", state_key(self.settings)
        )
        restored = self.store.restore()
        if restored is None:
            return
        try:
            self.learner.restore(restored.state, restored.objects)
            self.estimates.restore(restored.state.get("estimates"))
            self.positions = dict(restored.state["positions"])
        except Exception as exc:  # noqa: BLE001 - a state this learner cannot take: start fresh
            log.error("the checkpoint does not fit this learner (%r): starting fresh", exc)
            self.learner = learner_for(self.settings, self.bundle)
            self.estimates = EstimateChecks()
            self.estimates.follow(self.learner)
            self.positions = {}
            return
        self.counters["restored"] = 1
        log.info("learner restored from checkpoint generation %d", restored.head.generation)

    def assigned(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            position = self.positions.get(f"{tp.topic}:{tp.partition}")
            if position is not None:
                tp.offset = position

    def process(self, records: list[Message], context: LoopContext) -> None:
        every = self.settings.metrics_every_labels
        for message in records:
            self._handle(message, context)
            self.positions[f"{message.topic()}:{message.partition()}"] = message.offset() + 1
            # every N labels joined (a monitoring message can settle many early labels at once)
            if self.learner.join.matched - self._matched_at_snapshot >= every:
                self._snapshot(context)

    def tick(self, context: LoopContext) -> None:
        if time.monotonic() - self._last_snapshot >= self.settings.metrics_interval_s:
            self._snapshot(context)

    # -- one record

    def _handle(self, message: Message, context: LoopContext) -> None:
        """Feed one message to the learner; an unreadable one is counted and skipped."""
        try:
            if message.topic() == self.settings.topic_labels:
                label = Label.model_validate_json(message.value() or b"")
                changes = self.learner.label(label.event_id, label.label, label.label_time)
                self.counters["labels"] += 1
            elif message.topic() == self.settings.topic_drift:
                self.estimates.on_drift(message.value())
                return
            else:
                changes = self.learner.observe(decode_monitor(message.value() or b""))
                self.counters["monitor_messages"] += 1
        except (ValidationError, ValueError, KeyError, TypeError) as exc:
            self.counters["bad_messages"] += 1
            log.warning(
                "unreadable message on %s [%d] @%d skipped: %s",
                message.topic(),
                message.partition(),
                message.offset(),
                exc,
            )
            return
        for change in changes:
            self._alert(change, context)

    def _alert(self, change, context: LoopContext) -> None:
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
        headers = [(h.CE_TYPE, b"io.streamscore.concept-drift.alert.v1")]
        context.emit(self.settings.topic_drift, model.encode(), alert.model_dump_json().encode(), headers)
        log.warning("concept drift: %s", alert.message)

    # -- snapshots and checkpoints

    def _snapshot(self, context: LoopContext) -> None:
        self._matched_at_snapshot, self._last_snapshot = self.learner.join.matched, time.monotonic()
        s, emit = self.settings, context.emit
        snapshot = self.estimates.settle(self.learner.snapshot(self._changes, s.segment_gap), self.learner)
        self._changes = []
        emit(s.topic_metrics, snapshot.champion.encode(), snapshot.model_dump_json().encode(), None)
        request = self.kpi_watch.check(snapshot) if self.kpi_watch is not None else None
        if request is not None:
            emit(s.topic_retrain, b"kpi", request.model_dump_json().encode(), None)
            log.warning("retraining requested: %s", request.reason)
        self.challenger.export(self.learner, snapshot, emit)
        if s.auto_promote:
            self.challenger.promote_winners(self.learner)
        assert self.store is not None
        state = {**self.learner.state(), "estimates": self.estimates.state(), "positions": self.positions}
        self.store.write(self.store.encode(state, self.learner.river_objects()), emit)
        if not context.flush(30):
            log.error("snapshot or checkpoint not acknowledged; next snapshot tries again")
            return
        self.counters["snapshots"] += 1
        if self.on_snapshot is not None:
            self.on_snapshot(snapshot)
        offsets = [TopicPartition(t, int(p), o) for t, p, o in _split_positions(self.positions)]
        context.commit(offsets)  # for lag monitoring only: a restart reads the checkpoint's positions


def learn_clients(settings: Settings) -> ClientFactory:
    def make(callbacks: ClientCallbacks) -> tuple[Consumer, Producer]:
        config = {**group_consumer_config(settings, groups(settings).learn, fetch_wait_max_ms=100)}
        return Consumer({**config, **callbacks.consumer}), Producer(
            {**producer_config(settings), **callbacks.producer}
        )

    return make


def run_learn(
    settings: Settings, step: LearnStep, stats: LoopStats, clients: ClientFactory | None = None
) -> Callable[[threading.Event], None]:
    def run(stopping: threading.Event) -> None:
        ServiceLoop(
            "learn",
            clients or learn_clients(settings),
            step,
            Never(),
            Subscribe([settings.topic_monitor, settings.topic_labels, settings.topic_drift]),
            stopping,
            batch_size=1000,
            linger_s=0.1,
            stats=stats,
            commit_deadline_s=settings.session_timeout_s,
        ).run()

    return run


def _split_positions(positions: dict[str, int]) -> list[tuple[str, str, int]]:
    out = []
    for name, offset in positions.items():
        topic, _, partition = name.rpartition(":")
        out.append((topic, partition, offset))
    return out
