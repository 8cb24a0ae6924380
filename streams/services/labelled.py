"""Labelled events read back from the topics, for an on-demand model report.

Reads ``labels`` (event_id -> label) and ``monitor`` (the encoded rows the model
scored) from the start until both are quiet, joins them by event_id, keeps the last
``limit`` labelled events of the given model version, and turns the encoded rows back
into the raw feature values an event carries (category names for categoricals).
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import orjson
import pandas as pd
from confluent_kafka import Consumer

from scoring.bundle import ModelBundle
from scoring.compare import Comparison, compare_paired, compare_unpaired
from scoring.features import FeatureKind
from streams.settings import Settings

QUIET_S = 3.0


def _read_all(settings: Settings, topic: str) -> list[bytes]:
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"streamscore-report-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
            "session.timeout.ms": int(settings.session_timeout_s * 1000),
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    quiet_since, deadline = None, time.monotonic() + 60
    try:
        while quiet_since is None or time.monotonic() - quiet_since < QUIET_S:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: no partitions assigned within 60 s")
            if quiet_since is None and consumer.assignment():
                quiet_since = time.monotonic()  # the quiet period counts from the group join
            for message in consumer.consume(1000, 0.2):
                if message.error() is None and message.value() is not None:
                    values.append(message.value())
                    quiet_since = time.monotonic()
    finally:
        consumer.close()
    return values


def _labels(settings: Settings) -> dict[str, float]:
    """Every label on the labels topic, by event_id (the last one wins)."""
    labels: dict[str, float] = {}
    for value in _read_all(settings, settings.topic_labels):
        try:
            body = orjson.loads(value)
            labels[str(body["event_id"])] = float(body["label"])
        except (ValueError, KeyError, TypeError):
            continue
    return labels


def labelled_from_topics(
    settings: Settings, bundle: ModelBundle, limit: int, any_version: bool = False
) -> tuple[pd.DataFrame, np.ndarray]:
    """The last ``limit`` labelled events scored by ``bundle`` (by any version of it if asked)."""
    labels = _labels(settings)
    rows: list[list[float]] = []
    y: list[float] = []
    for value in _read_all(settings, settings.topic_monitor):
        body = orjson.loads(value)
        if body.get("model_name") != bundle.name:
            continue
        if not any_version and body.get("model_version") != bundle.version:
            continue
        for event_id, row in zip(body["event_ids"], body["rows"], strict=True):
            if event_id in labels:
                rows.append([np.nan if v is None else v for v in row])
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
    ``monitor``); otherwise unpaired, each model on the events it served.
    """
    labels = _labels(settings)
    paired: dict[str, tuple[float, float]] = {}
    served: dict[str, dict[str, float]] = {champion.version: {}, challenger_version: {}}
    for value in _read_all(settings, settings.topic_monitor):
        body = orjson.loads(value)
        if body.get("model_name") != champion.name or body.get("model_version") not in served:
            continue
        version = body["model_version"]
        shadow = body.get("shadow_scores")
        if version == champion.version and shadow and body.get("shadow_model_version") == challenger_version:
            for event_id, score, other in zip(body["event_ids"], body["scores"], shadow, strict=True):
                if event_id in labels and other is not None:
                    paired[event_id] = (score, other)
        else:
            for event_id, score in zip(body["event_ids"], body["scores"], strict=True):
                if event_id in labels:
                    served[version][event_id] = score
    names = (f"{champion.name}:{champion.version}", f"{champion.name}:{challenger_version}")
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
