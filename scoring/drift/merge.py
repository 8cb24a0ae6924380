"""Per-partition window partials put together: one report per window and model version (issue 21).

``merge_window`` concatenates the partials of one window in partition order and closes
it with the version's ``WindowCloser``, the code ``VersionMonitor`` closes its windows
with: the report is the one a single monitor gives for the same events in that order.
``WindowMerger`` collects partials as they come (from any worker, in any order, some
twice) and merges each window once every partition 0..P-1 has sent its partial.

Memory: the partials of windows still waiting for a partition (each ``8 * (features + 1)``
bytes per event), and one integer per merged window above the lowest still open.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from scoring.drift.bounds import scores_problem
from scoring.drift.closing import ClosedWindow, WindowCloser, WindowEvents, spans_of
from scoring.drift.compare import DriftThresholds
from scoring.drift.partial import PartialRejected, WindowPartial
from scoring.drift.partitions import partition_quota
from scoring.model.bundle import ModelBundle
from scoring.model.monitor_rows import probabilities_problem, spec_problem

log = logging.getLogger(__name__)

WindowKey = tuple[str, str, int]  # model name, model version, window


def merge_window(
    partials: Sequence[WindowPartial], closer: WindowCloser, created_at: int | None = None
) -> ClosedWindow:
    """The report and estimate of one window from one partial per partition 0..P-1.

    Raises ``ValueError`` when the partials are not exactly one window's, one per
    partition, or their rows are not inputs of the closer's model version.
    """
    if not partials:
        raise ValueError("no partials to merge")
    first = partials[0]
    ordered = sorted(partials, key=lambda p: p.partition)
    if [p.partition for p in ordered] != list(range(first.partitions)):
        raise ValueError(
            f"window {first.window} needs one partial per partition 0..{first.partitions - 1}, "
            f"got partitions {[p.partition for p in ordered]}"
        )
    for p in ordered:
        same = (p.model_name, p.model_version, p.window, p.partitions, p.quota)
        if same != (closer.name, closer.version, first.window, first.partitions, first.quota):
            raise ValueError(
                f"partial {p.key} is not of {closer.name}:{closer.version} window {first.window}"
            )
        problem = spec_problem(closer.spec.names, p.rows, closer.spec)
        if problem is not None:
            raise ValueError(f"partial {p.key}: not inputs of {closer.name}:{closer.version}: {problem}")
        problem = scores_problem(p.scores, closer.task)
        if problem is None:
            problem = probabilities_problem(closer.class_names, p.probabilities, closer.class_names)
        if problem is not None:
            raise ValueError(f"partial {p.key}: {problem}")
    events = WindowEvents(
        index=first.window,
        closed_by="events",
        rows=np.concatenate([p.rows for p in ordered]),
        scores=np.concatenate([p.scores for p in ordered]),
        start_time=min(p.start_time for p in ordered),
        end_time=max(p.end_time for p in ordered),
        spans=spans_of(
            (s.topic, s.partition, s.first_offset, s.last_offset) for p in ordered for s in p.spans
        ),
        changes=[c for p in ordered for c in p.changes],
        probabilities=None
        if first.probabilities is None
        else np.concatenate([p.probabilities for p in ordered]),
    )
    return closer.close(events, created_at)


class WindowMerger:
    """Collects the partials of every registered version; merges a window when all P partitions sent it.

    A partial seen twice (a worker re-sent it after a restart, the topic was read again)
    counts once; one for a window merged already is dropped. Partials of a version not
    registered yet wait, and are merged once it is.
    """

    def __init__(
        self, partitions: int, window_events: int = 10_000, thresholds: DriftThresholds | None = None
    ) -> None:
        self.partitions = partitions
        self.quota = partition_quota(window_events, partitions)
        self.thresholds = thresholds or DriftThresholds()
        self._closers: dict[tuple[str, str], WindowCloser] = {}
        self._pending: dict[WindowKey, dict[int, WindowPartial]] = {}
        self._merged_below: dict[tuple[str, str], int] = {}  # every window below merged
        self._merged: dict[tuple[str, str], set[int]] = {}  # merged windows at or above it
        self.duplicates = 0
        self.merge_failures = 0
        self.refused: list[str] = []  # why each window whose partials could not be merged was refused

    def register(self, bundle: ModelBundle) -> list[ClosedWindow]:
        """Merge windows of this model version; returns those its waiting partials complete."""
        version = (bundle.name, bundle.version)
        if version in self._closers:
            return []
        closer = self._closers[version] = WindowCloser(bundle, self.thresholds)
        if closer.estimator is None:
            log.warning("no performance estimate per merged drift window: %s", bundle.estimation_note)
        complete = [key for key, parts in self._pending.items() if key[:2] == version and self._full(parts)]
        return self._merge_all(complete)

    def add(self, partial: WindowPartial | bytes) -> list[ClosedWindow]:
        """Take one partial (or its bytes); returns the windows it completed, in window order.

        Raises ``PartialRejected`` (a ``ValueError``) for bytes that are not a partial, or a
        partial cut for another number of partitions or window size than this merger's.
        """
        if not isinstance(partial, WindowPartial):
            partial = WindowPartial.from_bytes(partial)
        if (partial.partitions, partial.quota) != (self.partitions, self.quota):
            raise PartialRejected(
                f"partial {partial.key} cut over {partial.partitions} partitions of {partial.quota} events, "
                f"this merger over {self.partitions} of {self.quota}"
            )
        version, key = partial.key[:2], partial.key[:3]
        parts = self._pending.get(key)
        if self._is_merged(version, partial.window) or (parts and partial.partition in parts):
            self.duplicates += 1
            return []
        parts = self._pending.setdefault(key, {})
        parts[partial.partition] = partial
        if not self._full(parts) or version not in self._closers:
            return []
        return self._merge_all([key])

    def merged_state(self) -> dict[str, list]:
        """Which windows were merged, per version: ``[below, [above...]]`` (every window under ``below``)."""
        versions = set(self._merged_below) | set(self._merged)
        return {
            f"{name}:{version}": [
                self._merged_below.get((name, version), 0),
                sorted(self._merged.get((name, version), ())),
            ]
            for name, version in sorted(versions)
        }

    def restore_merged(self, state: dict[str, list]) -> None:
        """Take ``merged_state`` back: partials of those windows are duplicates from now on."""
        if not isinstance(state, dict) or len(state) > 10_000:
            raise ValueError("merged windows: not an object of at most 10,000 versions")
        for name_version, entry in state.items():
            below, above = entry
            if not (_count(below) and isinstance(above, list) and len(above) <= 100_000):
                raise ValueError(f"merged windows of {name_version!r}: not [below, [windows above]]")
            if not all(_count(w) and w > below for w in above):
                raise ValueError(f"merged windows of {name_version!r}: not windows above {below}")
            name, _, version = name_version.rpartition(":")
            self._merged_below[(name, version)] = below
            self._merged[(name, version)] = set(above)

    def windows_without_estimate(self) -> int:
        """Merged windows with a report and no performance estimate (the bundle carries no estimator)."""
        return sum(closer.unestimated for closer in self._closers.values())

    def pending_windows(self) -> list[WindowKey]:
        """Windows some partition has sent and another has not, in order."""
        return sorted(self._pending)

    def registered(self, name: str, version: str) -> bool:
        return (name, version) in self._closers

    def discard_version(self, name: str, version: str) -> int:
        """Drop the waiting partials of a version not registered; how many there were."""
        keys = [key for key in self._pending if key[:2] == (name, version)]
        return sum(len(self._pending.pop(key)) for key in keys)

    def _full(self, parts: dict[int, WindowPartial]) -> bool:
        return len(parts) == self.partitions

    def _is_merged(self, version: tuple[str, str], window: int) -> bool:
        return window < self._merged_below.get(version, 0) or window in self._merged.get(version, ())

    def _merge_all(self, keys: list[WindowKey]) -> list[ClosedWindow]:
        closed = []
        for key in sorted(keys):
            parts = self._pending.pop(key)
            self._mark_merged(key)
            try:
                closed.append(merge_window(list(parts.values()), self._closers[key[:2]]))
            except (
                ValueError
            ) as exc:  # rows or scores the version cannot have: the window is lost, not the merger
                self.merge_failures += 1
                self.refused.append(str(exc))
                log.warning("%s:%s window %d: partials not merged: %s", *key, exc)
        return closed

    def _mark_merged(self, key: WindowKey) -> None:
        version, window = key[:2], key[2]
        merged = self._merged.setdefault(version, set())
        merged.add(window)
        below = self._merged_below.get(version, 0)
        while below in merged:
            merged.discard(below)
            below += 1
        self._merged_below[version] = below


def _count(value: object) -> bool:
    return type(value) is int and 0 <= value < 2**63
