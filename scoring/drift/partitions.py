"""Drift windows cut per partition, so K workers give the same windows as one (issue 21).

Window ``w`` of model version ``v`` is the union over partitions ``p = 0..P-1`` of
partition ``p``'s ``w``-th window, where partition ``p``'s windows are its own events of
``v``, in offset order, cut every ``quota = ceil(window_events / P)`` events. A
``PartitionWindows`` takes the monitoring columns of one partition in order and gives a
``WindowPartial`` each time one of its windows closes; ``scoring.drift.merge`` puts the
partials of a window together once every partition has closed it.

Why the count rule and not event time: a partition's windows then depend on nothing but
that partition's records, whoever reads them and however they interleave with other
partitions, with at most ``quota`` events held per version and partition, and a merged
window is exactly the window one ``VersionMonitor`` with ``window_events = quota * P``
closes when fed the partitions' windows one after the other. ``VersionMonitor``'s time
rule (``window_ms`` past the window's first event) is deterministic per partition too,
but each partition's clock then starts at its own first event, so the ``w``-th windows of
two partitions cover different stretches of time and "window w" means nothing across
them; buckets aligned on the epoch would align them, but need empty partials for buckets a
partition skips, a rule for partitions that start later than others, and no cap on the
events a bucket holds. The cost of counting: partitions that receive events at unequal
rates reach window ``w`` at different times, so a merged window spans the times of its
slowest and fastest partition (its report's start and end event times say how far), and
it is complete only once the slowest partition has closed it. A window holds
``quota * P >= window_events`` events (10,000 over 3 partitions: 3 x 3,334 = 10,002).

The score detectors (ADWIN, Page-Hinkley) run per partition and version, over that
partition's scores alone: their changes name the partition, and their positions count
that partition's events of the version.

>>> from scoring.offline.synthetic import numeric_frame
>>> from scoring.offline.training import train_bundle
>>> bundle = train_bundle(numeric_frame(2_000, n_features=4, seed=1), "y", num_trees=5)
>>> windows = PartitionWindows(partition=1, partitions=4, window_events=1_000)
>>> windows.quota, windows.register(bundle)
(250, True)
>>> rows = bundle.spec.encode_frame(numeric_frame(600, n_features=4, seed=2).drop(columns="y"))
>>> columns = MonitorColumns(bundle.name, bundle.version, "features", 1, range(600),
...                          [f"e{i}" for i in range(600)], range(600), bundle.predict(rows), rows)
>>> [(p.window, p.partition, p.events, p.spans[0].first_offset) for p in windows.observe(columns)]
[(0, 1, 250, 0), (1, 1, 250, 250)]
>>> windows.open_events()
100
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from schemas.drift import DetectorChange
from schemas.monitor import MonitorColumns
from scoring.drift.closing import spans_of
from scoring.drift.detectors import StreamDetectors
from scoring.drift.partial import WindowPartial
from scoring.model.bundle import ModelBundle


def partition_quota(window_events: int, partitions: int) -> int:
    """Events per partition window: the window's events shared out over the partitions, rounded up.

    >>> partition_quota(10_000, 3), partition_quota(10_000, 4), partition_quota(5, 8)
    (3334, 2500, 1)
    """
    if window_events < 1 or partitions < 1:
        raise ValueError("a window needs at least one event and one partition")
    return math.ceil(window_events / partitions)


@dataclass
class _OpenWindow:
    """One version's open window on this partition, and its score detectors."""

    detectors: StreamDetectors
    index: int = 0
    chunks: list[MonitorColumns] = field(default_factory=list)
    events: int = 0
    changes: list[DetectorChange] = field(default_factory=list)


class PartitionWindows:
    """The windows of one partition, for every registered model version, cut by the partition's own count.

    ``partition`` is a partition of the topic the worker reads (``monitor``), the unit a
    worker owns; feed it that partition's records in offset order.
    """

    def __init__(self, partition: int, partitions: int, window_events: int) -> None:
        if not 0 <= partition < partitions:
            raise ValueError(f"partition {partition} is not one of 0..{partitions - 1}")
        self.partition = partition
        self.partitions = partitions
        self.quota = partition_quota(window_events, partitions)
        self._open: dict[tuple[str, str], _OpenWindow] = {}
        self._widths: dict[tuple[str, str], int] = {}
        self.unknown_version_events = 0

    def register(self, bundle: ModelBundle) -> bool:
        """Cut windows of this model version; False if it was registered already."""
        key = (bundle.name, bundle.version)
        if key in self._open:
            return False
        self._open[key] = _OpenWindow(StreamDetectors("score", bundle.version))
        self._widths[key] = len(bundle.spec.features)
        return True

    def observe(self, columns: MonitorColumns) -> list[WindowPartial]:
        """Add the partition's next events, in order; returns the partials of the windows they closed."""
        key = (columns.model_name, columns.model_version)
        window = self._open.get(key)
        if window is None:
            self.unknown_version_events += len(columns)
            return []
        if columns.rows.ndim != 2 or columns.rows.shape[1] != self._widths[key]:
            raise ValueError(f"rows of shape {columns.rows.shape} for {self._widths[key]} features")
        scores = np.asarray(columns.scores, dtype=float)
        changes = window.detectors.update(scores, columns)
        closed: list[WindowPartial] = []
        start = 0
        while start < len(columns):
            stop = min(len(columns), start + self.quota - window.events)
            window.chunks.append(columns.take(start, stop))
            window.events += stop - start
            window.changes.extend(change for row, change in changes if start <= row < stop)
            start = stop
            if window.events == self.quota:
                closed.append(self._close(key, window))
        return closed

    def open_events(self) -> int:
        """Events held in open windows (at most ``quota`` per version)."""
        return sum(w.events for w in self._open.values())

    def versions(self) -> list[tuple[str, str]]:
        """The registered model versions, as (name, version)."""
        return list(self._open)

    def open_window(self, model_name: str, model_version: str) -> tuple[int, int] | None:
        """The version's open window: its index and the events it holds; None if not registered."""
        window = self._open.get((model_name, model_version))
        return None if window is None else (window.index, window.events)

    def resume(self, model_name: str, model_version: str, index: int) -> None:
        """Start the version's windows at ``index`` (a partition resumed from a checkpoint).

        Only before its first event here: the windows below ``index`` were closed elsewhere.
        """
        window = self._open[(model_name, model_version)]
        if window.events:
            raise ValueError(f"{model_name}:{model_version} has {window.events} events in its open window")
        window.index = index

    def _close(self, key: tuple[str, str], window: _OpenWindow) -> WindowPartial:
        chunks = window.chunks
        times = np.concatenate([np.asarray(c.event_times, dtype=np.int64) for c in chunks])
        partial = WindowPartial(
            model_name=key[0],
            model_version=key[1],
            partition=self.partition,
            partitions=self.partitions,
            window=window.index,
            quota=self.quota,
            start_time=int(times.min()),
            end_time=int(times.max()),
            spans=tuple(
                spans_of(
                    (c.source_topic, c.partition, int(min(c.offsets)), int(max(c.offsets))) for c in chunks
                )
            ),
            changes=tuple(window.changes),
            rows=np.concatenate([c.rows for c in chunks]).astype(np.float64, copy=False),
            scores=np.concatenate([np.asarray(c.scores, dtype=np.float64) for c in chunks]),
            probabilities=None
            if any(c.probabilities is None for c in chunks)
            else np.concatenate([np.asarray(c.probabilities, dtype=np.float64) for c in chunks]),
        )
        window.index += 1
        window.chunks, window.events, window.changes = [], 0, []
        return partial
