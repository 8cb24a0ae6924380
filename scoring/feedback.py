"""The feedback loop: labels joined to monitored events, KPIs, and a River challenger.

Ground truth arrives late, on its own topic. ``LabelJoin`` keeps each monitored
event (keyed by event_id) until its label arrives or it is older than the TTL (in
event time, against the newest event seen) or the join is over its size cap; labels
that arrive before their event wait under the same rules. What expires is counted.

``Learner`` turns each matched (event, label) into: KPIs of the model that served it
(overall and per segment), one progressive-validation step of the online challenger
(predict, then learn), and one value on the error stream of the serving model for
ADWIN and PageHinkley (concept drift, where features may not drift at all).
"""

from __future__ import annotations

import importlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from river import base, compose, linear_model, preprocessing

from schemas.drift import DetectorChange
from schemas.feedback import JoinCounts, KpiRow, MetricsSnapshot
from scoring.compare import PairedTally
from scoring.drift import MonitorColumns, StreamDetectors
from scoring.features import FeatureKind, FeatureSpec
from scoring.kpis import ALL, KpiBoard
from scoring.reference import Reference

UNSEEN = "__unseen__"
MISSING = "__missing__"


@dataclass(frozen=True, slots=True)
class ScoredEvent:
    """A monitored event waiting for its label."""

    model: str  # "name:version"
    score: float
    row: bytes  # the encoded model inputs as float64 bytes: ~190 bytes, where dicts cost ~2 KB
    source_topic: str
    partition: int
    offset: int
    event_id: str
    event_time: int
    shadow_model: str | None = None  # a challenger that scored the same event in shadow mode
    shadow_score: float | None = None


@dataclass(frozen=True, slots=True)
class PendingLabel:
    label: float
    label_time: int


class LabelJoin:
    """Monitored events by event_id, and labels that came first, both bounded."""

    def __init__(self, ttl_ms: int, max_entries: int) -> None:
        self.ttl_ms = ttl_ms
        self.max_entries = max_entries
        self.events: OrderedDict[str, ScoredEvent] = OrderedDict()
        self.labels: OrderedDict[str, PendingLabel] = OrderedDict()
        self.newest_time = 0
        self.matched = 0
        self.expired_events = 0
        self.unmatched_labels = 0

    def add_event(self, event: ScoredEvent) -> PendingLabel | None:
        """Keep the event; if its label already came, return that label instead."""
        self.newest_time = max(self.newest_time, event.event_time)
        early = self.labels.pop(event.event_id, None)
        if early is not None:
            self.matched += 1
            return early
        self.events[event.event_id] = event
        self._expire()
        return None

    def add_label(self, event_id: str, label: float, label_time: int) -> ScoredEvent | None:
        """The event this label belongs to, or None (the label then waits for it)."""
        event = self.events.pop(event_id, None)
        if event is not None:
            self.matched += 1
            return event
        self.labels[event_id] = PendingLabel(label, label_time)
        self._expire()
        return None

    def _expire(self) -> None:
        horizon = self.newest_time - self.ttl_ms
        events, labels = self.events, self.labels
        while events and (len(events) > self.max_entries or next(iter(events.values())).event_time < horizon):
            events.popitem(last=False)
            self.expired_events += 1
        while labels and (len(labels) > self.max_entries or next(iter(labels.values())).label_time < horizon):
            labels.popitem(last=False)
            self.unmatched_labels += 1

    def counts(self) -> dict[str, int]:
        return {
            "matched": self.matched,
            "pending_events": len(self.events),
            "pending_labels": len(self.labels),
            "expired_events": self.expired_events,
            "unmatched_labels": self.unmatched_labels,
        }


# ---------------------------------------------------------------- the challenger


class PresentOnly(base.Transformer):
    """The named features an event carries. River's ``Select`` raises on a missing one; a
    missing value is left out here, so it adds nothing to a linear model, as for one-hot."""

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)

    def transform_one(self, x: dict) -> dict:
        return {name: x[name] for name in self.names if name in x}


def default_challenger(task: str, spec: FeatureSpec):
    """StandardScaler + LogisticRegression (binary) or LinearRegression, one-hot for categoricals."""
    numeric = [f.name for f in spec.features if f.kind is FeatureKind.numeric]
    categorical = [f.name for f in spec.features if f.kind is FeatureKind.categorical]
    parts = []
    if numeric:
        parts.append(PresentOnly(numeric) | preprocessing.StandardScaler())
    if categorical:
        parts.append(PresentOnly(categorical) | preprocessing.OneHotEncoder())
    features = parts[0] if len(parts) == 1 else compose.TransformerUnion(*parts)
    head = linear_model.LogisticRegression() if task == "binary" else linear_model.LinearRegression()
    return features | head


def challenger_from_setting(setting: str, task: str, spec: FeatureSpec):
    """``default``, or the dotted path of a river estimator class made with no arguments."""
    if setting == "default":
        return default_challenger(task, spec)
    module_name, _, class_name = setting.rpartition(".")
    if not module_name.startswith("river."):
        raise ValueError(f"challenger must be 'default' or a river estimator path, got {setting!r}")
    return getattr(importlib.import_module(module_name), class_name)()


def challenger_predict(model, task: str, x: dict) -> tuple[float, bool | None]:
    """Score and, for a classifier, its own class decision (as river's ``predict_one`` makes it)."""
    if task == "binary":
        proba = model.predict_proba_one(x)
        decision = bool(max(proba, key=proba.get)) if proba else False
        return float(proba.get(True, 0.0)), decision
    prediction = model.predict_one(x)
    return (float(prediction) if prediction is not None else 0.0), None


# ---------------------------------------------------------------- learner


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
    ) -> None:
        unknown = set(segment_features) - set(spec.names)
        if unknown:
            raise ValueError(f"segment features {sorted(unknown)} are not model features")
        self.spec = spec
        self.task = task
        self.threshold = threshold
        self.join = LabelJoin(ttl_ms, max_entries)
        self.board = KpiBoard(task, window, threshold)
        self.challenger_setting = challenger
        self.challenger = challenger_from_setting(challenger, task, spec)
        self.challenger_name = "river:" + (
            "default" if challenger == "default" else challenger.rpartition(".")[2]
        )
        self.detectors: dict[str, StreamDetectors] = {}
        self.tallies: dict[str, PairedTally] = {}  # "champion|shadow challenger" -> paired outcomes
        self.champion: str | None = None
        self.on_labelled: Callable[[ScoredEvent, float], None] | None = None  # e.g. the estimate checks
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

    def challenger_input(self, row: np.ndarray) -> dict:
        """An encoded row as the challenger takes it: numbers and category names, missing left out."""
        return {name: decode(row[j]) for j, name, decode in self._decoders if row[j] == row[j]}

    def observe(self, columns: MonitorColumns) -> list[DetectorChange]:
        """Keep the scored events of a monitoring message; settles labels that came first."""
        model = f"{columns.model_name}:{columns.model_version}"
        self.champion = model
        changes: list[DetectorChange] = []
        rows = columns.rows
        shadow = columns.shadow_scores
        for i in range(len(columns)):
            event = ScoredEvent(
                model=model,
                score=float(columns.scores[i]),
                row=rows[i].tobytes(),
                source_topic=columns.source_topic,
                partition=columns.partition,
                offset=int(columns.offsets[i]),
                event_id=str(columns.event_ids[i]),
                event_time=int(columns.event_times[i]),
            )
            if shadow is not None and shadow[i] == shadow[i]:
                event = replace(event, shadow_model=columns.shadow_model, shadow_score=float(shadow[i]))
            early = self.join.add_event(event)
            if early is not None:
                changes += self._learn(event, early.label)
        return changes

    def label(self, event_id: str, label: float, label_time: int) -> list[DetectorChange]:
        event = self.join.add_label(event_id, label, label_time)
        return self._learn(event, label) if event is not None else []

    # -- one labelled event

    def _learn(self, event: ScoredEvent, label: float) -> list[DetectorChange]:
        row = np.frombuffer(event.row)
        segments = {name: seg(row[j]) for j, name, seg in self._segmenters}
        self.board.update(event.model, label, event.score, segments)
        if event.shadow_model is not None and event.shadow_score is not None:
            self.board.update(event.shadow_model, label, event.shadow_score, segments)
            self._tally(event, label)
        y = bool(label >= 0.5) if self.task == "binary" else label
        x = self.challenger_input(row)
        guess, decision = challenger_predict(self.challenger, self.task, x)  # predict, then learn
        self.board.update(self.challenger_name, label, guess, segments, decision)
        self.challenger.learn_one(x, y)
        if self.on_labelled is not None:
            self.on_labelled(event, label)
        return self._error(event, label)

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

    def _error(self, event: ScoredEvent, label: float) -> list[DetectorChange]:
        if self.task == "binary":
            error = float((event.score >= self.threshold) != (label >= 0.5))
        else:
            error = abs(event.score - label)
        detectors = self.detectors.get(event.model)
        if detectors is None:
            detectors = self.detectors[event.model] = StreamDetectors("error", event.model.rpartition(":")[2])
        return detectors.update_one(
            error, event.source_topic, event.partition, event.offset, event.event_id, event.event_time
        )

    # -- out

    def primary_metric(self) -> str:
        return "accuracy" if self.task == "binary" else "mae"

    def kpi_rows(self, gap_threshold: float = 0.1) -> list[dict]:
        """KPI rows; each segment row carries its gap to its model's overall primary metric."""
        rows = self.board.rows()
        metric = self.primary_metric()
        overall = {r["model"]: r["rolling"].get(metric) for r in rows if r["segment_feature"] == ALL}
        for r in rows:
            value, base = r["rolling"].get(metric), overall.get(r["model"])
            gap = value - base if value is not None and base is not None else None
            r["gap_to_overall"] = None if gap is None or math.isnan(gap) else round(gap, 10)
            limit = gap_threshold if self.task == "binary" else gap_threshold * abs(base or 0)
            r["flagged"] = gap is not None and r["segment_feature"] != ALL and abs(gap) > limit
        return rows

    # -- snapshot and checkpoint

    def snapshot(self, changes: list[DetectorChange], gap_threshold: float = 0.1) -> MetricsSnapshot:
        return MetricsSnapshot(
            task=self.task,
            window=self.board.window,
            primary_metric=self.primary_metric(),
            champion=self.champion or "",
            challenger=self.challenger_name,
            labels=JoinCounts(**self.join.counts()),
            kpis=[KpiRow(**row) for row in self.kpi_rows(gap_threshold)],
            changes=changes,
            created_at=int(time.time() * 1000),
        )

    def state(self) -> dict:
        """Everything but the river objects, as JSON-ready values."""
        join = self.join
        return {
            "board": self.board.state(),
            "champion": self.champion,
            "tallies": {k: vars(t) for k, t in self.tallies.items()},
            "join": {
                "events": _columns(join.events.values()),  # their rows go in the pickle, as bytes
                "labels": [[k, v.label, v.label_time] for k, v in join.labels.items()],
                "newest_time": join.newest_time,
                "matched": join.matched,
                "expired_events": join.expired_events,
                "unmatched_labels": join.unmatched_labels,
            },
        }

    def river_objects(self) -> dict:
        """The challenger and the detectors (river objects), and the encoded rows of the events
        waiting for labels as one bytes object (JSON lists of floats cost ~10x the memory to
        write): checkpointed as a signed pickle."""
        rows = b"".join(e.row for e in self.join.events.values())
        return {"challenger": self.challenger, "detectors": self.detectors, "pending_rows": rows}

    def restore(self, state: dict, river_objects: dict | None) -> None:
        self.board = KpiBoard.from_state(state["board"])
        self.champion = state["champion"]
        self.tallies = {k: PairedTally(**t) for k, t in state.get("tallies", {}).items()}
        j = state["join"]
        join = self.join
        rows = (river_objects or {}).get("pending_rows")
        events = _events(j["events"], rows) if isinstance(j["events"], dict) and rows is not None else []
        join.events = OrderedDict((e.event_id, e) for e in events)  # older checkpoints: none kept
        join.labels = OrderedDict((k, PendingLabel(label, t)) for k, label, t in j["labels"])
        join.newest_time, join.matched = j["newest_time"], j["matched"]
        join.expired_events, join.unmatched_labels = j["expired_events"], j["unmatched_labels"]
        if river_objects is not None:
            self.challenger = river_objects["challenger"]
            self.detectors = river_objects["detectors"]


_COLUMNS = [name for name in ScoredEvent.__slots__ if name != "row"]


def _columns(events) -> dict[str, list]:
    """Events waiting for labels, column by column, without their rows."""
    events = list(events)
    return {name: [getattr(e, name) for e in events] for name in _COLUMNS}


def _events(columns: dict[str, list], rows: bytes) -> list[ScoredEvent]:
    count = len(columns["event_id"])
    width = len(rows) // count if count else 0
    return [
        ScoredEvent(row=rows[i * width : (i + 1) * width], **{name: columns[name][i] for name in _COLUMNS})
        for i in range(count)
    ]
