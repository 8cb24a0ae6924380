"""Drift partials over Kafka: every partition's window partials on one topic, one instance merging them.

Each drift instance writes the partial of every window its partitions close to the
``drift-partials`` topic (one partition; key ``name:version/wW/pP``), signed with the state
key and cut into chunks of at most ``CHUNK_BYTES`` (a 20-feature partial is 168 bytes an
event). The instance that owns partition 0 of ``monitor`` merges: a ``PartialsMerger``
follows the topic with a consumer of its own and hands the partials to a
``scoring.drift.WindowMerger``, which closes a window once every partition sent its share.

Its checkpoint (``APP/drift/merge`` on ``checkpoints``) says where to read the topic again
(the first chunk of the oldest partial still waiting for the others) and which windows are
merged already, so a new merger after a rebalance or a crash neither loses a waiting
partial nor reports a window twice (at most the windows merged between the last
checkpoint and a crash are reported again, with the same CloudEvents id).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from scoring import checkpoint
from scoring.drift.closing import ClosedWindow
from scoring.drift.merge import WindowMerger
from scoring.drift.partial import PartialRejected, WindowPartial
from scoring.errors import CheckpointRejected
from scoring.model.bundle import ModelBundle
from streams.kafka.config import reader_config
from streams.kafka.records import Emit
from streams.services.drift.step import drift_thresholds
from streams.services.shared.checkpoints import CheckpointStore
from streams.settings import Settings

log = logging.getLogger(__name__)

CHUNK_BYTES = 800_000
CHUNK_HEADER = "streamscore-chunk"


def publish_partial(settings: Settings, partial: WindowPartial, key: bytes, emit: Emit) -> int:
    """The partial on the partials topic, signed and in chunks; returns the bytes written."""
    data = checkpoint.sign(partial.to_bytes(), key)
    name = f"{partial.model_name}:{partial.model_version}/w{partial.window}/p{partial.partition}".encode()
    chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
    for i, chunk in enumerate(chunks):
        emit(settings.topic_drift_partials, name, chunk, [(CHUNK_HEADER, f"{i}/{len(chunks)}".encode())])
    return len(data)


@dataclass
class _Assembly:
    """The chunks of one partial read so far, and the offset of its first."""

    partition: int  # of the partials topic
    first_offset: int
    parts: list[bytes] = field(default_factory=list)


class PartialsMerger:
    """Follows the partials topic while this instance merges; the merged windows come out of ``poll``."""

    def __init__(self, settings: Settings, prefix: str, key: bytes, partitions: int) -> None:
        self.settings = settings
        self.key = key
        self.merger = WindowMerger(partitions, settings.drift_window_events, drift_thresholds(settings))
        self.store = CheckpointStore(settings, f"{prefix}/merge", key)
        self._consumer: Consumer | None = None
        self._read_to: dict[int, int] = {}  # partials topic partition -> next offset
        self._assembling: dict[bytes, _Assembly] = {}
        self._waiting: dict[tuple[str, str, int], tuple[int, int]] = {}  # window -> (topic partition, offset)
        self.refused = 0
        self.merged = 0
        self.dirty = False

    @property
    def active(self) -> bool:
        return self._consumer is not None

    def register(self, bundle: ModelBundle) -> list[ClosedWindow]:
        return self._merged(self.merger.register(bundle))

    def start(self, latest: dict[str, bytes]) -> None:
        """Merge from now on: resume from the checkpoint in ``latest`` (the topic read once), if any."""
        restored = self.store.restore_from(latest)
        if restored is not None:
            self.merger.restore_merged(restored.state["merged"])
            self._read_to = {int(p): int(o) for p, o in restored.state["positions"].items()}
        topic = self.settings.topic_drift_partials
        consumer = Consumer({**reader_config(self.settings, "drift-partials"), "fetch.max.bytes": 16 << 20})
        try:
            metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
            partitions = sorted(metadata.partitions) if metadata and metadata.partitions else [0]
            consumer.assign(
                [TopicPartition(topic, p, self._read_to.get(p, OFFSET_BEGINNING)) for p in partitions]
            )
        except KafkaException as exc:
            log.warning("cannot follow the drift partials on %s: %s", topic, exc)
            consumer.close()
            return
        self._consumer = consumer
        log.info("merging the drift partials of %d partitions from %s", self.merger.partitions, self._read_to)

    def poll(self) -> list[ClosedWindow]:
        """Take what has arrived, without waiting; the windows it completed."""
        if self._consumer is None:
            return []
        closed: list[ClosedWindow] = []
        for message in self._consumer.consume(200, 0):
            if message.error() is not None:
                continue
            self._read_to[message.partition()] = message.offset() + 1
            assembled = self._assemble(message)
            if assembled is not None:
                closed += self._add(*assembled)
        return closed

    def _assemble(self, message) -> tuple[bytes, int, int] | None:
        """A whole partial, its partition and first offset once its last chunk arrives (in order)."""
        key, value = message.key() or b"", message.value() or b""
        part = dict(message.headers() or []).get(CHUNK_HEADER, b"0/1").decode(errors="replace")
        try:
            index, count = (int(x) for x in part.split("/"))
        except ValueError:
            index, count = 0, 1
        if index == 0:
            self._assembling[key] = _Assembly(message.partition(), message.offset())
        assembly = self._assembling.get(key)
        if assembly is None or len(assembly.parts) != index:
            self._assembling.pop(key, None)  # a chunk out of order: the partial is refused below
            self.refused += 1
            return None
        assembly.parts.append(value)
        if len(assembly.parts) < count:
            return None
        del self._assembling[key]
        return b"".join(assembly.parts), assembly.partition, assembly.first_offset

    def _add(self, signed: bytes, topic_partition: int, offset: int) -> list[ClosedWindow]:
        try:
            partial = WindowPartial.from_bytes(checkpoint.verify(signed, self.key))
            closed = self.merger.add(partial)
        except (CheckpointRejected, PartialRejected) as exc:
            self.refused += 1
            log.warning(
                "drift partial skipped: %s (every drift worker of a deployment needs the same "
                "STREAMSCORE_STATE_KEY or STREAMSCORE_STATE_KEY_FILE, STREAMSCORE_PARTITIONS and "
                "STREAMSCORE_DRIFT_WINDOW_EVENTS)",
                exc,
            )
            return []
        window = partial.key[:3]
        if window in set(self.merger.pending_windows()):
            self._waiting.setdefault(window, (topic_partition, offset))
        return self._merged(closed)

    def _merged(self, closed: list[ClosedWindow]) -> list[ClosedWindow]:
        for window in closed:
            r = window.report
            self._waiting.pop((r.model_name, r.model_version, r.window), None)
        self.merged += len(closed)
        self.dirty |= bool(closed)
        return closed

    def resume_positions(self) -> dict[int, int]:
        """Per partials partition, where a new merger must read from: nothing waiting is left behind."""
        out = dict(self._read_to)
        assembling = [(a.partition, a.first_offset) for a in self._assembling.values()]
        for tp, offset in [*self._waiting.values(), *assembling]:
            out[tp] = min(out.get(tp, offset), offset)
        return out

    def checkpoint(self, emit: Emit) -> int:
        """Where to read again and which windows are merged (after their reports were acknowledged)."""
        positions = {str(p): o for p, o in self.resume_positions().items()}
        state = {"positions": positions, "merged": self.merger.merged_state()}
        self.dirty = False
        return self.store.write(self.store.encode(state, None), emit, [], [])

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        self._assembling.clear()
