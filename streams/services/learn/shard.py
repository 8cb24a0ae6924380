"""One shard of the learn role: the learner state of one partition of ``monitor`` and ``labels``.

Monitoring records go to the monitor partition of their source partition, and labels keyed
by entity land on the labels partition of their event (``docs/scaling.md``), so partition
``p`` of both holds every event and label of a set of entities. A shard is the learner of
those: its label join, its KPIs, its error-stream detectors, the River challenger for
shard 0 only, and the positions it read to in both partitions. Its checkpoint is its own
(``PREFIX/pN``) and moves with the partition: the instance that is assigned partition
``p`` restores shard ``p`` from it and reads on from its positions, so nothing is counted
twice or lost on a rebalance.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from schemas.drift import DetectorChange
from scoring.drift.detectors import DetectorConfig
from scoring.feedback.join_segments import JoinSegments, SegmentPlan, restore_events
from scoring.feedback.label_join import PendingLabel
from scoring.feedback.loop import Learner
from scoring.model.bundle import ModelBundle
from streams.kafka.records import Emit
from streams.services.shared.checkpoints import CheckpointStore, Restored
from streams.services.shared.state_intake import StateRefusal
from streams.settings import Settings

log = logging.getLogger(__name__)

CHALLENGER_SHARD = 0  # the River challenger learns from partition 0's labels: a sample by entity hash
RECENT_CHANGES = 64  # a shard's latest detections, resent in each partial until newer ones push them out


def detector_config(settings: Settings, task: str) -> DetectorConfig:
    """The detectors on the error streams, as the settings say (``STREAMSCORE_CONCEPT_*``)."""
    binary = task != "regression"  # a classifier's error stream is 0/1: the served class was wrong
    return DetectorConfig(
        names=tuple(settings.concept_detectors.split(",")),
        kind="binary" if binary else "continuous",
        shift=settings.concept_shift_rate if binary else settings.concept_shift_sd,
        threshold=settings.concept_threshold,
        warmup=settings.concept_warmup,
    )


def learner_for(settings: Settings, bundle: ModelBundle, partition: int = CHALLENGER_SHARD) -> Learner:
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
        # the join's bound is the deployment's: each partition's shard keeps its share
        max_entries=max(1, settings.label_join_max // settings.partitions),
        train_challenger=partition == CHALLENGER_SHARD,
        detectors=detector_config(settings, bundle.task.value),
        classes=bundle.classes or (),
    )


@dataclass
class Shard:
    partition: int
    learner: Learner
    store: CheckpointStore
    segments: JoinSegments = field(default_factory=JoinSegments)
    positions: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> next offset to read
    extra: dict = field(default_factory=dict)  # more state for the checkpoint (shard 0: the estimate checks)
    dirty: bool = False
    # (model, detection), newest last: every partial carries them, the reporter skips the ones it saw
    changes: deque[tuple[str, DetectorChange]] = field(default_factory=lambda: deque(maxlen=RECENT_CHANGES))

    def resume(self, restored: Restored | None, fresh: Learner) -> bool:
        """Take a restored checkpoint (True), or start from ``fresh`` (False; ``store.restore_problem``
        says why when something was wrong with what the topic held)."""
        if restored is None:
            return False
        try:
            self._restore(restored)
            return True
        except Exception as exc:  # noqa: BLE001 - a state this learner cannot take: start fresh
            self.store.restore_problem = (
                f"the checkpoint does not fit this learner ({type(exc).__name__}: {exc})"
            )
            self.store.restore_refusal = StateRefusal.content
            log.error("shard %d: %s: starting fresh", self.partition, self.store.restore_problem)
            self.learner, self.positions, self.segments, self.extra = fresh, {}, JoinSegments(), {}
            return False

    def _restore(self, restored: Restored) -> None:
        state, objects = restored.state, restored.objects
        if state.get("partition") != self.partition:
            raise ValueError(f"a checkpoint of partition {state.get('partition')!r}, not {self.partition}")
        events = None
        if "segments" in state:
            open_part = (state["open"], objects["open_rows"])
            events, self.segments = restore_events(state["segments"], restored.segments, open_part)
        self.learner.restore(state, objects, events)
        self.positions = dict(state["positions"])
        self.extra = dict(state.get("extra", {}))
        log.info(
            "shard %d restored from checkpoint generation %d: %d events wait for labels",
            self.partition,
            restored.head.generation,
            len(self.learner.join.events),
        )

    def checkpoint(self, emit: Emit) -> tuple[SegmentPlan, int]:
        """The shard's state with its read positions; the waiting events in segments, new ones only.

        Returns the plan (``segments.done(plan)`` once the write is acknowledged) and the bytes written.
        """
        plan = self.segments.plan(self.learner.join)
        # made one by one as they are written: a checkpoint after a busy interval has many new segments
        segments = ((sid, self.store.encode_segment(sid, *plan.payload(sid))) for sid in plan.new)
        open_columns, open_rows = plan.open_payload()
        state = {
            **self.learner.state(),
            "partition": self.partition,
            "positions": self.positions,
            "extra": self.extra,
            "segments": plan.head(),
            "open": open_columns,
        }
        head = self.store.encode(state, {**self.learner.river_objects(), "open_rows": open_rows})
        return plan, self.store.write(head, emit, segments, plan.dropped)

    def partial(self) -> dict:
        """What the reporter needs of this shard: its board, join counts, paired tallies and recent
        detections (JSON)."""
        learner = self.learner
        return {
            "partition": self.partition,
            "board": learner.board.state(),
            "join": learner.join.counts(),
            "tallies": {k: vars(t) for k, t in learner.tallies.items()},
            "champion": learner.champion,
            "challenger": learner.challenger_name,
            "changes": [[model, change.model_dump(mode="json")] for model, change in self.changes],
        }


def unknown_classes(shards: Iterable[Shard]) -> int:
    """Multiclass: labels that named none of the model's classes (not measured)."""
    return sum(shard.learner.unknown_classes for shard in shards)


def holder_of(event_id: str, shard: Shard, shards: dict[int, Shard]) -> Shard:
    """The shard waiting for this label's event: its own partition's, else another of this instance's."""
    if event_id in shard.learner.join.events or len(shards) == 1:
        return shard
    return next((s for s in shards.values() if event_id in s.learner.join.events), shard)


def early_label_taker(
    shard: Shard, shards: dict[int, Shard], event_ids: Sequence[str]
) -> Callable[[str], PendingLabel | None] | None:
    """Takes an early label of one of ``event_ids`` waiting in another of this instance's shards
    (labels are not co-partitioned); None when no other shard holds one (the join then stores a
    batch of new events whole)."""
    holding = [s for s in shards.values() if s is not shard]
    others = [s for s in holding if not s.learner.join.labels.keys().isdisjoint(event_ids)]
    if not others:
        return None

    def take(event_id: str) -> PendingLabel | None:
        for other in others:
            label = other.learner.join.labels.pop(event_id, None)
            if label is not None:
                other.dirty = True
                return label
        return None

    return take
