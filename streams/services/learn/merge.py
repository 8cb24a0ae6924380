"""The KPIs of every learn shard as one: partials in, one ``MetricsSnapshot`` out.

Each shard publishes a partial at each of its checkpoints (``PREFIX/kpi/pN`` on the
compacted ``checkpoints`` topic): its KPI board, join counts and paired tallies, signed
with the state key as the checkpoints are, for that key (anyone may write to the topic;
only a worker of this deployment can write a partial the reporter takes, and only under
the key it was signed for). The reporting instance (the owner of partition 0) merges its
own shards' partials with the latest of the others', read by a ``PartialsFollower``, in
partition order, so the merged counts and sums are the same however the partitions are
spread over instances.

What the follower reads is untrusted (issue 29, ``shared.state_intake``): a key whose
partition is not a partition of ``monitor`` (``kpi/p7`` of two, ``kpi/p-1``, ``kpi/p 1``)
is refused unread; a partial must be signed for its own key, name that partition, and
hold counts that add up (``partial_problem``). Refusals are counted per reason.
"""

from __future__ import annotations

import logging
import math

from confluent_kafka import Consumer, KafkaException, TopicPartition

from schemas.drift import DetectorChange
from schemas.feedback import JoinCounts, MetricsSnapshot
from scoring import checkpoint
from scoring.errors import CheckpointRejected
from scoring.feedback.compare import PairedTally
from scoring.feedback.loop import snapshot_of
from scoring.metrics.kpis import KpiBoard
from streams.kafka.config import reader_config
from streams.services.shared.checkpoints import bound
from streams.services.shared.intake import Refusals
from streams.services.shared.state_intake import (
    StateIntake,
    StateRefusal,
    StateRejected,
    partition_number,
    record_key,
)
from streams.settings import Settings

log = logging.getLogger(__name__)


def partial_key(prefix: str, partition: int) -> str:
    """Where shard ``partition``'s KPI partial is written, ``prefix`` being the learn role's."""
    return f"{prefix}/kpi/p{partition}"


def encode_partial(settings: Settings, partial: dict, record_key: str, key: bytes) -> bytes:
    """A shard's partial as written to the topic: signed like a checkpoint, for its record key."""
    return checkpoint.encode(partial, None, key, bound(settings, settings.topic_checkpoints, record_key))


def decode_partial(
    settings: Settings, value: bytes | None, record_key: str, partition: int, key: bytes
) -> dict:
    """Partition ``partition``'s partial as read under ``record_key``; ``StateRejected`` saying why not."""
    try:
        partial, _ = checkpoint.decode(
            value or b"", key, bound(settings, settings.topic_checkpoints, record_key)
        )
    except CheckpointRejected as exc:
        raise StateRejected(StateRefusal.signature, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - whatever the bytes are, they are not a partial
        raise StateRejected(StateRefusal.shape, f"not a KPI partial ({type(exc).__name__})") from None
    if not isinstance(partial, dict):
        raise StateRejected(StateRefusal.shape, "not a KPI partial (not an object)")
    problem = partial_problem(partial, partition)
    if problem is not None:
        raise StateRejected(StateRefusal.content, problem)
    return partial


def partial_problem(partial: dict, partition: int) -> str | None:
    """Why a signed KPI partial cannot be shard ``partition``'s; None when it can."""
    if partial.get("partition") != partition:
        return f"a partial of partition {partial.get('partition')!r} under the key of partition {partition}"
    join = partial.get("join")
    if not isinstance(join, dict) or not set(join) <= set(JoinCounts.model_fields):
        return "join counts: not the join's"
    if not all(_count(v) for v in join.values()):
        return "join counts: not non-negative integers"
    try:
        board = KpiBoard.from_state(partial["board"])
        tallies = partial.get("tallies", {})
        for t in tallies.values():
            PairedTally(t["champion"], t["challenger"])
    except Exception as exc:  # noqa: BLE001 - a board or tally this code cannot take
        return f"not a KPI board or tallies ({type(exc).__name__})"
    for kpis in board.kpis.values():
        for name, value in vars(kpis).items():
            if name in ("recent", "window", "threshold", "classes"):
                continue
            for v in value if isinstance(value, list) else [value]:
                if type(v) is bool or not isinstance(v, int | float) or not math.isfinite(v):
                    return f"KPI {name}: {v!r} is not a finite number"
                if v < 0 and name not in _SIGNED_SUMS:
                    return f"KPI {name}: {v} is negative"
        counts = vars(kpis)
        if "tp" in counts and counts["tp"] + counts["fp"] + counts["tn"] + counts["fn"] != counts["n"]:
            return "KPI counts: tp + fp + tn + fn is not n"
        if "confusion" in counts and sum(counts["confusion"]) != counts["n"]:
            return "KPI counts: the confusion matrix does not add up to n"
    for name, tally in tallies.items():
        counts = [tally.get(k) for k in ("pairs", "only_champion_right", "only_challenger_right")]
        if not all(_count(c) for c in counts) or counts[1] + counts[2] > counts[0]:
            return f"tally {name}: counts that do not add up"
    return None


_SIGNED_SUMS = (
    "y_sum",
)  # a regression's sum of labels may be negative; every other KPI sum or count may not


def _count(value: object) -> bool:
    return type(value) is int and 0 <= value < 2**63


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

    def __init__(self, settings: Settings, prefix: str, refusals: Refusals) -> None:
        self.settings = settings
        self.prefix = partial_key(prefix, 0)[:-1]  # PREFIX/kpi/p
        self.intake = StateIntake(settings.topic_checkpoints, refusals)
        self._consumer: Consumer | None = None
        self._key = b""
        self._partitions = settings.partitions  # of monitor, read when following starts
        self._latest: dict[int, dict] = {}

    @property
    def refused(self) -> int:
        """Records under a partial's key that were not a signed partial of that key."""
        return self.intake.refused

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
            monitor = consumer.list_topics(self.settings.topic_monitor, timeout=10).topics.get(
                self.settings.topic_monitor
            )
            if monitor is not None and monitor.partitions:
                self._partitions = len(monitor.partitions)
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
            if message.error() is not None or not (message.key() or b"").startswith(self.prefix.encode()):
                continue
            try:
                key = record_key(message.key())
                partition = partition_number(key.removeprefix(self.prefix), self._partitions)
                if message.value() is None:
                    continue  # a tombstone: the shard's last partial stands until a new one comes
                self._latest[partition] = decode_partial(
                    self.settings, message.value(), key, partition, self._key
                )
                changed = True
            except StateRejected as exc:
                hint = " (every learn worker of a deployment needs the same STREAMSCORE_STATE_KEY)"
                where = f" [{message.partition()}] @{message.offset()} {message.key()[:80]!r}"
                self.intake.refuse(exc.reason, str(exc) + hint, where)
        return changed

    def partials(self) -> dict[int, dict]:
        return dict(self._latest)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
