"""A multiclass model's labelled events read back from the topics: for ``model compare`` and ``retrain``.

A label names a class (``"fraud"``, or ``2`` for an integer class); ``labels`` is read once and
each label mapped to the champion's class index (a label naming none of its classes is skipped
and counted). A monitoring record counts only when its ``classes`` are the champion's, in the
same order (the gate admits no other version; a record of other classes is someone else's data).
"""

from __future__ import annotations

import math

import numpy as np

from schemas.keys import ModelKey
from scoring.errors import LifecycleError
from scoring.feedback.class_compare import compare_classes_paired, compare_classes_unpaired
from scoring.feedback.compare import Comparison
from scoring.model.bundle import ModelBundle
from streams.kafka.readers import ReadCounts, read_json
from streams.services.control.labelled import QUIET_S, Skipped, monitor_bodies
from streams.settings import Settings


def class_labels(settings: Settings, bundle: ModelBundle, skipped: Skipped) -> dict[str, int]:
    """Every label on the labels topic as the index of the class it names, by event_id (the last wins)."""
    labels: dict[str, int] = {}
    counts = ReadCounts()
    for body in read_json(settings, settings.topic_labels, QUIET_S, counts):
        value = body.get("label")
        named = isinstance(value, str) or (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
        k = bundle.class_index(value) if named else None
        if k is None or not isinstance(body.get("event_id"), str):
            skipped.add(settings.topic_labels)
            continue
        labels[body["event_id"]] = k
    skipped.add(settings.topic_labels, counts.skipped)
    return labels


def _probabilities(body: dict, field: str, n: int, k: int) -> np.ndarray | None:
    """``body[field]`` as n x k finite numbers (a row of nulls: NaN), or None when it is not that."""
    rows = body.get(field)
    if not isinstance(rows, list) or len(rows) != n:
        return None
    try:
        array = np.array([[math.nan if v is None else v for v in row] for row in rows], dtype=float)
    except (TypeError, ValueError):
        return None
    if array.shape != (n, k) or np.isinf(array).any():
        return None
    return array


def compare_classes_from_topics(
    settings: Settings, champion: ModelBundle, challenger_version: str, alpha: float = 0.01
) -> Comparison:
    """Champion against challenger on the labelled events of the topics: paired when the challenger
    scored in shadow (its probabilities are on ``monitor`` beside the champion's), else unpaired."""
    skipped = Skipped()
    labels = class_labels(settings, champion, skipped)
    k = len(champion.class_names)
    paired: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    served: dict[str, dict[str, np.ndarray]] = {champion.version: {}, challenger_version: {}}
    for body in monitor_bodies(settings, skipped):
        version = body.get("model_version")
        if body.get("model_name") != champion.name or version not in served:
            continue
        n = len(body["event_ids"])
        mine = _probabilities(body, "probabilities", n, k)
        if body.get("classes") != list(champion.class_names) or mine is None or np.isnan(mine).any():
            skipped.add(settings.topic_monitor)
            continue
        shadow = None
        if version == champion.version and body.get("shadow_model_version") == challenger_version:
            shadow = _probabilities(body, "shadow_probabilities", n, k)
        for i, event_id in enumerate(body["event_ids"]):
            if event_id not in labels:
                continue
            if shadow is not None and not np.isnan(shadow[i]).any():
                paired[event_id] = (mine[i], shadow[i])
            elif shadow is None:
                served[version][event_id] = mine[i]
    names = (str(ModelKey(champion.name, champion.version)), str(ModelKey(champion.name, challenger_version)))
    if paired:
        ids = list(paired)
        y = np.asarray([labels[i] for i in ids])
        return compare_classes_paired(
            y, np.asarray([paired[i][0] for i in ids]), np.asarray([paired[i][1] for i in ids]), names, alpha
        )
    groups = []
    for version in (champion.version, challenger_version):
        ids = list(served[version])
        if not ids:
            raise LifecycleError(
                f"no labelled events of version {version} of {champion.name} on {settings.topic_labels} and "
                f"{settings.topic_monitor} (records skipped: {skipped})\n"
                "compare once labels of the events it served (split) or scored (shadow) have come"
            )
        groups.append((np.asarray([labels[i] for i in ids]), np.asarray([served[version][i] for i in ids])))
    return compare_classes_unpaired(groups[0], groups[1], names, alpha)
