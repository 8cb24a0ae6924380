"""The drift role over several workers: windows per partition of ``monitor``, merged by one (issue 21).

``STREAMSCORE_DRIFT_WINDOWS=partitions``. Each instance keeps a ``DriftShard`` per monitor
partition it owns in the drift group and publishes the partial of every window they close
(``partials.publish_partial``); the owner of partition 0 also merges the partials of
every partition (``PartialsMerger``) and publishes one report (and estimate) per window
and model version, the report one worker would publish for the same events, however the
partitions are spread over instances. Shards and the merger checkpoint where to read
again (``shards``, ``merge``), so a partition moves with its state.

The windows are cut by count only: ``STREAMSCORE_DRIFT_WINDOW_SECONDS`` does not apply,
and a merged window waits for its slowest partition (``docs/scaling.md``).

What this role reads of ``drift-partials`` and ``checkpoints`` is untrusted (issue 29):
refusals are counted per topic and reason (``shared.state_intake``); reports carry the
merge's epoch in their CloudEvents id.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import TopicPartition

from scoring.drift import DriftMonitor
from scoring.drift.closing import ClosedWindow
from scoring.drift.partitions import PartitionWindows
from scoring.model.bundle import ModelBundle
from scoring.model.monitor_rows import RecordShape
from streams.kafka.readers import end_offsets, partitions, read_latest
from streams.kafka.records import Emit, KafkaRecord
from streams.services.drift.merge import PartialsMerger
from streams.services.drift.partials import publish_partial
from streams.services.drift.shards import DriftShard
from streams.services.drift.step import COMMIT_EVERY_S, DriftStep, EstimateListener, ReportListener
from streams.services.loop.step import LoopContext
from streams.services.shared.checkpoints import RESTORE_IDLE_S, CheckpointStore, state_key
from streams.services.shared.intake import Refusal, Refusals
from streams.services.shared.monitor_decodes import MonitorDecodes
from streams.services.shared.state_intake import StateIntake, StateRefusal
from streams.settings import Settings

log = logging.getLogger(__name__)

MERGER_PARTITION = 0  # the owner of this monitor partition merges


class ShardedDriftStep(DriftStep):
    """Monitoring records to the shard of their partition; partials out; the merge where partition 0 is."""

    commits_itself = True

    def __init__(
        self,
        settings: Settings,
        monitor: DriftMonitor,
        refusals: Refusals,
        on_report: ReportListener | None = None,
        on_estimate: EstimateListener | None = None,
        decodes: MonitorDecodes | None = None,
    ) -> None:
        super().__init__(settings, monitor, refusals, on_report, on_estimate, decodes)
        self.prefix = f"{settings.faust_app_id}/drift"
        self.partitions = settings.partitions  # the monitor topic's own count, once the loop starts
        self.shards: dict[int, DriftShard] = {}
        self.bundles: list[ModelBundle] = []
        self._arriving: list[ModelBundle] = []  # registered from the serving thread, taken in the loop
        self.merger: PartialsMerger | None = None
        self.sharding = {"partials": 0, "partial_bytes": 0, "merged": 0, "restored": 0}
        self.partials_intake = StateIntake(settings.topic_drift_partials, refusals)
        self.checkpoints_intake = StateIntake(settings.topic_checkpoints, refusals)
        self._key = b""
        self._context: LoopContext | None = None
        self._last_checkpoint = time.monotonic()

    def register(self, bundle: ModelBundle) -> None:
        """Watch a model version (called from the serving thread: the loop takes it at its next turn)."""
        self.shapes[(bundle.name, bundle.version)] = RecordShape(bundle.spec, bundle.class_names)
        self._arriving.append(bundle)

    def stats(self) -> dict:
        merger = self.merger
        return {
            **self.sharding,
            **self.intake.decode_stats(),
            "refused_partials": self.partials_intake.refused,
            "refused_partials_by_reason": dict(self.partials_intake.counts),
            "refused_checkpoints": self.checkpoints_intake.refused,
            "partitions_owned": sorted(self.shards),
            "merging": merger is not None,
            "waiting_windows": len(merger.merger.pending_windows()) if merger else 0,
            "windows_without_estimate": merger.merger.windows_without_estimate() if merger else 0,
            "partials_resume_at": merger.resume_positions() if merger else {},
            "partials_held_bytes": merger.chunks.held_bytes if merger else 0,
            "open_window_events": sum(s.windows.open_events() for s in self.shards.values()),
            "unknown_version_events": sum(s.windows.unknown_version_events for s in self.shards.values()),
            # shards (and the merge) holding reads or closed windows not yet in a checkpoint
            "unsaved": sum(s.dirty or s.read_to != s.written_to for s in self.shards.values())
            + bool(merger is not None and merger.dirty),
        }

    # -- the loop's hooks

    def start(self, context: LoopContext) -> None:
        self._context = context
        self._key = state_key(self.settings)
        self.partitions = len(partitions(self.settings, self.settings.topic_monitor))

    def assigned(self, assignment: list[TopicPartition]) -> None:
        wanted = sorted({tp.partition for tp in assignment if tp.topic == self.settings.topic_monitor})
        coming = [p for p in wanted if p not in self.shards]
        merging = MERGER_PARTITION in wanted and self.merger is None
        latest: dict[str, bytes] = {}
        ends: dict[int, int] = {}
        if coming or merging:  # one read of the checkpoints topic for every shard that comes
            latest, _ = read_latest(
                self.settings, self.settings.topic_checkpoints, RESTORE_IDLE_S, self.prefix + "/"
            )
            ends = end_offsets(self.settings, self.settings.topic_monitor, coming)
        for p in coming:
            self.shards[p] = self._shard(p, latest, ends.get(p))
        for tp in assignment:
            shard = self.shards.get(tp.partition)
            resume = shard.resume_offset() if shard is not None else None
            if resume is not None:
                tp.offset = resume
        if merging:
            self.merger = PartialsMerger(
                self.settings,
                self.prefix,
                self._key,
                self.partitions,
                self.partials_intake,
                self.checkpoints_intake,
            )
            for bundle in self.bundles:
                self.merger.register(bundle)
            self.merger.start(latest)

    def revoked(self, assignment: list[TopicPartition]) -> None:
        """Checkpoint the shards (and the merge) leaving, before their next owner reads them."""
        leaving = {tp.partition for tp in assignment} & set(self.shards)
        if self._context is not None:
            self._checkpoint(self._context, [self.shards[p] for p in leaving], force=True)
        self._drop(leaving)

    def lost(self, assignment: list[TopicPartition]) -> None:
        """Another member may own them already: their state is dropped, not written."""
        self._drop({tp.partition for tp in assignment} & set(self.shards))

    def process(self, records: list, context: LoopContext) -> None:
        self._take_bundles(context.emit)
        super().process(records, context)

    def tick(self, context: LoopContext) -> None:
        self._take_bundles(context.emit)
        if self.merger is not None:
            self._closed(self.merger.poll(), context.emit)
        if time.monotonic() - self._last_checkpoint >= COMMIT_EVERY_S:
            self._checkpoint(context, list(self.shards.values()))

    def finish(self, context: LoopContext) -> None:
        self._checkpoint(context, list(self.shards.values()), force=True)
        if self.merger is not None:
            self.merger.stop()

    # -- records

    def handle(self, record: KafkaRecord, emit: Emit) -> None:
        counters = self.counters
        counters.messages += 1
        columns = self.intake.decode(record, emit)
        if columns is None:
            counters.unreadable += 1
            return
        shard = self.shards.get(record.partition())
        if shard is None:  # a record of a partition no longer ours (a rebalance under way)
            return
        try:
            partials = shard.observe(record.offset(), columns)
        except Exception as exc:
            log.exception("the drift windows failed on a monitoring record")
            counters.unreadable += 1
            self.intake.refuse(record, Refusal.failed, repr(exc), emit, type(exc).__name__)
            return
        counters.events += len(columns)
        for partial in partials:
            self.sharding["partial_bytes"] += publish_partial(self.settings, partial, self._key, emit)
            self.sharding["partials"] += 1

    def _closed(self, windows: list[ClosedWindow], emit: Emit) -> None:
        if self.merger is not None:
            self.epoch = self.merger.epoch  # in the reports' CloudEvents ids
        for window in windows:
            self._publish(window.report, emit)
            if window.estimate is not None:
                self._estimate(window.estimate, emit)
        self.sharding["merged"] += len(windows)

    # -- state

    def _shard(self, partition: int, latest: dict[str, bytes], end: int | None) -> DriftShard:
        store = CheckpointStore(self.settings, f"{self.prefix}/p{partition}", self._key)
        windows = PartitionWindows(partition, self.partitions, self.settings.drift_window_events)
        shard = DriftShard(partition, windows, store)
        restored = store.restore_from(latest)
        if restored is None and store.restore_problem is not None:
            self.checkpoints_intake.refuse(store.restore_refusal, store.restore_problem, f" {store.prefix}")
        if restored is not None:
            try:
                shard.restore(restored.state, end)
                self.sharding["restored"] += 1
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self.checkpoints_intake.refuse(
                    StateRefusal.content,
                    f"not usable ({exc!r}): partition {partition} starts fresh",
                    f" {store.prefix}",
                )
                fresh = PartitionWindows(partition, self.partitions, self.settings.drift_window_events)
                shard = DriftShard(partition, fresh, store)
        for bundle in self.bundles:
            shard.register(bundle)
        return shard

    def _take_bundles(self, emit: Emit) -> None:
        while self._arriving:
            bundle = self._arriving.pop(0)
            if any((b.name, b.version) == (bundle.name, bundle.version) for b in self.bundles):
                continue
            self.bundles.append(bundle)
            for shard in self.shards.values():
                shard.register(bundle)
            if self.merger is not None:
                self._closed(self.merger.register(bundle), emit)

    def _checkpoint(self, context: LoopContext, shards: list[DriftShard], force: bool = False) -> None:
        """Once the partials and reports so far are acknowledged: the shards' and the merge's positions."""
        self._last_checkpoint = time.monotonic()
        due = [s for s in shards if force or s.dirty or s.read_to != s.written_to]
        merger = self.merger if self.merger is not None and (force or self.merger.due) else None
        if not due and merger is None:
            return
        if not context.flush(10):
            log.error("drift partials or reports not acknowledged; the next checkpoint tries again")
            return
        for shard in due:
            if shard.read_to is not None:
                shard.checkpoint(context.emit)
        if merger is not None:
            merger.checkpoint(context.emit)
        if context.flush(10):
            # what was read, not where to read again: a restart reads from the checkpoints, and a shard
            # that cannot (lost or refused state) starts past every window reported, counting none twice
            commits = [
                TopicPartition(self.settings.topic_monitor, s.partition, s.read_to)
                for s in shards
                if s.read_to is not None
            ]
            context.commit(commits)

    def _drop(self, leaving: set[int]) -> None:
        for p in leaving:
            self.shards.pop(p, None)
        if MERGER_PARTITION in leaving and self.merger is not None:
            self.merger.stop()
            self.merger = None
