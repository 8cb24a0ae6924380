"""One bounded intake for the topics of state, ``drift-partials`` and ``checkpoints`` (issue 29).

Anyone able to write to the cluster can write these topics, so a record of state is input
like a record of ``labels``: the drift merger, the KPI partials follower and checkpoint
restore take it through here before they use it. Each refusal is counted per topic and
reason (``streamscore_records_refused_total{topic, reason}`` on ``/metrics``, the series of
the side topics) and logged (the first ten of a reason, then at powers of two); nothing
raises out of a step, and nothing refused holds memory or a resume offset.

The rules, in the order they are checked:

- the record key: present, UTF-8, at most ``MAX_KEY_BYTES``; a partition number in it is
  ASCII digits without a sign or a leading zero, below the topic's partition count;
- a chunk header (``streamscore-chunk: i/n``): present once, ASCII digits,
  ``0 <= i < n <= MAX_CHUNKS``; every chunk but the last exactly ``chunk_bytes`` long, the
  last at most that: so a partial in flight is at most ``MAX_CHUNKS * chunk_bytes``;
- assembly, before any signature is checked: chunks of one key in order, at most
  ``max_assemblies`` keys and ``max_bytes`` (``STREAMSCORE_STATE_ASSEMBLY_MAX_BYTES``) in
  flight, the oldest dropped first; an assembly no chunk of which came in the last
  ``stale_records`` records read is dropped too (its writer gave up or never meant to end it);
- then the signature, bound to the topic, the record key and the deployment
  (``scoring.checkpoint``), and then the contents (the caller's checks).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from streams.services.shared.intake import Refusals

log = logging.getLogger(__name__)

CHUNK_HEADER = "streamscore-chunk"
CHUNK_BYTES = 800_000  # a signed partial is cut into chunks of this size (the last shorter)
# scoring.drift.partial's, not imported (scoring.drift brings scipy); a unit test holds them equal
MAX_PARTIAL_BYTES = 64 << 20
MAX_CHUNKS = math.ceil((MAX_PARTIAL_BYTES + 1_024) / CHUNK_BYTES)  # the largest partial, signed
MAX_KEY_BYTES = 1_024
MAX_ASSEMBLIES = 256  # keys with chunks in flight: one per writing worker is the usual count


class StateRefusal(StrEnum):
    """Why a record of a state topic was not used (a label of ``streamscore_records_refused_total``)."""

    key = "key"  # no key, not UTF-8, too long, or a partition outside the topic's
    header = "header"  # a chunk header missing, null, malformed, out of bounds or out of order
    size = "size"  # a value longer than its chunk or record can be, or none
    signature = "signature"  # not signed with the state key for this topic, record key and deployment
    shape = "shape"  # signed, but not a well-formed partial or checkpoint, or not the one its key names
    content = "content"  # signed and well formed, but impossible: windows, offsets, times, statistics, counts
    version = "version"  # a model version this worker was never told to watch, within the wait
    dropped = "dropped"  # an unfinished assembly dropped to stay within the bounds


class StateRejected(Exception):
    """A record of state not used, and why."""

    def __init__(self, reason: StateRefusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class StateIntake:
    """Counts and logs what one state topic's readers refuse."""

    def __init__(self, topic: str, refusals: Refusals) -> None:
        self.topic = topic
        self.refusals = refusals
        self.counts: dict[str, int] = {}

    @property
    def refused(self) -> int:
        return sum(self.counts.values())

    def refuse(self, reason: StateRefusal, message: str, where: str = "") -> None:
        self.refusals.refuse(self.topic, reason)
        n = self.counts[reason.value] = self.counts.get(reason.value, 0) + 1
        if n <= 10 or n & (n - 1) == 0:
            log.warning("%s%s refused (%s, %d so far): %s", self.topic, where, reason.value, n, message)


def record_key(raw: bytes | None) -> str:
    """The record's key as text, or ``StateRejected`` (``key``)."""
    if raw is None:
        raise StateRejected(StateRefusal.key, "no record key")
    if len(raw) > MAX_KEY_BYTES:
        raise StateRejected(StateRefusal.key, f"a record key of {len(raw)} bytes, over {MAX_KEY_BYTES}")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise StateRejected(StateRefusal.key, "a record key that is not UTF-8") from None


def partition_number(text: str, partitions: int) -> int:
    """A partition number as keys carry it: ASCII digits, no sign or leading zero, below ``partitions``."""
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or (len(text) > 1 and text[0] == "0"):
        raise StateRejected(StateRefusal.key, f"partition {text[:20]!r} is not a partition number")
    partition = int(text)
    if partition >= partitions:
        raise StateRejected(StateRefusal.key, f"partition {partition} of a topic of {partitions} partitions")
    return partition


def chunk_header(headers: list[tuple[str, bytes | None]] | None) -> tuple[int, int]:
    """(index, count) from a chunk's ``streamscore-chunk`` header: ``0 <= index < count <= MAX_CHUNKS``."""
    values = [v for k, v in headers or () if k == CHUNK_HEADER]
    if len(values) != 1:
        raise StateRejected(StateRefusal.header, f"{len(values)} {CHUNK_HEADER} headers, not one")
    value = values[0]
    if value is None:
        raise StateRejected(StateRefusal.header, f"a null {CHUNK_HEADER} header")
    index, slash, count = value.partition(b"/")
    if not (slash and _digits(index) and _digits(count)):
        raise StateRejected(StateRefusal.header, f"{CHUNK_HEADER} {value[:24]!r} is not 'index/count'")
    i, n = int(index), int(count)
    if not 0 <= i < n <= MAX_CHUNKS:
        raise StateRejected(
            StateRefusal.header, f"chunk {i} of {n}: a partial has 1 to {MAX_CHUNKS} chunks, numbered from 0"
        )
    return i, n


def _digits(text: bytes) -> bool:
    return 0 < len(text) <= 9 and text.isdigit()


@dataclass
class _Assembly:
    partition: int  # of the topic
    first_offset: int
    count: int
    last_read: int  # the assembler's record counter at its last chunk
    parts: list[bytes] = field(default_factory=list)
    size: int = 0


Whole = tuple[bytes, int, int]  # a whole record's bytes, its topic partition, the offset of its first chunk


class ChunkAssembler:
    """Chunks put back together in order, within bounds, before anything verifies them.

    ``on_drop(message)`` is told of each unfinished assembly dropped (the caller counts it).
    """

    def __init__(
        self,
        max_bytes: int,
        on_drop: Callable[[str], None],
        chunk_bytes: int = CHUNK_BYTES,
        stale_records: int = 1_000,
        max_assemblies: int = MAX_ASSEMBLIES,
    ) -> None:
        self.max_bytes = max_bytes
        self.on_drop = on_drop
        self.chunk_bytes = chunk_bytes
        self.stale_records = stale_records
        self.max_assemblies = max_assemblies
        self._assemblies: dict[tuple[int, str], _Assembly] = {}  # in the order they started
        self._bytes = 0
        self._read = 0

    @property
    def held_bytes(self) -> int:
        return self._bytes

    def add(
        self,
        key: str,
        headers: list[tuple[str, bytes | None]] | None,
        value: bytes | None,
        partition: int,
        offset: int,
    ) -> Whole | None:
        """Take one chunk; the whole record once its last chunk is in. ``StateRejected`` for a bad chunk."""
        self._read += 1
        self._drop_stale()
        index, count = chunk_header(headers)
        if value is None or not 0 < len(value) <= self.chunk_bytes:
            raise StateRejected(
                StateRefusal.size,
                f"a chunk of {0 if value is None else len(value)} bytes (1 to {self.chunk_bytes})",
            )
        if index < count - 1 and len(value) != self.chunk_bytes:
            raise StateRejected(
                StateRefusal.size,
                f"chunk {index} of {count} holds {len(value)} bytes, not {self.chunk_bytes}",
            )
        name = (partition, key)
        if index == 0:
            self._remove(name, "a new first chunk under its key")
            if count == 1:
                return value, partition, offset
            self._make_room(len(value))
            self._assemblies[name] = _Assembly(partition, offset, count, self._read)
        assembly = self._assemblies.get(name)
        if assembly is None or len(assembly.parts) != index or assembly.count != count:
            self._remove(name, "a chunk out of order under its key")
            raise StateRejected(StateRefusal.header, f"chunk {index} of {count} out of order")
        if index:
            self._make_room(len(value))
            if name not in self._assemblies:  # dropped itself to make room
                raise StateRejected(StateRefusal.dropped, f"chunk {index} of {count}: no room in flight")
        assembly.parts.append(value)
        assembly.size += len(value)
        assembly.last_read = self._read
        self._bytes += len(value)
        if len(assembly.parts) < count:
            return None
        self._remove(name, None)
        return b"".join(assembly.parts), assembly.partition, assembly.first_offset

    def pinned(self) -> list[tuple[int, int]]:
        """(topic partition, first offset) of every unfinished assembly: where a reader must read again."""
        return [(a.partition, a.first_offset) for a in list(self._assemblies.values())]

    def clear(self) -> None:
        self._assemblies.clear()
        self._bytes = 0

    def _make_room(self, size: int) -> None:
        while self._assemblies and (
            self._bytes + size > self.max_bytes or len(self._assemblies) >= self.max_assemblies
        ):
            oldest = next(iter(self._assemblies))
            self._remove(oldest, f"over {self.max_bytes} bytes or {self.max_assemblies} keys in flight")

    def _drop_stale(self) -> None:
        for name, assembly in list(self._assemblies.items()):
            if self._read - assembly.last_read > self.stale_records:
                self._remove(name, f"no chunk of it in the last {self.stale_records} records")

    def _remove(self, name: tuple[int, str], why: str | None) -> None:
        assembly = self._assemblies.pop(name, None)
        if assembly is None:
            return
        self._bytes -= assembly.size
        if why is not None:
            self.on_drop(
                f"{name[1]!r}: {len(assembly.parts)} of {assembly.count} chunks from offset "
                f"{assembly.first_offset} dropped: {why}"
            )
