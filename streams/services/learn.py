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

from confluent_kafka import Message, TopicPartition

from schemas import headers as h
from schemas.checkpoint import StateAlert
from schemas.feedback import ConceptDriftAlert, MetricsSnapshot
from scoring import checkpoint
from scoring.bundle import ModelBundle
from scoring.feedback import Learner
from scoring.join_segments import JoinSegments, SegmentPlan, decode_events, encode_events, restore_events
from scoring.retrain import KpiWatch
from streams.kafka.config import SIDE_PREFETCH_KBYTES, group_consumer_config, producer_config
from streams.kafka.names import groups
from streams.services.challenger import ChallengerDuties
from streams.services.checkpoints import CheckpointStore, Restored
from streams.services.control import WORKER_ID
from streams.services.estimates import EstimateChecks
from streams.services.intake import LabelIntake, MonitorIntake, Refusal, Refusals
from streams.services.loop import ClientFactory, LoopContext, Step, Subscribe, kafka_clients, runner
from streams.services.loop_stats import LoopStats
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
    key = settings.state_key_bytes()
    if key is None:
        key = checkpoint.load_or_create_key(Path(settings.data_dir) / "state.key")
    return key


class LearnStep(Step):
    """Feeds labels and monitoring records to the learner; snapshots and checkpoints it."""

    def __init__(
        self,
        settings: Settings,
        bundle: ModelBundle,
        refusals: Refusals,
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
        self.counters = {
            "monitor_messages": 0,
            "labels": 0,
            "bad_messages": 0,
            "snapshots": 0,
            "restored": 0,
            "checkpoint_bytes": 0,
        }
        self.segments = JoinSegments()
        self._dirty = False
        self.store: CheckpointStore | None = None
        self.labels = LabelIntake(settings, refusals)
        self.monitor = MonitorIntake(settings, refusals, lambda name, version: self.learner.spec)
        self._changes: list = []
        self._matched_at_snapshot = 0
        self._last_snapshot = time.monotonic()

    # -- the loop's hooks

    def start(self, context: LoopContext) -> None:
        self.store = CheckpointStore(
            self.settings, f"{self.settings.faust_app_id}/learn", state_key(self.settings)
        )
        if self.resume(self.store.restore()):
            return
        if self.store.restore_problem is not None:
            alert = StateAlert(
                role="learn",
                problem=self.store.restore_problem,
                action="started fresh: KPIs count from here, waiting events and labels were lost",
                worker=WORKER_ID,
                created_at=int(time.time() * 1000),
            )
            context.emit(self.settings.topic_alerts, b"learn", alert.model_dump_json().encode(), None)

    def resume(self, restored: Restored | None) -> bool:
        """Take a restored checkpoint (True), or start fresh (False; ``store.restore_problem`` says why
        when something was wrong with what the topic held)."""
        assert self.store is not None
        if restored is not None:
            try:
                self._restore(restored)
                return True
            except Exception as exc:  # noqa: BLE001 - a state this learner cannot take: start fresh
                self.store.restore_problem = (
                    f"the checkpoint does not fit this learner ({type(exc).__name__}: {exc})"
                )
                log.error("%s: starting fresh", self.store.restore_problem)
                self.learner, self.positions, self.segments = (
                    learner_for(self.settings, self.bundle),
                    {},
                    JoinSegments(),
                )
                self.estimates = EstimateChecks()
                self.estimates.follow(self.learner)
        return False

    def _restore(self, restored: Restored) -> None:
        state, objects = restored.state, restored.objects
        events = None
        if "segments" in state:
            open_events = decode_events(state["open"], objects["open_rows"])
            events, self.segments = restore_events(state["segments"], restored.segments, open_events)
        self.learner.restore(state, objects, events)
        self.estimates.restore(state.get("estimates"))
        self.positions = dict(state["positions"])
        self.counters["restored"] = 1
        log.info(
            "learner restored from checkpoint generation %d: %d events wait for labels",
            restored.head.generation,
            len(self.learner.join.events),
        )

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
            self._dirty = True
            # every N labels joined (a monitoring message can settle many early labels at once)
            if self.learner.join.matched - self._matched_at_snapshot >= every:
                self._snapshot(context)

    def tick(self, context: LoopContext) -> None:
        if time.monotonic() - self._last_snapshot >= self.settings.metrics_interval_s:
            self._snapshot(context)

    # -- one record

    def _handle(self, message: Message, context: LoopContext) -> None:
        """Feed one record to the learner; the intake refuses what it cannot take (dead letter, count)."""
        if message.topic() == self.settings.topic_drift:  # the drift windows' estimates, for their checks
            self.estimates.on_drift(message)
            return
        emit = context.emit
        labels = message.topic() == self.settings.topic_labels
        intake = self.labels if labels else self.monitor
        decoded = intake.decode(message, emit)
        if decoded is None:
            self.counters["bad_messages"] += 1
            return
        try:
            if labels:
                changes = self.learner.label(decoded.event_id, decoded.label, decoded.label_time)
                self.counters["labels"] += 1
            else:
                changes = self.learner.observe(decoded)
                self.counters["monitor_messages"] += 1
        except Exception as exc:
            log.exception("the learner failed on a record")
            self.counters["bad_messages"] += 1
            intake.refuse(message, Refusal.failed, repr(exc), emit, type(exc).__name__)
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
        if not self._dirty:
            return  # nothing read since the last checkpoint: nothing to write
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
        plan = self._checkpoint(emit)
        if not context.flush(30):
            log.error("snapshot or checkpoint not acknowledged; next snapshot tries again")
            return
        self.segments.done(plan)
        self._dirty = False
        self.counters["snapshots"] += 1
        if self.on_snapshot is not None:
            self.on_snapshot(snapshot)
        offsets = [TopicPartition(t, int(p), o) for t, p, o in _split_positions(self.positions)]
        context.commit(offsets)  # for lag monitoring only: a restart reads the checkpoint's positions

    def _checkpoint(self, emit) -> SegmentPlan:
        """The learner's state with its read positions; the waiting events in segments, new ones only."""
        assert self.store is not None
        join = self.learner.join
        plan = self.segments.plan(join.events.values(), join.next_seq)
        segments = {sid: self.store.encode(*encode_events(events)) for sid, events in plan.new.items()}
        open_columns, open_rows = encode_events(plan.open_events)
        state = {
            **self.learner.state(),
            "estimates": self.estimates.state(),
            "positions": self.positions,
            "segments": plan.head(),
            "open": open_columns,
        }
        head = self.store.encode(state, {**self.learner.river_objects(), "open_rows": open_rows})
        self.counters["checkpoint_bytes"] += self.store.write(head, emit, segments, plan.dropped)
        return plan


def run_learn(
    settings: Settings, step: LearnStep, stats: LoopStats, clients: ClientFactory | None = None
) -> Callable[[threading.Event], None]:
    consumer = group_consumer_config(
        settings, groups(settings).learn, fetch_wait_max_ms=100, prefetch_kbytes=SIDE_PREFETCH_KBYTES
    )
    clients = clients or kafka_clients(consumer, producer_config(settings))
    subscribe = Subscribe([settings.topic_monitor, settings.topic_labels, settings.topic_drift])
    return runner(
        "learn", clients, step, Never, lambda: subscribe, stats, 1000, 0.1, settings.session_timeout_s
    )


def _split_positions(positions: dict[str, int]) -> list[tuple[str, str, int]]:
    out = []
    for name, offset in positions.items():
        topic, _, partition = name.rpartition(":")
        out.append((topic, partition, offset))
    return out
