"""Estimated against realized per window: each label goes to the window whose estimate it checks.

The learn path keeps the ``PerformanceEstimate`` of every closed drift window (read
from the ``drift`` topic) until the window's labels are in. A labelled event whose
model version, source topic, partition and offset fall in a window's spans adds its
label and score to that window. A window settles when every one of its events got a
label, or once no more can come (its last event is older than the label TTL against
the newest event seen, so the join has let its events go). Settling gives one
``EstimateCheck`` (``check_estimate``) against the KPIs realized from the labels it
got; a window that got none settles with nothing to check and is only counted.

A multiclass model's labelled event brings its class index (as ``label``) and its K class
probabilities; its window's realized KPIs are ``MulticlassKpis`` (accuracy, macro F1 and
macro one-vs-rest AUC are checked against the estimates of the same names).

A realized KPI outside the estimate's band counts as a disagreement only past the
accuracy asked of the estimator (``FLOORS``: 0.02 for KPIs in [0, 1], 10% of the
estimate for error KPIs): the band's estimator part is a rough figure, and a
regression model's loss models were seen to sit 4-6% low on windows where nothing
had changed (docs/estimation.md). Concept drift moves the KPIs far past that.

Labels that come before their window's estimate (the drift path closes a window and
the learner reads its estimate a moment later) wait in a bounded buffer and are
matched when it arrives. A pending window keeps the realized KPIs as sums (``scoring.metrics.kpis``:
counts, and for a binary model two 1,000-bin score histograms, a multiclass model's per class,
so the realized AUC is exact up to pairs within a bin), whatever its size; at most ``max_windows`` windows
and ``max_early`` early labels wait. A checkpoint holds the pending windows, not the
early labels: after a restart their windows settle with the labels they have (the
check widens its band for the share labelled).

>>> from schemas.drift import PartitionSpan
>>> estimate = PerformanceEstimate(model_name="m", model_version="1", task="regression", window=0,
...     spans=[PartitionSpan(topic="features", partition=0, first_offset=0, last_offset=2)], events=3,
...     band_z=3.0, metrics=[], created_at=0)
>>> ledger = EstimateLedger()
>>> ledger.add(estimate)
>>> [ledger.labelled("m:1", "features", 0, offset, 1.0, 1.5) for offset in (0, 1, 2, 3)]
[True, True, True, False]
>>> [(c.window, c.labelled) for c in ledger.settle(newest_event_time=0, ttl_ms=1000)]
[(0, 3)]
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from schemas.estimation import EstimateCheck, PerformanceEstimate
from schemas.keys import ModelKey
from scoring.estimation.check import check_estimate
from scoring.metrics.kpis import BinaryKpis, Kpis, RegressionKpis
from scoring.metrics.multiclass import MulticlassKpis

Key = tuple[str, str, int]  # "name:version", source topic, partition
FLOORS = {
    "binary": {"min_difference": 0.02},
    "multiclass": {"min_difference": 0.02},
    "regression": {"min_relative": 0.10},
}


class Labelled(NamedTuple):
    """One labelled event, as the learner joined it."""

    model: str
    topic: str
    partition: int
    offset: int
    score: float
    label: float  # a multiclass model's: its class index
    probabilities: tuple[float, ...] = ()  # a multiclass model's: each class's


@dataclass
class PendingWindow:
    """A window's estimate and the KPIs realized by the labels that came for it so far (a multiclass
    window's from its first label on, which tells how many classes there are)."""

    estimate: PerformanceEstimate
    kpis: Kpis | MulticlassKpis | None

    @classmethod
    def of(cls, estimate: PerformanceEstimate) -> PendingWindow:
        if estimate.task == "binary":
            return cls(estimate, BinaryKpis(window=0, threshold=estimate.threshold or 0.5))
        if estimate.task == "multiclass":
            return cls(estimate, None)
        return cls(estimate, RegressionKpis(window=0))

    def add(self, score: float, label: float, probabilities: tuple[float, ...]) -> bool:
        """One labelled event; False for a multiclass one whose classes are not the window's."""
        if self.estimate.task != "multiclass":
            assert self.kpis is not None and not isinstance(self.kpis, MulticlassKpis)
            self.kpis.update(float(label), float(score))
            return True
        k = len(probabilities)
        if self.kpis is None and k >= 2:
            self.kpis = MulticlassKpis(window=0, classes=[str(c) for c in range(k)])
        if not isinstance(self.kpis, MulticlassKpis) or k != len(self.kpis.classes) or not 0 <= label < k:
            return False
        self.kpis.update(int(label), probabilities)
        return True

    @property
    def labelled(self) -> int:
        return 0 if self.kpis is None else self.kpis.n

    @property
    def complete(self) -> bool:
        return self.labelled >= self.estimate.events


class EstimateLedger:
    """Pending windows of every model version, the labels matched to them, and the checks they give."""

    def __init__(self, max_windows: int = 1_000, max_early: int = 50_000) -> None:
        self.max_windows = max_windows
        self.windows: list[PendingWindow] = []  # in arrival order: the oldest is dropped first
        self._spans: dict[Key, list[tuple[int, int, PendingWindow]]] = {}  # sorted by first offset
        self.early: deque[Labelled] = deque(maxlen=max_early)
        self.settled = 0
        self.unlabelled = 0  # windows that settled without a single label
        self.dropped = 0  # windows let go unsettled because more than max_windows were pending

    def add(self, estimate: PerformanceEstimate) -> None:
        """A closed window's estimate: labels in its spans count towards it from now on.

        An estimate of a task with no ``FLOORS`` entry is not kept: it could only settle unlabelled.
        """
        if not estimate.spans or estimate.events == 0 or estimate.task not in FLOORS:
            return
        window = PendingWindow.of(estimate)
        self.windows.append(window)
        model = str(ModelKey(estimate.model_name, estimate.model_version))
        for span in estimate.spans:
            bisect.insort(
                self._spans.setdefault((model, span.topic, span.partition), []),
                (span.first_offset, span.last_offset, window),
                key=lambda entry: entry[0],
            )
        if len(self.windows) > self.max_windows:
            self._forget(self.windows[0])
            self.dropped += 1
        waiting, self.early = self.early, deque(maxlen=self.early.maxlen)
        for event in waiting:
            self.labelled(*event)

    def labelled(
        self,
        model: str,
        topic: str,
        partition: int,
        offset: int,
        score: float,
        label: float,
        probabilities: tuple[float, ...] = (),
    ) -> bool:
        """Count one labelled event towards its window; False (kept for later) if no window holds it yet.

        A multiclass model's: ``label`` is the class index, ``probabilities`` each class's."""
        entries = self._spans.get((model, topic, partition), [])
        at = bisect.bisect_right(entries, offset, key=lambda entry: entry[0]) - 1
        if at >= 0 and offset <= entries[at][1] and not entries[at][2].complete:
            return entries[at][2].add(score, label, probabilities)
        early = Labelled(model, topic, int(partition), int(offset), float(score), float(label), probabilities)
        self.early.append(early)
        return False

    def settle(self, newest_event_time: int, ttl_ms: int) -> list[EstimateCheck]:
        """Checks of the windows that are complete or whose labels can no longer come."""
        horizon = newest_event_time - ttl_ms
        checks = []
        for window in list(self.windows):
            end = window.estimate.end_event_time
            if not window.complete and (end is None or end >= horizon):
                continue
            self._forget(window)
            self.settled += 1
            if not window.labelled:
                self.unlabelled += 1
                continue
            floor = FLOORS[window.estimate.task]
            assert window.kpis is not None  # it has labels
            realized = window.kpis.cumulative()
            checks.append(check_estimate(window.estimate, realized, window.labelled, **floor))
        return checks

    def _forget(self, window: PendingWindow) -> None:
        self.windows.remove(window)
        for key, entries in list(self._spans.items()):
            kept = [entry for entry in entries if entry[2] is not window]
            if kept:
                self._spans[key] = kept
            else:
                del self._spans[key]

    # -- checkpoints: plain JSON values

    def state(self) -> dict:
        return {
            "windows": [
                {"estimate": w.estimate.model_dump(mode="json"), "kpis": w.kpis and w.kpis.state()}
                for w in self.windows
            ],
            "counts": [self.settled, self.unlabelled, self.dropped],
        }

    def restore(self, state: dict) -> None:
        for w in state["windows"]:
            self.add(PerformanceEstimate.model_validate(w["estimate"]))
            window = self.windows[-1]
            if w["kpis"] is not None:  # None: a multiclass window with no label yet
                kind = MulticlassKpis if window.estimate.task == "multiclass" else type(window.kpis)
                window.kpis = kind.from_state(w["kpis"])
        self.settled, self.unlabelled, self.dropped = map(int, state["counts"])
