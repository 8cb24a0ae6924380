"""The KPIs of every learn shard as one: partials in, one ``MetricsSnapshot`` out.

Each shard publishes a partial at each of its checkpoints (``PREFIX/kpi/pN`` on the
compacted ``checkpoints`` topic): its KPI board, join counts and paired tallies, signed
with the state key as the checkpoints are (anyone may write to the topic; only a worker
of this deployment can write a partial the reporter takes). The
reporting instance (the owner of partition 0) merges its own shards' partials with the
latest of the others', read by a ``PartialsFollower``, in partition order, so the merged
counts and sums are the same however the partitions are spread over instances.
"""

from __future__ import annotations

import logging

from confluent_kafka import Consumer, KafkaException, TopicPartition

from schemas.drift import DetectorChange
from schemas.feedback import MetricsSnapshot
from scoring import checkpoint
from scoring.errors import CheckpointRejected
from scoring.feedback.compare import PairedTally
from scoring.feedback.loop import snapshot_of
from scoring.metrics.kpis import KpiBoard
from streams.kafka.config import reader_config
from streams.settings import Settings

log = logging.getLogger(__name__)


def encode_partial(partial: dict, key: bytes) -> bytes:
    """A shard's partial as written to the topic: signed like a checkpoint."""
    return checkpoint.encode(partial, None, key)


def decode_partial(value: bytes | None, key: bytes) -> dict:
    """A partial read from the topic; ``ValueError`` if it is not one this deployment signed."""
    try:
        partial, _ = checkpoint.decode(value or b"", key)
    except CheckpointRejected as exc:
        raise ValueError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - whatever the bytes are, they are not a partial
        raise ValueError(f"not a KPI partial ({type(exc).__name__})") from None
    if not isinstance(partial, dict):
        raise ValueError("not a KPI partial (not an object)")
    return partial


def merged_snapshot(
    partials: dict[int, dict], changes: list[DetectorChange], gap_threshold: float
) -> MetricsSnapshot:
    """One snapshot of every partition's partial, merged in partition order."""
    ordered = [partials[p] for p in sorted(partials)]
    board = KpiBoard.merged([KpiBoard.from_state(part["board"]) for part in ordered])
    counts: dict[str, int] = {}
    for part in ordered:
        for name, count in part["join"].items():
            counts[name] = counts.get(name, 0) + count
    champion = next((part["champion"] for part in ordered if part.get("champion")), "")
    challenger = next((part["challenger"] for part in ordered if part.get("challenger")), "")
    return snapshot_of(board, counts, champion, challenger, changes, gap_threshold)


def sum_tallies(partials: dict[int, dict]) -> dict[str, PairedTally]:
    """Each champion/shadow-challenger pair's outcomes over every partition."""
    out: dict[str, PairedTally] = {}
    for p in sorted(partials):
        for key, tally in partials[p].get("tallies", {}).items():
            total = out.setdefault(key, PairedTally(tally["champion"], tally["challenger"]))
            total.pairs += tally["pairs"]
            total.only_champion_right += tally["only_champion_right"]
            total.only_challenger_right += tally["only_challenger_right"]
    return out


class PartialsFollower:
    """The latest KPI partial of every shard, read from the ``checkpoints`` topic while it is needed.

    Only the reporting instance that does not own every partition needs it; it reads the
    compacted topic once from the start, then follows it without waiting (``poll``).
    """

    def __init__(self, settings: Settings, prefix: str) -> None:
        self.settings = settings
        self.prefix = f"{prefix}/kpi/p"
        self._consumer: Consumer | None = None
        self._key = b""
        self._latest: dict[int, dict] = {}
        self.refused = 0  # records under a partial's key that were not a signed partial

    def needed(self, needed: bool, key: bytes) -> None:
        """Follow the partials (signed with ``key``) while ``needed``."""
        self._key = key
        if needed and self._consumer is None:
            self._start()
        elif not needed:
            self.close()

    def _start(self) -> None:
        topic = self.settings.topic_checkpoints
        consumer = Consumer(reader_config(self.settings, "kpi-partials"))
        try:
            metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
            partitions = sorted(metadata.partitions) if metadata and metadata.partitions else [0]
            consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        except KafkaException as exc:
            log.warning("cannot follow the KPI partials on %s: %s", topic, exc)
            consumer.close()
            return
        self._consumer = consumer

    def poll(self) -> bool:
        """Take what has arrived, without waiting; True when a partial changed."""
        if self._consumer is None:
            return False
        changed = False
        for message in self._consumer.consume(1000, 0):
            if message.error() is not None or message.value() is None:
                continue
            key = (message.key() or b"").decode(errors="replace")
            if not key.startswith(self.prefix):
                continue
            try:
                partition = int(key.removeprefix(self.prefix))
                self._latest[partition] = decode_partial(message.value(), self._key)
                changed = True
            except ValueError as exc:
                self.refused += 1
                log.warning(
                    "KPI partial %s skipped: %s (every learn worker of a deployment needs the same "
                    "STREAMSCORE_STATE_KEY or STREAMSCORE_STATE_KEY_FILE)",
                    key,
                    exc,
                )
        return changed

    def partials(self) -> dict[int, dict]:
        return dict(self._latest)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
