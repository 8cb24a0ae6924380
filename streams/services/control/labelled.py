"""Labelled events read back from the topics, for an on-demand model report.

Reads ``labels`` (event_id -> label) and ``monitor`` (the encoded rows the model
scored) from the start until both are quiet, joins them by event_id, keeps the last
``limit`` labelled events of the given model version, and turns the encoded rows back
into the raw feature values an event carries (category names for categoricals).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from schemas.keys import ModelKey, Task
from scoring.errors import LifecycleError
from scoring.feedback.compare import Comparison, compare_paired, compare_unpaired
from scoring.model.bundle import ModelBundle
from scoring.model.features import FeatureKind
from streams.kafka.readers import ReadCounts, read_json
from streams.settings import Settings

QUIET_S = 3.0


@dataclass
class Skipped:
    """Records the offline readers could not use, per topic: counted and reported, never fatal."""

    by_topic: dict[str, int] = field(default_factory=dict)

    def add(self, topic: str, n: int = 1) -> None:
        if n:
            self.by_topic[topic] = self.by_topic.get(topic, 0) + n

    def __str__(self) -> str:
        return ", ".join(f"{n:,} on {topic}" for topic, n in self.by_topic.items()) or "none"


def _labels(settings: Settings, skipped: Skipped, classes: bool = False) -> dict[str, float | str]:
    """Every label on the labels topic, by event_id (the last one wins); with ``classes`` (a multiclass
    model's) a class name is kept as text."""
    labels: dict[str, float | str] = {}
    counts = ReadCounts()
    for body in read_json(settings, settings.topic_labels, QUIET_S, counts):
        try:
            if classes and isinstance(body["label"], str):
                labels[str(body["event_id"])] = body["label"]
                continue
            label = float(body["label"])
            if not math.isfinite(label):
                raise ValueError("not finite")
            labels[str(body["event_id"])] = label
        except (ValueError, KeyError, TypeError):
            skipped.add(settings.topic_labels)
    skipped.add(settings.topic_labels, counts.skipped)
    return labels


def not_yet(bundle: ModelBundle, what: str) -> None:
    """``LifecycleError`` for a multiclass model: ``what`` has no multiclass form yet."""
    if bundle.task is Task.multiclass:
        raise LifecycleError(f"{what} has no multiclass form yet: {bundle.name}:{bundle.version} is one")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def monitor_bodies(settings: Settings, skipped: Skipped) -> Iterator[dict]:
    """Monitoring batches whose columns agree in length; others skipped and counted."""
    counts = ReadCounts()
    for body in read_json(settings, settings.topic_monitor, QUIET_S, counts):
        ids, rows, scores = body.get("event_ids"), body.get("rows"), body.get("scores")
        if not (isinstance(ids, list) and isinstance(rows, list) and isinstance(scores, list)):
            skipped.add(settings.topic_monitor)
            continue
        shadow = body.get("shadow_scores")
        agree = len(ids) == len(rows) == len(scores) and (shadow is None or len(shadow) == len(ids))
        if not agree or not all(isinstance(i, str) for i in ids) or not all(_number(s) for s in scores):
            skipped.add(settings.topic_monitor)
            continue
        yield body
    skipped.add(settings.topic_monitor, counts.skipped)


def labelled_from_topics(
    settings: Settings,
    bundle: ModelBundle,
    limit: int,
    any_version: bool = False,
    skipped: Skipped | None = None,
    labels: dict[str, float | str | int] | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The last ``limit`` labelled events scored by ``bundle`` (by any version of it if asked).

    ``labels``: by event_id, when the caller read them; else the labels topic's, a multiclass model's
    as they came (class names, or numbers for integer classes)."""
    skipped = skipped if skipped is not None else Skipped()
    if labels is None:
        labels = _labels(settings, skipped, classes=bundle.task is Task.multiclass)
    else:
        labels = dict(labels)
    rows: list[list[float]] = []
    y: list[float | str | int] = []
    width = len(bundle.spec.names)
    for body in monitor_bodies(settings, skipped):
        if body.get("model_name") != bundle.name:
            continue
        if not any_version and body.get("model_version") != bundle.version:
            continue
        for event_id, row in zip(body["event_ids"], body["rows"], strict=True):
            if event_id in labels:
                try:
                    values = [np.nan if v is None else float(v) for v in row]
                except (TypeError, ValueError):
                    values = []
                if len(values) != width:
                    skipped.add(settings.topic_monitor)
                    continue
                rows.append(values)
                y.append(labels.pop(event_id))  # pop: a re-scored event counts once
    matrix = np.asarray(rows[-limit:], dtype=float).reshape(-1, len(bundle.spec.names))
    return decode_rows(bundle, matrix), np.asarray(y[-limit:])


def decode_rows(bundle: ModelBundle, matrix: np.ndarray) -> pd.DataFrame:
    """Encoded model rows back to the raw values an event would carry."""
    columns = {}
    for j, feature in enumerate(bundle.spec.features):
        column = matrix[:, j]
        if feature.kind is FeatureKind.numeric:
            columns[feature.name] = column
        else:
            cats = feature.categories
            columns[feature.name] = [None if v != v or v >= len(cats) else cats[int(v)] for v in column]
    return pd.DataFrame(columns)


def compare_from_topics(
    settings: Settings, champion: ModelBundle, challenger_version: str, alpha: float = 0.01
) -> Comparison:
    """Champion against challenger on the labelled events of the topics.

    Paired when the challenger scored in shadow (both scores of each event are on
    ``monitor``); otherwise unpaired, each model on the events it served. A multiclass model's:
    ``streams.services.control.class_topics``.
    """
    not_yet(champion, "comparing champion and challenger")
    skipped = Skipped()
    labels = _labels(settings, skipped)
    paired: dict[str, tuple[float, float]] = {}
    served: dict[str, dict[str, float]] = {champion.version: {}, challenger_version: {}}
    for body in monitor_bodies(settings, skipped):
        if body.get("model_name") != champion.name or body.get("model_version") not in served:
            continue
        version = body["model_version"]
        shadow = body.get("shadow_scores")
        if version == champion.version and shadow and body.get("shadow_model_version") == challenger_version:
            for event_id, score, other in zip(body["event_ids"], body["scores"], shadow, strict=True):
                if event_id in labels and _number(other):
                    paired[event_id] = (score, other)
        else:
            for event_id, score in zip(body["event_ids"], body["scores"], strict=True):
                if event_id in labels:
                    served[version][event_id] = score
    names = (str(ModelKey(champion.name, champion.version)), str(ModelKey(champion.name, challenger_version)))
    task, threshold = champion.task.value, champion.metadata.threshold
    if paired:
        ids = list(paired)
        scores = np.asarray([paired[i] for i in ids])
        y = np.asarray([labels[i] for i in ids])
        return compare_paired(task, y, scores[:, 0], scores[:, 1], names, threshold, alpha)
    groups = []
    for version in (champion.version, challenger_version):
        ids = list(served[version])
        if not ids:
            raise ValueError(f"no labelled events scored by version {version} on {settings.topic_monitor}")
        groups.append((np.asarray([labels[i] for i in ids]), np.asarray([served[version][i] for i in ids])))
    return compare_unpaired(task, groups[0], groups[1], names, threshold, alpha)
