"""The feedback loop: labels joined to monitored events, KPIs, and a River challenger.

Ground truth arrives late, on its own topic. ``LabelJoin`` keeps each monitored
event (keyed by event_id) until its label arrives or it is older than the TTL (in
event time, against the newest event seen) or the join is over its size cap; labels
that arrive before their event wait under the same rules. What expires is counted.

``Learner`` turns each matched (event, label) into: KPIs of the model that served it
(overall and per segment), one progressive-validation step of the online challenger
(predict, then learn), and one value on the error stream of the serving model for its
detectors (``DetectorConfig``: the error CUSUM by default; concept drift, where features
may not drift at all).

A multiclass model's label names a class (``"fraud"``, or ``2`` for an integer class); the
bundle's class list maps it to the class's index (a name that is none of them is counted in
``unknown_classes`` and measures nothing). Its KPIs are ``MulticlassKpis`` from the event's
class probabilities (kept after its features in the join), and its error stream is 0/1: the
served class was not the label's; a shadow challenger's probabilities (after the model's in
the row) give its KPIs and its tally (``scoring.feedback.class_shadow``). Its River challenger (a
softmax regression, ``scoring.feedback.challenger``) learns the class indices and is measured by the
same KPIs.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from schemas.drift import DetectorChange
from schemas.feedback import JoinCounts, KpiRow, MetricsSnapshot
from schemas.keys import ModelKey, Task
from scoring.drift import MonitorColumns, StreamDetectors
from scoring.drift.detectors import DetectorConfig
from scoring.feedback import class_shadow
from scoring.feedback.challenger import challenger_from_setting, challenger_predict, class_challenger_step
from scoring.feedback.compare import PairedTally
from scoring.feedback.event_columns import EventBatch, ScoredEvent
from scoring.feedback.join_segments import WaitingPart
from scoring.feedback.label_join import LabelJoin, PendingLabel
from scoring.metrics.kpis import ALL, KpiBoard
from scoring.model.features import FeatureKind, FeatureSpec
from scoring.model.metadata import class_lookup, class_text
from scoring.model.reference import Reference

UNSEEN = "__unseen__"
MISSING = "__missing__"

log = logging.getLogger(__name__)


class Learner:
    """KPIs of the serving models and of the River challenger, from labels joined to events."""

    def __init__(
        self,
        spec: FeatureSpec,
        reference: Reference,
        task: str,
        threshold: float = 0.5,
        window: int = 1000,
        segment_features: tuple[str, ...] = (),
        challenger: str = "default",
        ttl_ms: int = 600_000,
        max_entries: int = 200_000,
        train_challenger: bool = True,
        detectors: DetectorConfig | None = None,
        classes: Sequence[str | int] = (),
    ) -> None:
        """``classes``: a multiclass model's classes in the model's order (its bundle's)."""
        unknown = set(segment_features) - set(spec.names)
        if unknown:
            raise ValueError(f"segment features {sorted(unknown)} are not model features")
        self.spec = spec
        self.task = task
        self.threshold = threshold
        self.join = LabelJoin(ttl_ms, max_entries)
        self.classes = [class_text(c) for c in classes]
        self._class_of = class_lookup(classes)
        self.board = KpiBoard(task, window, threshold, self.classes)
        self.challenger_setting = challenger
        # one shard of a sharded learner trains the challenger; the others leave it out
        trains = train_challenger
        self.challenger = challenger_from_setting(challenger, task, spec) if trains else None
        self.unknown_classes = 0  # multiclass: labels naming none of the model's classes, not measured
        self.challenger_name = "river:" + (
            "default" if challenger == "default" else challenger.rpartition(".")[2]
        )
        self.detector_config = detectors or DetectorConfig(
            kind="binary" if Task(task).classifies else "continuous"
        )
        self.detectors: dict[str, StreamDetectors] = {}
        self.tallies: dict[str, PairedTally] = {}  # "champion|shadow challenger" -> paired outcomes
        self.champion: str | None = None
        # e.g. the estimate checks; a multiclass model's label is its class index
        self.on_labelled: Callable[[ScoredEvent, float], None] | None = None
        self._segmenters = self._make_segmenters(segment_features, reference)
        self._decoders = self._make_decoders()

    # -- events in

    def _make_decoders(self) -> list[tuple[int, str, Callable[[float], object]]]:
        decoders = []
        for j, feature in enumerate(self.spec.features):
            if feature.kind is FeatureKind.numeric:
                decoders.append((j, feature.name, float))
            else:
                categories = feature.categories
                decoders.append(
                    (j, feature.name, lambda code, c=categories: c[int(code)] if code < len(c) else UNSEEN)
                )
        return decoders

    def _make_segmenters(
        self, names: tuple[str, ...], reference: Reference
    ) -> list[tuple[int, str, Callable]]:
        """Segment value of a row: the category, or the training decile of a numeric feature."""
        out = []
        for name in names:
            j = self.spec.names.index(name)
            feature = self.spec.features[j]
            if feature.kind is FeatureKind.categorical:
                cats = feature.categories
                out.append(
                    (j, name, lambda v, c=cats: MISSING if v != v else (c[int(v)] if v < len(c) else UNSEEN))
                )
            else:
                edges = np.asarray(reference.numeric[name].edges)
                out.append(
                    (j, name, lambda v, e=edges: MISSING if v != v else f"q{int(np.searchsorted(e, v))}")
                )
        return out

    @property
    def row_width(self) -> int:
        """Values per waiting event's row: the features, then a multiclass model's and a shadow's classes."""
        return class_shadow.row_width(len(self.spec.names), len(self.classes))

    def challenger_input(self, row: np.ndarray) -> dict:
        """An encoded row as the challenger takes it: numbers and category names, missing left out."""
        return {name: decode(row[j]) for j, name, decode in self._decoders if row[j] == row[j]}

    def observe(
        self, columns: MonitorColumns, elsewhere: Callable[[str], PendingLabel | None] | None = None
    ) -> list[DetectorChange]:
        """Keep the scored events of a monitoring message; settles labels that came first (here, or in
        another shard's join: ``elsewhere``)."""
        model = str(ModelKey(columns.model_name, columns.model_version))
        self.champion = model
        batch = EventBatch.of_monitor(columns, model, self.join.take_seqs(len(columns)))
        changes: list[DetectorChange] = []
        for i, early in self.join.add_batch(batch, elsewhere):
            changes += self._learn(batch.event(i), early.label)
        return changes

    def label(self, event_id: str, label: float | str, label_time: int) -> list[DetectorChange]:
        """A label (a number; a class name of a multiclass model); the changes its event shows, if it
        waited for it."""
        event = self.join.add_label(event_id, label, label_time)
        return self._learn(event, label) if event is not None else []

    # -- one labelled event

    def _learn(self, event: ScoredEvent, label: float | str) -> list[DetectorChange]:
        if self.task == Task.multiclass:
            return self._learn_class(event, label)
        assert not isinstance(label, str)  # the label intake takes only numbers for these tasks
        row = np.frombuffer(event.row)
        segments = {name: seg(row[j]) for j, name, seg in self._segmenters}
        self.board.update(event.model, label, event.score, segments)
        if event.shadow_model is not None and event.shadow_score is not None:
            self.board.update(event.shadow_model, label, event.shadow_score, segments)
            self._tally(event, label)
        y = bool(label >= 0.5) if self.task == "binary" else label
        if self.challenger is not None:
            x = self.challenger_input(row)
            guess, decision = challenger_predict(self.challenger, self.task, x)  # predict, then learn
            self.board.update(self.challenger_name, label, guess, segments, decision)
            self.challenger.learn_one(x, y)
        if self.on_labelled is not None:
            self.on_labelled(event, label)
        if self.task == "binary":
            return self._error(event, float((event.score >= self.threshold) != (label >= 0.5)))
        return self._error(event, abs(event.score - label))

    def _learn_class(self, event: ScoredEvent, label: float | str) -> list[DetectorChange]:
        """A multiclass model's labelled event: its KPIs, the challenger's, a shadow's, its 0/1 error."""
        y = self._class_of.get(class_text(label))
        if y is None:  # the label intake refuses these first; a label from a checkpoint may still be one
            self.unknown_classes += 1
            log.warning("label %r of %s names none of its classes: not measured", label, event.event_id)
            return []
        row = np.frombuffer(event.row)
        probabilities, shadow = class_shadow.class_row(row, len(self.spec.names), len(self.classes))
        segments = {name: seg(row[j]) for j, name, seg in self._segmenters}
        predicted = class_shadow.served_class(probabilities)  # the most probable, the first of equals
        self.board.update(event.model, y, probabilities, segments, predicted)
        if shadow is not None and event.shadow_model is not None:
            class_shadow.learn_shadow(self.board, self.tallies, event, y, predicted, shadow, segments)
        if self.challenger is not None:  # progressive validation: predict, then learn
            guess = class_challenger_step(self.challenger, self.challenger_input(row), y, len(self.classes))
            self.board.update(self.challenger_name, y, guess, segments)
        if self.on_labelled is not None:  # the estimate checks: the class index as the label
            self.on_labelled(event, y)
        return self._error(event, float(predicted != y))

    def _tally(self, event: ScoredEvent, label: float) -> None:
        key = f"{event.model}|{event.shadow_model}"
        tally = self.tallies.get(key)
        if tally is None:
            tally = self.tallies[key] = PairedTally(event.model, str(event.shadow_model))
        if self.task == "binary":
            truth = label >= 0.5
            tally.add(
                (event.score >= self.threshold) == truth, (event.shadow_score >= self.threshold) == truth
            )
        else:
            a, b = abs(event.score - label), abs(float(event.shadow_score) - label)
            tally.add(a < b, b < a)

    def _error(self, event: ScoredEvent, error: float) -> list[DetectorChange]:
        """One value on the serving model's error stream: 0/1 for a classifier, |error| for a regressor."""
        detectors = self.detectors.get(event.model)
        if detectors is None:
            detectors = self.detectors[event.model] = StreamDetectors(
                "error", ModelKey.parse(event.model).version, self.detector_config
            )
        return detectors.update_one(
            error, event.source_topic, event.partition, event.offset, event.event_id, event.event_time
        )

    # -- out

    def primary_metric(self) -> str:
        return Task(self.task).primary_metric

    def kpi_rows(self, gap_threshold: float = 0.1) -> list[dict]:
        """KPI rows; each segment row carries its gap to its model's overall primary metric."""
        return kpi_rows(self.board, self.task, gap_threshold)

    # -- snapshot and checkpoint

    def snapshot(self, changes: list[DetectorChange], gap_threshold: float = 0.1) -> MetricsSnapshot:
        return snapshot_of(
            self.board, self.join.counts(), self.champion or "", self.challenger_name, changes, gap_threshold
        )

    def state(self) -> dict:
        """Everything but the river objects and the waiting events, as JSON-ready values.

        The waiting events are checkpointed in segments (``scoring.feedback.join_segments``).
        """
        join = self.join
        return {
            "board": self.board.state(),
            "champion": self.champion,
            "tallies": {k: vars(t) for k, t in self.tallies.items()},
            "join": {
                "labels": [[k, v.label, v.label_time] for k, v in join.labels.items()],
                "newest_time": join.newest_time,
                "next_seq": join.next_seq,
                "matched": join.matched,
                "expired_events": join.expired_events,
                "unmatched_labels": join.unmatched_labels,
            },
        }

    def river_objects(self) -> dict:
        """The challenger and the detectors: river objects, checkpointed as a signed pickle."""
        return {"challenger": self.challenger, "detectors": self.detectors}

    def restore(
        self, state: dict, river_objects: dict | None, events: Iterable[WaitingPart] | None = None
    ) -> None:
        """Back to a checkpoint; ``events`` are the waiting events in arrival order (older checkpoints
        carry them inline). Rows that are not this model's width, and a board of other classes, are
        refused."""
        self.board = KpiBoard.from_state(state["board"])
        class_shadow.check_board(self.board, self.classes)
        self.champion = state["champion"]
        self.tallies = {k: PairedTally(**t) for k, t in state.get("tallies", {}).items()}
        j = state["join"]
        join = self.join = LabelJoin(self.join.ttl_ms, self.join.max_entries)
        if events is None:  # a checkpoint from before segments: events inline, rows in the pickle
            rows = (river_objects or {}).get("pending_rows")
            inline = j.get("events")
            events = [WaitingPart(inline, rows)] if isinstance(inline, dict) and rows is not None else []
        for part in events:
            batch = class_shadow.waiting_events(
                part.columns, part.rows, len(self.spec.names), len(self.classes)
            )
            join.load(batch, part.alive)
        join.labels = OrderedDict((k, PendingLabel(label, t)) for k, label, t in j["labels"])
        join.newest_time, join.matched = j["newest_time"], j["matched"]
        seqs, _ = join.waiting()
        join.next_seq = j.get("next_seq", int(seqs.max(initial=-1)) + 1)
        join.expired_events, join.unmatched_labels = j["expired_events"], j["unmatched_labels"]
        if river_objects is not None:
            if self.challenger is not None and river_objects.get("challenger") is not None:
                self.challenger = river_objects["challenger"]  # (none in a multiclass one before phase D)
            # detectors of another kind or configuration (an older checkpoint) start afresh
            detectors = river_objects.get("detectors") or {}
            self.detectors = {
                model: d
                for model, d in detectors.items()
                if isinstance(d, StreamDetectors) and d.fits(self.detector_config)
            }


def kpi_rows(board: KpiBoard, task: str, gap_threshold: float = 0.1) -> list[dict]:
    """A board's KPI rows; each segment row carries its gap to its model's overall primary metric."""
    rows = board.rows()
    metric = Task(task).primary_metric
    overall = {r["model"]: r["rolling"].get(metric) for r in rows if r["segment_feature"] == ALL}
    for r in rows:
        value, base = r["rolling"].get(metric), overall.get(r["model"])
        gap = value - base if value is not None and base is not None else None
        r["gap_to_overall"] = None if gap is None or math.isnan(gap) else round(gap, 10)
        limit = gap_threshold if Task(task).classifies else gap_threshold * abs(base or 0)
        r["flagged"] = gap is not None and r["segment_feature"] != ALL and abs(gap) > limit
    return rows


def snapshot_of(
    board: KpiBoard,
    join_counts: dict[str, int],
    champion: str,
    challenger_name: str,
    changes: list[DetectorChange],
    gap_threshold: float = 0.1,
) -> MetricsSnapshot:
    """A ``MetricsSnapshot`` of a board (one learner's, or several shards' merged)."""
    return MetricsSnapshot(
        task=board.task,
        window=board.window,
        primary_metric=Task(board.task).primary_metric,
        champion=champion,
        challenger=challenger_name,
        labels=JoinCounts(**join_counts),
        kpis=[KpiRow(**row) for row in kpi_rows(board, board.task, gap_threshold)],
        changes=changes,
        created_at=int(time.time() * 1000),
    )
