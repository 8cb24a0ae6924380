"""One partition of ``monitor`` in the drift role: its windows, and where to read again to rebuild them.

With ``STREAMSCORE_DRIFT_WINDOWS=partitions`` the drift windows are cut per partition
(``scoring.drift.partitions``): window ``w`` of a version is the ``w``-th run of
``quota`` events of that version on each partition. A ``DriftShard`` holds one
partition's windows. Its checkpoint (``APP/drift/pN`` on the ``checkpoints`` topic, signed
with the state key) is small: per version, the index of its open window and the position
(monitor offset, row in that record) of the open window's first event, plus the offset
read to. The events of an open window are not written anywhere: whoever owns the
partition next reads them again from there, so a rebalance or a SIGKILL loses no event
and counts none twice. The checkpoint is written after the partials of the windows it
moves past are acknowledged; a crash in between makes the next owner close those windows
again, and the merge drops the second copy.

The score detectors (ADWIN, Page-Hinkley) of a resumed partition start over from its open
window: their changes after a rebalance can differ from an uninterrupted run's.

A checkpoint is signed for its key (``APP/drift/pN``) and, once verified, still checked
before it is used (``restore``): it must be partition N's, read no further than the
partition's end as the broker reports it (twice that, plus room: Tansu's report lags), and
hold window indexes and positions that fit together. A fresh shard (no usable checkpoint)
starts where the drift group last committed, which is the offset read to at the last
checkpoint: it never counts again an event a reported window covered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.monitor import MonitorColumns
from scoring.drift.bounds import OFFSET_SLACK
from scoring.drift.partial import WindowPartial
from scoring.drift.partitions import PartitionWindows
from scoring.model.bundle import ModelBundle
from streams.kafka.records import Emit
from streams.services.shared.checkpoints import CheckpointStore

Position = tuple[int, int]  # monitor offset, row in that record


@dataclass
class DriftShard:
    """The windows of monitor partition ``partition`` and the positions that rebuild its open ones."""

    partition: int
    windows: PartitionWindows
    store: CheckpointStore
    starts: dict[str, Position] = field(default_factory=dict)  # version -> its open window's first event
    read_to: int | None = None  # the next monitor offset to read
    dirty: bool = False  # windows closed since the last checkpoint
    written_to: int | None = None  # ``read_to`` at the last checkpoint
    # from the checkpoint this shard resumed from (empty for a fresh one):
    resumed_to: int = 0  # records below this offset were read before
    resumed_starts: dict[str, Position] = field(default_factory=dict)
    resumed_index: dict[str, int] = field(default_factory=dict)  # version -> its open window then

    def register(self, bundle: ModelBundle) -> None:
        if self.windows.register(bundle):
            index = self.resumed_index.get(f"{bundle.name}:{bundle.version}")
            if index:
                self.windows.resume(bundle.name, bundle.version, index)

    def observe(self, offset: int, columns: MonitorColumns) -> list[WindowPartial]:
        """The record at ``offset`` of this partition; the partials of the windows it closed."""
        version = f"{columns.model_name}:{columns.model_version}"
        first_row = self._first_unread(version, offset)
        self.read_to = offset + 1
        if first_row is None:
            return []
        if first_row:
            columns = columns.take(first_row, len(columns))
        partials = self.windows.observe(columns)
        opened = self.windows.open_window(columns.model_name, columns.model_version)
        if opened is None:
            return partials  # a version not registered: counted by the windows, nothing to rebuild
        if opened[1] == 0:
            self.starts.pop(version, None)  # nothing open: nothing to read again for it
        elif partials or version not in self.starts:
            self.starts[version] = (offset, first_row + len(columns) - opened[1])
        self.dirty |= bool(partials)
        return partials

    def _first_unread(self, version: str, offset: int) -> int | None:
        """The first row of this record not counted before the resume; None for none."""
        if offset >= self.resumed_to:
            return 0
        start = self.resumed_starts.get(version, (self.resumed_to, 0))
        if offset < start[0]:
            return None
        return start[1] if offset == start[0] else 0

    def resume_offset(self) -> int | None:
        """Where to read this partition from to rebuild every open window: None if nothing was read."""
        if self.read_to is None:
            return None
        return min([self.read_to, *(offset for offset, _ in self.starts.values())])

    def state(self) -> dict:
        versions = {v: {"window": i, "start": None} for v, i in self.resumed_index.items()}
        for name, version in self.windows.versions():
            index, _ = self.windows.open_window(name, version) or (0, 0)
            start = self.starts.get(f"{name}:{version}")
            if index or start:
                versions[f"{name}:{version}"] = {"window": index, "start": list(start) if start else None}
        return {"partition": self.partition, "read_to": self.read_to, "versions": versions}

    def restore(self, state: dict, end: int | None = None) -> None:
        """Take a checkpoint (before any bundle is registered): read again from ``resume_offset``.

        ``end``: the partition's end offset as the broker reports it, if known. Raises
        ``ValueError`` (nothing taken) for a checkpoint of another partition or one that
        cannot be right.
        """
        if state.get("partition") != self.partition:
            raise ValueError(f"a checkpoint of partition {state.get('partition')!r}, not {self.partition}")
        read_to, versions = state["read_to"], state["versions"]
        if read_to is not None and not _offset(read_to):
            raise ValueError(f"read_to {read_to!r} is not an offset")
        if read_to is not None and end is not None and read_to > 2 * end + OFFSET_SLACK:
            raise ValueError(f"read to offset {read_to} of a partition whose end is {end}")
        if not isinstance(versions, dict) or len(versions) > 10_000:
            raise ValueError("versions: not an object of at most 10,000")
        indexes, starts = {}, {}
        for version, entry in versions.items():
            window, start = entry["window"], entry["start"]
            if not _offset(window):
                raise ValueError(f"{version}: window {window!r} is not a window index")
            indexes[version] = window
            if start is None:
                continue
            if not (isinstance(start, list) and len(start) == 2 and all(map(_offset, start))):
                raise ValueError(f"{version}: start {start!r} is not [offset, row]")
            if read_to is None or start[0] >= read_to:
                raise ValueError(f"{version}: an open window starting at {start[0]}, not before {read_to}")
            starts[version] = (start[0], start[1])
        self.read_to = read_to
        self.resumed_to = int(read_to or 0)
        self.resumed_index = indexes
        self.resumed_starts, self.starts = dict(starts), dict(starts)

    def checkpoint(self, emit: Emit) -> int:
        """The shard's state under its key; returns the bytes written (acknowledged at the next flush)."""
        head = self.store.encode(self.state(), None)
        self.dirty, self.written_to = False, self.read_to
        return self.store.write(head, emit, [], [])


def _offset(value: object) -> bool:
    return type(value) is int and 0 <= value < 2**63
