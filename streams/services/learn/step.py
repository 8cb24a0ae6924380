"""The learn role: joins ``labels`` to ``monitor``, publishes KPIs, trains the River challenger.

A service loop over both topics in its own consumer group (monitoring messages carry
hundreds of rows each; the join and River's ``learn_one`` are per-event Python work that
should not sit on the event loop). It also reads the performance estimates on ``drift``
and checks each window's against its labels (``estimates.py``).

The learner is sharded by partition (``learn_shard.py``): partition ``p`` of ``monitor``
and of ``labels`` hold the events and labels of the same entities, the group's range
assignor gives both to one instance, and that instance keeps shard ``p``: its join, KPIs
and detectors, checkpointed on their own and moved with the partition. Several learn
workers split the partitions; one of them, the owner of partition 0, reports: it merges
every shard's KPIs (its own, and the others' partials from the ``checkpoints`` topic)
into the ``MetricsSnapshot`` on ``metrics``. Counts and sums merge exactly, so the KPIs
are those of one learner that saw everything (``docs/scaling.md``).

Labels keyed by entity land with their events. A label on another partition than its
event (keyed by event id, say) still joins when one instance owns both partitions (one
learn worker: the usual case); across instances it waits and expires unmatched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import Message, TopicPartition

from schemas.checkpoint import StateAlert
from schemas.feedback import JoinCounts, MetricsSnapshot
from scoring.lifecycle.retrain import KpiWatch
from scoring.model.bundle import ModelBundle
from scoring.model.monitor_rows import RecordShape
from streams.kafka.config import SIDE_PREFETCH_KBYTES, group_consumer_config, producer_config
from streams.kafka.names import groups
from streams.kafka.readers import read_latest
from streams.services.learn.alerts import AlertListener, ConceptReports
from streams.services.learn.challenger import ChallengerDuties
from streams.services.learn.estimates import EstimateChecks
from streams.services.learn.merge import (
    PartialsFollower,
    encode_partial,
    merged_snapshot,
    partial_key,
    sum_tallies,
)
from streams.services.learn.shard import CHALLENGER_SHARD, Shard, early_label_taker, holder_of, learner_for
from streams.services.loop.policies import Never
from streams.services.loop.runner import kafka_clients, runner
from streams.services.loop.service_loop import ClientFactory
from streams.services.loop.stats import LoopStats
from streams.services.loop.step import LoopContext, Step, Subscribe
from streams.services.shared.checkpoints import RESTORE_IDLE_S, CheckpointStore, state_key
from streams.services.shared.intake import LabelIntake, MonitorIntake, Refusal, Refusals
from streams.services.shared.model_updates import WORKER_ID
from streams.services.shared.monitor_decodes import MonitorDecodes
from streams.settings import Settings

log = logging.getLogger(__name__)


class LearnStep(Step):
    """Feeds labels and monitoring records to the shard of their partition; snapshots and checkpoints."""

    def __init__(
        self,
        settings: Settings,
        bundle: ModelBundle,
        refusals: Refusals,
        on_snapshot: Callable[[MetricsSnapshot], None] | None = None,
        on_alert: AlertListener | None = None,
        decodes: MonitorDecodes | None = None,
    ) -> None:
        self.settings = settings
        self.bundle = bundle
        self.on_snapshot = on_snapshot
        threshold = settings.retrain_kpi_threshold
        self.kpi_watch = KpiWatch(threshold, bundle.task.value) if threshold is not None else None
        self.prefix = f"{settings.faust_app_id}/learn"
        self.shards: dict[int, Shard] = {}
        self.parked: dict[int, Shard] = {}  # revoked shards, kept in case their partitions come back
        self.estimates = EstimateChecks()  # each drift window's estimate against its labels
        self.challenger = ChallengerDuties(settings)
        self.concept = ConceptReports(settings, bundle.task.value, on_alert)  # the reporter's alerts
        self.followers = PartialsFollower(settings, self.prefix, refusals)
        self.counters = {
            "monitor_messages": 0,
            "labels": 0,
            "bad_messages": 0,
            "snapshots": 0,
            "restored": 0,
            "checkpoint_bytes": 0,
        }
        self.labels = LabelIntake(settings, refusals, bundle.classes or ())
        shape = RecordShape(bundle.spec, bundle.class_names)
        self.monitor = MonitorIntake(settings, refusals, lambda name, version: shape, decodes)
        self.drift_positions: dict[str, int] = {}
        self.pending_alerts: list[StateAlert] = []
        self._key: bytes | None = None
        self._context: LoopContext | None = None
        self._matched_at_snapshot = 0
        self._last_snapshot = time.monotonic()
        self._others_changed = False  # a shard of another instance published a new partial

    # -- shards

    def shard(self, partition: int, latest: dict[str, bytes] | None = None) -> Shard:
        """Shard ``partition``, restored from its checkpoint in ``latest`` (the topic read once) if any."""
        key = self._key or state_key(self.settings)
        store = CheckpointStore(self.settings, f"{self.prefix}/p{partition}", key)
        shard = Shard(partition, learner_for(self.settings, self.bundle, partition), store)
        restored = store.restore_from(latest or {})
        if shard.resume(restored, learner_for(self.settings, self.bundle, partition)):
            self.counters["restored"] += 1
            if partition == CHALLENGER_SHARD:
                self.estimates.restore(shard.extra.get("estimates"))
                self.drift_positions = dict(shard.extra.get("drift_positions", {}))
                self.concept.alerting.restore(shard.extra.get("concept"))
        elif store.restore_problem is not None:
            self.followers.intake.refuse(store.restore_refusal, store.restore_problem, f" {store.prefix}")
            self.pending_alerts.append(
                StateAlert(
                    role="learn",
                    problem=f"partition {partition}: {store.restore_problem}",
                    action="started fresh: its KPIs count from here, its waiting events and labels were lost",
                    worker=WORKER_ID,
                    created_at=int(time.time() * 1000),
                )
            )
        self.estimates.follow(shard.learner)
        return shard

    def join_counts(self) -> dict[str, int]:
        """The label join's counts over this instance's shards."""
        total = dict.fromkeys(JoinCounts.model_fields, 0)
        for shard in self.shards.values():
            for name, count in shard.learner.join.counts().items():
                total[name] = total.get(name, 0) + count
        return total

    @property
    def reporter(self) -> bool:
        """This instance merges and publishes the KPIs: it owns partition 0."""
        return CHALLENGER_SHARD in self.shards

    # -- the loop's hooks

    def start(self, context: LoopContext) -> None:
        self._context = context
        self._key = state_key(self.settings)

    def assigned(self, partitions: list[TopicPartition]) -> None:
        sides = (self.settings.topic_monitor, self.settings.topic_labels)
        wanted = sorted({tp.partition for tp in partitions if tp.topic in sides})
        coming = [p for p in wanted if p not in self.shards and p not in self.parked]
        latest: dict[str, bytes] = {}
        if coming:  # one read of the checkpoints topic for every shard that comes
            latest, _ = read_latest(
                self.settings, self.settings.topic_checkpoints, RESTORE_IDLE_S, self.prefix + "/p"
            )
        for p in wanted:
            if p not in self.shards:
                self.shards[p] = self.parked.pop(p, None) or self.shard(p, latest)
        self.parked.clear()
        for tp in partitions:
            name = f"{tp.topic}:{tp.partition}"
            shard = self.shards.get(tp.partition)
            position = self.drift_positions.get(name) if tp.topic == self.settings.topic_drift else None
            if shard is not None and tp.topic in sides:
                position = shard.positions.get(name)
            if position is not None:
                tp.offset = position
        following = self.reporter and len(self.shards) < self.settings.partitions
        self.followers.needed(following, self._key or state_key(self.settings))

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Checkpoint the shards of revoked partitions before their next owner reads them; park them."""
        leaving = {tp.partition for tp in partitions} & set(self.shards)
        if leaving and self._context is not None:
            self._checkpoint([self.shards[p] for p in leaving], self._context, force=True)
        for p in leaving:
            self.parked[p] = self.shards.pop(p)

    def lost(self, partitions: list[TopicPartition]) -> None:
        """Lost partitions may be owned by another member already: their state is dropped, not written."""
        for tp in partitions:
            if self.shards.pop(tp.partition, None) is not None:
                log.warning(
                    "partition %d lost: its shard is dropped; its next owner restores it", tp.partition
                )

    def process(self, records: list[Message], context: LoopContext) -> None:
        every = self.settings.metrics_every_labels
        for message in records:
            self._handle(message, context)
            # every N labels joined (a monitoring message can settle many early labels at once)
            if self._matched() - self._matched_at_snapshot >= every:
                self._snapshot(context)

    def tick(self, context: LoopContext) -> None:
        for alert in self.pending_alerts:
            context.emit(self.settings.topic_alerts, b"learn", alert.model_dump_json().encode(), None)
        self.pending_alerts.clear()
        self._others_changed |= self.followers.poll()
        if time.monotonic() - self._last_snapshot >= self.settings.metrics_interval_s:
            self._snapshot(context)

    def finish(self, context: LoopContext) -> None:
        self.followers.close()

    # -- one record

    def _handle(self, message: Message, context: LoopContext) -> None:
        """Feed one record to its shard; the intake refuses what it cannot take (dead letter, count)."""
        topic, name = message.topic(), f"{message.topic()}:{message.partition()}"
        if topic == self.settings.topic_drift:  # the drift windows' estimates, for their checks
            self.estimates.on_drift(message)
            self.drift_positions[name] = message.offset() + 1
            return
        shard = self.shards.get(message.partition())
        if shard is None:  # a record of a partition no longer ours (a rebalance under way)
            return
        shard.positions[name] = message.offset() + 1
        shard.dirty = True
        emit, labels = context.emit, topic == self.settings.topic_labels
        intake = self.labels if labels else self.monitor
        decoded = intake.decode(message, emit)
        if decoded is None:
            self.counters["bad_messages"] += 1
            return
        try:
            if labels:
                holder = holder_of(decoded.event_id, shard, self.shards)
                holder.dirty = True
                changes = holder.learner.label(decoded.event_id, decoded.label, decoded.label_time)
                self.counters["labels"] += 1
            else:
                holder = shard
                taker = early_label_taker(shard, self.shards, decoded.event_ids)
                changes = shard.learner.observe(decoded, taker)
                self.counters["monitor_messages"] += 1
        except Exception as exc:
            log.exception("the learner failed on a record")
            self.counters["bad_messages"] += 1
            intake.refuse(message, Refusal.failed, repr(exc), emit, type(exc).__name__)
            return
        for change in changes:  # the reporter merges every shard's into one alert per change
            model = next((m for m in holder.learner.detectors if m.endswith(":" + change.model_version)), "")
            holder.changes.append((model, change))
            holder.dirty = True
            log.info("shard %d: %s on the error stream of %s at %s", holder.partition, change.detector, model,
                     change.event_id)  # fmt: skip

    # -- snapshots and checkpoints

    def _matched(self) -> int:
        return sum(s.learner.join.matched for s in self.shards.values())

    def _snapshot(self, context: LoopContext) -> None:
        self._matched_at_snapshot, self._last_snapshot = self._matched(), time.monotonic()
        dirty = [s for s in self.shards.values() if s.dirty]
        if not dirty and not (self.reporter and self._others_changed):
            return  # nothing read since the last checkpoint, nothing new from the other shards
        snapshot = self._report(context) if self.reporter else None
        self._others_changed = False
        if not self._checkpoint(dirty, context):
            return
        self.counters["snapshots"] += 1
        if snapshot is not None and self.on_snapshot is not None:
            self.on_snapshot(snapshot)
        offsets = [
            TopicPartition(t, int(p), o)
            for positions in [self.drift_positions, *(s.positions for s in self.shards.values())]
            for t, p, o in _split_positions(positions)
        ]
        context.commit(offsets)  # for lag monitoring only: a restart reads the checkpoints' positions

    def _report(self, context: LoopContext) -> MetricsSnapshot:
        """The merged KPIs of every partition on ``metrics``; what follows from them (requests, promotion)."""
        s, emit = self.settings, context.emit
        partials = {**self.followers.partials(), **{p: shard.partial() for p, shard in self.shards.items()}}
        snapshot = merged_snapshot(partials, self.concept.collect(partials), s.segment_gap)
        newest = max(shard.learner.join.newest_time for shard in self.shards.values())
        snapshot = self.estimates.settle(snapshot, newest, s.label_ttl_seconds * 1000)
        emit(s.topic_metrics, snapshot.champion.encode(), snapshot.model_dump_json().encode(), None)
        self.concept.publish(snapshot, newest, emit)
        request = self.kpi_watch.check(snapshot) if self.kpi_watch is not None else None
        if request is not None:
            emit(s.topic_retrain, b"kpi", request.model_dump_json().encode(), None)
            log.warning("retraining requested: %s", request.reason)
        shard0 = self.shards[CHALLENGER_SHARD]
        self.challenger.export(shard0.learner, snapshot, emit)
        if s.auto_promote:
            self.challenger.promote_winners(sum_tallies(partials))
        return snapshot

    def _checkpoint(self, shards: list[Shard], context: LoopContext, force: bool = False) -> bool:
        """Each shard's checkpoint and KPI partial; True once the broker acknowledged them all."""
        plans = []
        for shard in shards:
            if not (shard.dirty or force):
                continue
            if shard.partition == CHALLENGER_SHARD:
                shard.extra = {
                    "estimates": self.estimates.state(),
                    "drift_positions": self.drift_positions,
                    "concept": self.concept.alerting.state(),
                }
            plan, written = shard.checkpoint(context.emit)
            self.counters["checkpoint_bytes"] += written
            key = partial_key(self.prefix, shard.partition)
            value = encode_partial(self.settings, shard.partial(), key, shard.store.key)
            context.emit(self.settings.topic_checkpoints, key.encode(), value, None)
            plans.append((shard, plan))
        if not context.flush(30):
            log.error("snapshot or checkpoint not acknowledged; next snapshot tries again")
            return False
        for shard, plan in plans:
            shard.segments.done(plan)
            shard.dirty = False
        return True


def run_learn(
    settings: Settings, step: LearnStep, stats: LoopStats, clients: ClientFactory | None = None
) -> Callable[[threading.Event], None]:
    consumer = group_consumer_config(
        settings, groups(settings).learn, fetch_wait_max_ms=100, prefetch_kbytes=SIDE_PREFETCH_KBYTES
    )
    # monitor p and labels p to the same member: the range assignor gives equal partition numbers together
    consumer["partition.assignment.strategy"] = "range"
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
