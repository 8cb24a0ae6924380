"""The score step, free of any Kafka client: records in, emitted records out.

Both score paths (the batched confluent-kafka service and the plain Faust agent)
hand a batch of records to ``ScoreHandler.handle`` with an ``emit`` function that
queues one outgoing record. The handler decodes and validates each event, scores
the valid ones in one LightGBM call, and emits a prediction per scored event, a
dead letter per event that failed (original key, value and headers, plus the
reason in headers), and one monitoring batch per source partition.

It never raises on data: every failure of one event becomes that event's dead letter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import orjson

from schemas import headers as h
from schemas.messages import SCHEMA_VERSION
from scoring.bundle import ModelBundle
from scoring.errors import InvalidEvent, Stage
from scoring.scorer import BatchScorer
from scoring.validation import EventValidator
from streams.settings import Settings, UnknownFeatures

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
Emit = Callable[[str, bytes | None, bytes | None, Headers | None], None]


class KafkaRecord(Protocol):
    """The read side of a Kafka message, shaped like ``confluent_kafka.Message``."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Headers | None: ...
    def timestamp(self) -> tuple[int, int]: ...


@dataclass
class BatchStats:
    consumed: int = 0
    scored: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)


BatchListener = Callable[[BatchStats, float], None]


@dataclass(frozen=True)
class _Model:
    """What one batch is scored with; swapped as a whole, never piecemeal."""

    bundle: ModelBundle
    validator: EventValidator
    scorer: BatchScorer
    ce_source: bytes


class ScoreHandler:
    def __init__(self, settings: Settings, bundle: ModelBundle) -> None:
        self.settings = settings
        self._topic_predictions = settings.topic_predictions
        self._topic_dlq = settings.topic_dlq
        self._topic_monitor = settings.topic_monitor
        self._model = self._prepare(bundle)

    @property
    def bundle(self) -> ModelBundle:
        return self._model.bundle

    def swap(self, bundle: ModelBundle) -> None:
        """Serve ``bundle`` from the next batch on."""
        self._model = self._prepare(bundle)

    def _prepare(self, bundle: ModelBundle) -> _Model:
        validator = EventValidator(
            bundle.spec,
            reject_unknown=self.settings.unknown_features is UnknownFeatures.reject,
            max_bytes=self.settings.max_message_bytes,
        )
        scorer = BatchScorer(bundle, num_threads=self.settings.predict_threads)
        return _Model(bundle, validator, scorer, f"streamscore/{bundle.name}/{bundle.version}".encode())

    def handle(self, records: Sequence[KafkaRecord], emit: Emit) -> BatchStats:
        model = self._model
        stats = BatchStats(consumed=len(records))
        parse = model.validator.parse
        valid: list[KafkaRecord] = []
        event_ids: list[str] = []
        entity_ids: list[str] = []
        event_times: list[int] = []
        rows: list[list[float]] = []
        for record in records:
            try:
                event = parse(record.value())
            except InvalidEvent as exc:
                self._dead_letter(record, exc.stage, type(exc).__name__, exc.reason, emit, stats)
                continue
            except Exception as exc:  # noqa: BLE001 - the worker never dies on data
                self._dead_letter(record, Stage.validate, type(exc).__name__, str(exc), emit, stats)
                continue
            valid.append(record)
            event_ids.append(event.event_id)
            entity_ids.append(event.entity_id)
            event_times.append(event.event_time_ms)
            rows.append(event.row)
        if not valid:
            return stats

        result = model.scorer.score(rows)
        for index, reason in result.failed.items():
            self._dead_letter(valid[index], Stage.score, "ScoreError", reason, emit, stats)
        scored_index = np.flatnonzero(result.scored)
        stats.scored = len(scored_index)
        self._emit_predictions(model, valid, event_ids, entity_ids, event_times, result, scored_index, emit)
        if self.settings.monitor_enabled and stats.scored:
            self._emit_monitor(
                model, valid, event_ids, entity_ids, event_times, rows, result, scored_index, emit
            )
        return stats

    def _emit_predictions(self, model, valid, event_ids, entity_ids, event_times, result, scored_index, emit):
        bundle = model.bundle
        name, version = bundle.name, bundle.version
        now_ms = int(time.time() * 1000)
        with_headers = self.settings.prediction_headers
        if with_headers:
            ce_time = datetime.fromtimestamp(now_ms / 1000, UTC).isoformat().encode()
            ce_fixed = [
                (h.CE_SPECVERSION, b"1.0"),
                (h.CE_TYPE, h.PREDICTION_CE_TYPE.encode()),
                (h.CE_SOURCE, model.ce_source),
                (h.CE_TIME, ce_time),
                ("content-type", b"application/json"),
            ]
        scores = result.scores.tolist()
        labels = result.labels.tolist() if result.labels is not None else None
        topic = self._topic_predictions
        dumps = orjson.dumps
        for j, i in enumerate(scored_index.tolist()):
            record = valid[i]
            event_id = event_ids[i]
            entity_id = entity_ids[i]
            value = dumps(
                {
                    "event_id": event_id,
                    "entity_id": entity_id,
                    "score": scores[j],
                    "label": labels[j] if labels is not None else None,
                    "model_name": name,
                    "model_version": version,
                    "event_time": event_times[i],
                    "scored_at": now_ms,
                    "latency_ms": now_ms - record.timestamp()[1],
                    "topic": record.topic(),
                    "partition": record.partition(),
                    "offset": record.offset(),
                    "schema_version": SCHEMA_VERSION,
                }
            )
            headers = [(h.CE_ID, event_id.encode()), *ce_fixed] if with_headers else None
            emit(topic, entity_id.encode(), value, headers)

    def _emit_monitor(
        self, model, valid, event_ids, entity_ids, event_times, rows, result, scored_index, emit
    ):
        bundle = model.bundle
        scores = result.scores
        matrix = np.asarray(rows, dtype=np.float64)
        by_partition: dict[tuple[str, int], list[int]] = {}
        for j, i in enumerate(scored_index.tolist()):
            record = valid[i]
            by_partition.setdefault((record.topic(), record.partition()), []).append(j)
        for (topic, partition), positions in by_partition.items():
            picked = scored_index[positions]
            value = orjson.dumps(
                {
                    "model_name": bundle.name,
                    "model_version": bundle.version,
                    "source_topic": topic,
                    "partition": partition,
                    "offsets": [valid[i].offset() for i in picked.tolist()],
                    "event_ids": [event_ids[i] for i in picked.tolist()],
                    "entity_ids": [entity_ids[i] for i in picked.tolist()],
                    "event_times": [event_times[i] for i in picked.tolist()],
                    "scores": scores[positions],
                    "feature_names": bundle.spec.names,
                    "rows": matrix[picked],
                    "schema_version": SCHEMA_VERSION,
                },
                option=orjson.OPT_SERIALIZE_NUMPY,
            )
            emit(self._topic_monitor, f"{topic}-{partition}".encode(), value, None)

    def _dead_letter(
        self, record: KafkaRecord, stage: Stage, error_class: str, message: str, emit: Emit, stats: BatchStats
    ) -> None:
        stats.dead_letters[stage.value] = stats.dead_letters.get(stage.value, 0) + 1
        context = [
            (h.DLQ_CLASS, error_class.encode()),
            (h.DLQ_MESSAGE, message.encode("utf-8", "replace")[:4096]),
            (h.DLQ_STAGE, stage.value.encode()),
            (h.DLQ_TOPIC, str(record.topic()).encode()),
            (h.DLQ_PARTITION, str(record.partition()).encode()),
            (h.DLQ_OFFSET, str(record.offset()).encode()),
            (h.DLQ_TIME, str(int(time.time() * 1000)).encode()),
        ]
        original = list(record.headers() or [])
        emit(self._topic_dlq, record.key(), record.value(), original + context)
