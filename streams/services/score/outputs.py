"""What the score step emits for a batch: a prediction per scored event, monitoring records in columns.

Both are written once per batch with numpy and orjson, never a Prometheus object or a log
line per event. Monitoring records are grouped per source partition and split to stay
well under the broker's message limit. A multiclass model's predictions and records take
their multiclass form (``schemas.messages``, schema_version 2): every class's probability
beside the predicted class; those of other models are as they always were.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import orjson

from schemas import headers as h
from schemas.messages import MULTICLASS_SCHEMA_VERSION, SCHEMA_VERSION
from schemas.monitor import MonitorColumns
from scoring.model.bundle import ModelBundle
from scoring.model.explain import Explainer
from scoring.model.scorer import BatchScorer, ScoredBatch
from streams.kafka.records import Emit, KafkaRecord
from streams.services.score.batch_stats import BatchStats
from streams.services.shared.monitor_decodes import Written

MONITOR_MESSAGE_BYTES = 400_000
JSON_BYTES_PER_VALUE = 25  # a float64 as JSON text, at most, with its comma


@dataclass
class ValidEvents:
    """The valid events of a batch, column by column, aligned by position."""

    records: list[KafkaRecord] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    entity_ids: list[str] = field(default_factory=list)
    event_times: list[int] = field(default_factory=list)
    rows: list[list[float]] = field(default_factory=list)

    def select(self, positions: list[int]) -> ValidEvents:
        return ValidEvents(
            [self.records[i] for i in positions],
            [self.event_ids[i] for i in positions],
            [self.entity_ids[i] for i in positions],
            [self.event_times[i] for i in positions],
            [self.rows[i] for i in positions],
        )


@dataclass(frozen=True)
class LoadedModel:
    """One model ready to score: its bundle and what is derived from it."""

    bundle: ModelBundle
    scorer: BatchScorer
    explainer: Explainer
    ce_source: bytes


def _ce_headers(model: LoadedModel, now_ms: int) -> list[tuple[str, bytes]]:
    """The CloudEvents headers every prediction of a batch shares (``ce_id`` is its own)."""
    return [
        (h.CE_SPECVERSION, b"1.0"),
        (h.CE_TYPE, h.PREDICTION_CE_TYPE.encode()),
        (h.CE_SOURCE, model.ce_source),
        (h.CE_TIME, h.ce_time(now_ms)),
        ("content-type", b"application/json"),
    ]


def emit_predictions(
    topic: str,
    with_headers: bool,
    model: LoadedModel,
    batch: ValidEvents,
    result: ScoredBatch,
    emit: Emit,
    explained: dict[int, dict],
    stats: BatchStats,
) -> list[int]:
    """Emit one prediction per scored event; returns the source partition of each."""
    bundle = model.bundle
    name, version = bundle.name, bundle.version
    now_ms = int(time.time() * 1000)
    ce_fixed = _ce_headers(model, now_ms) if with_headers else []
    labels = result.labels.tolist() if result.labels is not None else [None] * len(batch.records)
    names = bundle.class_names
    probabilities = result.probabilities.tolist() if result.probabilities is not None else None
    version_of_schema = MULTICLASS_SCHEMA_VERSION if names else SCHEMA_VERSION
    dumps = orjson.dumps
    partitions: list[int] = []
    latencies = stats.latencies_ms
    stats.event_times_ms += batch.event_times
    stats.scored_at_ms = now_ms
    for i, (record, event_id, entity_id, event_time, score, label) in enumerate(
        zip(
            batch.records,
            batch.event_ids,
            batch.entity_ids,
            batch.event_times,
            result.scores.tolist(),
            labels,
            strict=True,
        )
    ):
        partition = record.partition()
        partitions.append(partition)
        latency = now_ms - record.timestamp()[1]
        latencies.append(latency)
        body = {
            "event_id": event_id,
            "entity_id": entity_id,
            "score": score,
            "label": label,
            "model_name": name,
            "model_version": version,
            "event_time": event_time,
            "scored_at": now_ms,
            "latency_ms": latency,
            "topic": record.topic(),
            "partition": partition,
            "offset": record.offset(),
            "schema_version": version_of_schema,
        }
        if probabilities is not None:
            body = _multiclass(body, dict(zip(names, probabilities[i], strict=True)))
        if explained and i in explained:
            body["explanation"] = explained[i]
        value = dumps(body)
        headers = [(h.CE_ID, event_id.encode()), *ce_fixed] if with_headers else None
        emit(topic, entity_id.encode(), value, headers)
    return partitions


def _multiclass(body: dict, probabilities: dict[str, float]) -> dict:
    """A prediction's body with every class's probability after its label (the multiclass form)."""
    items = list(body.items())
    return {**dict(items[:4]), "probabilities": probabilities, **dict(items[4:])}


def emit_monitor(
    topic: str,
    monitor_rows: int,
    partitions_of_topic: int,
    model: LoadedModel,
    batch: ValidEvents,
    partitions: list[int],
    matrix: np.ndarray,
    scores: np.ndarray,
    emit: Emit,
    shadow: LoadedModel | None,
    shadow_scores: np.ndarray | None,
    probabilities: np.ndarray | None = None,
    shadow_probabilities: np.ndarray | None = None,
    written: Callable[[Written], None] | None = None,
) -> None:
    """Monitoring messages in columns: per source partition, at most ``monitor_rows`` rows each,
    on the monitor partition of the same number (``partitions_of_topic`` of them). ``probabilities``:
    a multiclass model's, rows x classes; ``shadow_probabilities``: its shadow challenger's (NaN rows
    where it failed). ``written``: told of each record and the columns it was written from (the
    drift and learn roles of this process take them instead of decoding it, ``monitor_decodes``)."""
    bundle = model.bundle
    source = batch.records[0].topic()
    by_partition = np.asarray(partitions)
    step = monitor_rows
    key_of = {}

    def emit_rows(partition: int, index: np.ndarray) -> None:
        part = batch.select(index.tolist())
        body = {
            "model_name": bundle.name,
            "model_version": bundle.version,
            "source_topic": source,
            "partition": partition,
            "offsets": [r.offset() for r in part.records],
            "event_ids": part.event_ids,
            "entity_ids": part.entity_ids,
            "event_times": part.event_times,
            "scores": scores[index],
            "feature_names": bundle.spec.names,
            "rows": matrix[index],
            "schema_version": SCHEMA_VERSION,
        }
        if shadow is not None and shadow_scores is not None:
            body["shadow_model_name"] = shadow.bundle.name
            body["shadow_model_version"] = shadow.bundle.version
            body["shadow_scores"] = [None if v != v else v for v in shadow_scores[index].tolist()]
        if probabilities is not None:
            body["classes"] = bundle.class_names
            body["probabilities"] = probabilities[index]
            body["schema_version"] = MULTICLASS_SCHEMA_VERSION
            if shadow_probabilities is not None and "shadow_scores" in body:
                rows = shadow_probabilities[index]
                body["shadow_probabilities"] = [None if row[0] != row[0] else row for row in rows.tolist()]
        value = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        if len(value) > 2 * MONITOR_MESSAGE_BYTES and len(index) > 1:
            # long identifiers made it bigger than the estimate: halve it until it fits
            half = len(index) // 2
            emit_rows(partition, index[:half])
            emit_rows(partition, index[half:])
            return
        # the monitor partition of the source partition: what the learn role's shard p reads
        emit(topic, key_of[partition], value, None, partition % partitions_of_topic)
        if written is not None and "shadow_probabilities" not in body:  # those are always decoded
            written(_written(value, body, part, shadow_scores, index))

    for partition in np.unique(by_partition).tolist():
        key_of[partition] = f"{source}-{partition}".encode()
        in_partition = np.flatnonzero(by_partition == partition)
        for start in range(0, len(in_partition), step):
            emit_rows(partition, in_partition[start : start + step])


def _written(
    value: bytes, body: dict, part: ValidEvents, shadow_scores: np.ndarray | None, index: np.ndarray
) -> Written:
    """A monitoring record's value and the columns it was written from (``body`` holds them)."""
    shadow = "shadow_scores" in body
    columns = MonitorColumns(
        model_name=body["model_name"],
        model_version=body["model_version"],
        source_topic=body["source_topic"],
        partition=body["partition"],
        offsets=body["offsets"],
        event_ids=part.event_ids,
        event_times=part.event_times,
        scores=body["scores"],
        rows=body["rows"],
        shadow_model=f"{body['shadow_model_name']}:{body['shadow_model_version']}" if shadow else None,
        shadow_scores=shadow_scores[index] if shadow and shadow_scores is not None else None,
        feature_names=list(body["feature_names"]),
        classes=list(body.get("classes") or ()),
        probabilities=body.get("probabilities"),
    )
    names = (body["shadow_model_name"], body["shadow_model_version"]) if shadow else None
    return Written(value, columns, part.entity_ids, names)
