"""Drift partials over Kafka: every partition's window partials on one topic, one instance merging them.

Each drift instance writes the partial of every window its partitions close to the
``drift-partials`` topic (one partition; key ``name:version/wW/pP``), signed with the state
key and cut into chunks of at most ``CHUNK_BYTES`` (a 20-feature partial is 168 bytes an
event). The instance that owns partition 0 of ``monitor`` merges: a ``PartialsMerger``
follows the topic with a consumer of its own and hands the partials to a
``scoring.drift.WindowMerger``, which closes a window once every partition sent its share.

Its checkpoint (``APP/drift/merge`` on ``checkpoints``) says where to read the topic again
(the first chunk of the oldest partial still waiting for the others), which windows are
merged already and the merge's epoch, so a new merger after a rebalance or a crash neither
loses a waiting partial nor reports a window twice (at most the windows merged between the
last checkpoint and a crash are reported again, with the same CloudEvents id). The epoch
(epoch milliseconds when a merge started from nothing) is in every report's CloudEvents
id, so ids stay unique when the windows start again from 0 (a new state key, lost state).

Every record is untrusted input (issue 29), taken through ``shared.state_intake``: key and
chunk header checked and assembly bounded before the signature (bound to the topic, the
record key and the deployment), then the partial must be the one its key names, for a
partition of ``monitor``, with contents the topic and the clock allow
(``scoring.drift.bounds``), of a version this worker watches (one it was never told of is
refused after ``STREAMSCORE_DRIFT_VERSION_WAIT_S``). A refused record is counted by reason
and never holds the resume offset; none of it reaches a report, alert or retrain request.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from scoring.drift.bounds import report_problem
from scoring.drift.closing import ClosedWindow
from scoring.drift.merge import WindowKey, WindowMerger
from scoring.drift.partial import WindowPartial
from scoring.model.bundle import ModelBundle
from streams.kafka.config import reader_config
from streams.kafka.records import Emit
from streams.services.drift.partials import check_key, read_partial
from streams.services.drift.step import drift_thresholds
from streams.services.shared.checkpoints import CheckpointStore
from streams.services.shared.state_intake import (
    ChunkAssembler,
    StateIntake,
    StateRefusal,
    StateRejected,
    partition_number,
    record_key,
)
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class _Unwatched:
    """Partials of a version this merger was not told to watch: they wait a while, then are refused."""

    since: float  # monotonic time the first came
    partials: int = 0


class PartialsMerger:
    """Follows the partials topic while this instance merges; the merged windows come out of ``poll``."""

    def __init__(
        self,
        settings: Settings,
        prefix: str,
        key: bytes,
        partitions: int,
        intake: StateIntake,
        checkpoints: StateIntake,
    ) -> None:
        self.settings = settings
        self.key = key
        self.merger = WindowMerger(partitions, settings.drift_window_events, drift_thresholds(settings))
        self.store = CheckpointStore(settings, f"{prefix}/merge", key)
        self.intake = intake  # the step's, of drift-partials: its counts outlive a merger
        self.checkpoints = checkpoints  # the step's, of checkpoints
        self.chunks = ChunkAssembler(
            settings.state_assembly_max_bytes, lambda why: self.intake.refuse(StateRefusal.dropped, why)
        )
        self.epoch = int(time.time() * 1000)  # of a merge from nothing; a restored one keeps its own
        self._consumer: Consumer | None = None
        self._read_to: dict[int, int] = {}  # partials topic partition -> next offset
        self._waiting: dict[WindowKey, tuple[int, int]] = {}  # window -> (topic partition, offset)
        self._unwatched: dict[tuple[str, str], _Unwatched] = {}
        self._ends: dict[
            tuple[str, int], tuple[int, float]
        ] = {}  # source partition -> (end offset, asked at)
        self._source_partitions: dict[str, int] = {}
        self.merged = 0
        self.dirty = False  # windows merged since the last checkpoint
        self._written: dict[int, int] = {}  # the resume positions of the last checkpoint

    @property
    def active(self) -> bool:
        return self._consumer is not None

    def register(self, bundle: ModelBundle) -> list[ClosedWindow]:
        self._unwatched.pop((bundle.name, bundle.version), None)
        return self._merged(self.merger.register(bundle))

    def start(self, latest: dict[str, bytes]) -> None:
        """Merge from now on: resume from the checkpoint in ``latest`` (the topic read once), if any."""
        restored = self.store.restore_from(latest)
        where = f" {self.store.prefix}"
        if restored is not None:
            try:
                self._restore(restored.state)
            except (KeyError, TypeError, ValueError) as exc:
                self.checkpoints.refuse(
                    StateRefusal.content, f"not usable ({exc}): merging from nothing", where
                )
                thresholds = self.merger.thresholds
                self.merger = WindowMerger(
                    self.merger.partitions, self.settings.drift_window_events, thresholds
                )
                self._read_to, self.epoch = {}, int(time.time() * 1000)
        elif self.store.restore_problem is not None:
            self.checkpoints.refuse(self.store.restore_refusal, self.store.restore_problem, where)
        topic = self.settings.topic_drift_partials
        consumer = Consumer({**reader_config(self.settings, "drift-partials"), "fetch.max.bytes": 16 << 20})
        try:
            metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
            partitions = sorted(metadata.partitions) if metadata and metadata.partitions else [0]
            self._read_to = {p: o for p, o in self._read_to.items() if p in partitions}
            consumer.assign(
                [TopicPartition(topic, p, self._read_to.get(p, OFFSET_BEGINNING)) for p in partitions]
            )
        except KafkaException as exc:
            log.warning("cannot follow the drift partials on %s: %s", topic, exc)
            consumer.close()
            return
        self._consumer = consumer
        log.info(
            "merging the drift partials of %d partitions from %s (epoch %d)",
            self.merger.partitions,
            self._read_to,
            self.epoch,
        )

    def _restore(self, state: dict) -> None:
        positions = state["positions"]
        if not isinstance(positions, dict) or not all(
            isinstance(o, int) and 0 <= o < 2**63 for o in positions.values()
        ):
            raise ValueError("positions are not offsets")
        epoch = state["epoch"]
        if not isinstance(epoch, int) or not 0 < epoch <= time.time() * 1000 + 86_400_000:
            raise ValueError(f"epoch {epoch!r} is not a time")
        self.merger.restore_merged(state["merged"])
        self._read_to = {partition_number(p, 1 << 20): o for p, o in positions.items()}
        self.epoch = epoch

    def poll(self, budget: int = 200) -> list[ClosedWindow]:
        """Take what has arrived, without waiting, a few records at a time; the windows it completed."""
        if self._consumer is None:
            return []
        closed: list[ClosedWindow] = []
        while budget > 0:
            messages = self._consumer.consume(min(budget, 16), 0)  # chunks are up to 800 kB each
            budget -= 16
            for message in messages:
                if message.error() is not None:
                    continue
                self._read_to[message.partition()] = message.offset() + 1
                closed += self._take(message)
            if len(messages) < 16:
                break
        self._expire_unwatched()
        return closed

    def _take(self, message) -> list[ClosedWindow]:
        """One record of the topic: a chunk, a whole partial, or a refusal (counted, never raised)."""
        where = f" [{message.partition()}] @{message.offset()}"
        try:
            key = record_key(message.key())
            check_key(key, self.merger.partitions)
            whole = self.chunks.add(
                key, message.headers(), message.value(), message.partition(), message.offset()
            )
            if whole is None:
                return []
            partial = self._verified(key, whole[0])
        except StateRejected as exc:
            self.intake.refuse(exc.reason, str(exc), where)
            return []
        return self._add(partial, whole[1], whole[2])

    def _verified(self, key: str, signed: bytes) -> WindowPartial:
        """The partial in ``signed`` if signed here for ``key``, that key's own, possible and watched."""
        partial = read_partial(self.settings, self.key, key, signed, self.merger, self._end_offset)
        version = (partial.model_name, partial.model_version)
        unwatched = self._unwatched.get(version)
        if not self.merger.registered(*version) and unwatched is not None and unwatched.since < 0:
            raise StateRejected(StateRefusal.version, f"{key}: a version this worker was never told to watch")
        return partial

    def _add(self, partial: WindowPartial, topic_partition: int, offset: int) -> list[ClosedWindow]:
        version = (partial.model_name, partial.model_version)
        if not self.merger.registered(*version):
            self._unwatched.setdefault(version, _Unwatched(time.monotonic())).partials += 1
        closed = self.merger.add(partial)
        window = partial.key[:3]
        if window in set(self.merger.pending_windows()):
            self._waiting.setdefault(window, (topic_partition, offset))
        return self._merged(closed)

    def _expire_unwatched(self) -> None:
        """Partials of a version not watched within the wait are refused; the version's next ones at once."""
        deadline = time.monotonic() - self.settings.drift_version_wait_s
        for version, unwatched in self._unwatched.items():
            if 0 <= unwatched.since < deadline:
                dropped = self.merger.discard_version(*version)
                for window in [w for w in self._waiting if w[:2] == version]:
                    del self._waiting[window]
                for _ in range(dropped):
                    self.intake.refuse(
                        StateRefusal.version,
                        f"a partial of {version[0]}:{version[1]}, not watched here within "
                        f"{self.settings.drift_version_wait_s:g} s (STREAMSCORE_DRIFT_VERSION_WAIT_S)",
                    )
                unwatched.since = -1.0  # refused from now on, until the version is registered

    def _merged(self, closed: list[ClosedWindow]) -> list[ClosedWindow]:
        """The windows merged, less those whose statistics cannot be right; their pins released."""
        merger = self.merger
        for why in merger.refused:
            self.intake.refuse(StateRefusal.content, why)
        merger.refused = []
        out = []
        for window in closed:
            r = window.report
            self._waiting.pop((r.model_name, r.model_version, r.window), None)
            # each partition sends its windows in order: one still waiting below a merged one lost a
            # partial (refused, or never sent); it may still merge here, but it no longer holds the offset
            for earlier in [
                w for w in self._waiting if w[:2] == (r.model_name, r.model_version) and w[2] < r.window
            ]:
                del self._waiting[earlier]
            problem = report_problem(r)
            if problem is not None:
                self.intake.refuse(
                    StateRefusal.content, f"{r.model_name}:{r.model_version} window {r.window}: {problem}"
                )
                continue
            out.append(window)
        self.merged += len(out)
        self.dirty |= bool(closed)
        return out

    def _end_offset(self, topic: str, partition: int, reach: int) -> int | None:
        """The source partition's end offset as the broker reports it, asked again (at most once a second)
        when a span reaches past what was known; None for a partition the topic does not have."""
        if self._consumer is None:
            return 1 << 62
        try:
            if topic not in self._source_partitions:
                metadata = self._consumer.list_topics(topic, timeout=5).topics.get(topic)
                self._source_partitions[topic] = (
                    len(metadata.partitions) if metadata and metadata.partitions else 0
                )
            if not 0 <= partition < self._source_partitions[topic]:
                return None
            end, asked = self._ends.get((topic, partition), (-1, 0.0))
            if reach >= end and time.monotonic() - asked >= 1.0:
                _, end = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
                self._ends[(topic, partition)] = (end, time.monotonic())
        except KafkaException as exc:
            log.warning(
                "no end offset for %s [%d] (%s): its spans are not checked this time", topic, partition, exc
            )
            return 1 << 62
        return end

    def resume_positions(self) -> dict[int, int]:
        """Per partials partition, where a new merger must read from: nothing waiting is left behind."""
        out = dict(self._read_to)
        for tp, offset in [*self._waiting.values(), *self.chunks.pinned()]:
            out[tp] = min(out.get(tp, offset), offset)
        return out

    @property
    def due(self) -> bool:
        """A checkpoint would say something new: windows merged, or the resume positions moved."""
        return self.dirty or self.resume_positions() != self._written

    def checkpoint(self, emit: Emit) -> int:
        """Where to read again, the windows merged, the epoch (once their reports are acknowledged)."""
        self._written = self.resume_positions()
        positions = {str(p): o for p, o in self._written.items()}
        state = {"positions": positions, "merged": self.merger.merged_state(), "epoch": self.epoch}
        self.dirty = False
        return self.store.write(self.store.encode(state, None), emit, [], [])

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        self.chunks.clear()
