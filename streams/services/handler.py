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

import numpy as np
import orjson

from schemas import headers as h
from schemas.lifecycle import ChallengerMode
from schemas.messages import SCHEMA_VERSION
from scoring.bundle import ModelBundle
from scoring.errors import InvalidEvent, Stage
from scoring.explain import Explainer, sampled
from scoring.lifecycle import Serving
from scoring.routing import to_challenger
from scoring.scorer import BatchScorer, ScoredBatch
from scoring.validation import EventValidator
from streams.kafka.records import Emit, KafkaRecord
from streams.services.dead_letters import dead_letter
from streams.settings import Settings, UnknownFeatures

log = logging.getLogger(__name__)


@dataclass
class BatchStats:
    consumed: int = 0
    scored: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[int] = field(default_factory=list)  # per prediction: Kafka timestamp to scored
    event_times_ms: list[int] = field(default_factory=list)  # per prediction
    scored_at_ms: int = 0

    def add(self, other: BatchStats) -> None:
        """Count ``other`` (a part of the same batch) in these."""
        self.consumed += other.consumed
        self.scored += other.scored
        for stage, count in other.dead_letters.items():
            self.dead_letters[stage] = self.dead_letters.get(stage, 0) + count
        self.latencies_ms += other.latencies_ms
        self.event_times_ms += other.event_times_ms
        self.scored_at_ms = max(self.scored_at_ms, other.scored_at_ms)

    @property
    def event_ages_ms(self) -> np.ndarray:
        """Per prediction: its event_time to when it was scored (computed only when asked)."""
        return self.scored_at_ms - np.asarray(self.event_times_ms, dtype=np.int64)


BatchListener = Callable[[BatchStats, float], None]

MONITOR_MESSAGE_BYTES = 400_000
_JSON_BYTES_PER_VALUE = 25  # a float64 as JSON text, at most, with its comma


@dataclass
class _Batch:
    """The valid events of a batch, column by column, aligned by position."""

    records: list[KafkaRecord] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    entity_ids: list[str] = field(default_factory=list)
    event_times: list[int] = field(default_factory=list)
    rows: list[list[float]] = field(default_factory=list)

    def select(self, positions: list[int]) -> _Batch:
        return _Batch(
            [self.records[i] for i in positions],
            [self.event_ids[i] for i in positions],
            [self.entity_ids[i] for i in positions],
            [self.event_times[i] for i in positions],
            [self.rows[i] for i in positions],
        )


@dataclass(frozen=True)
class _LoadedModel:
    """One model ready to score: its bundle and what is derived from it."""

    bundle: ModelBundle
    scorer: BatchScorer
    explainer: Explainer
    ce_source: bytes


@dataclass(frozen=True)
class _Plan:
    """What one batch is scored with; replaced as a whole between batches, never piecemeal.

    With a challenger in ``split`` mode, each entity goes to one model by a stable hash
    of its id; in ``shadow`` mode the challenger scores every event too, but only the
    champion's prediction is published and the monitoring record carries both.
    """

    serving: Serving  # the bundles, as the lifecycle names them
    champion: _LoadedModel
    validator: EventValidator
    monitor_rows: int
    loaded_at: float
    challenger: _LoadedModel | None = None


class ScoreHandler:
    def __init__(self, settings: Settings, bundle: ModelBundle) -> None:
        self.settings = settings
        self._topic_predictions = settings.topic_predictions
        self._topic_dlq = settings.topic_dlq
        self._topic_monitor = settings.topic_monitor
        self._plan = self._prepare(Serving(bundle))

    @property
    def bundle(self) -> ModelBundle:
        """The champion: the model serving every event not routed to a challenger."""
        return self._plan.champion.bundle

    @property
    def serving(self) -> Serving:
        """The champion, and the challenger with its mode and share if one serves."""
        return self._plan.serving

    @property
    def loaded_at(self) -> float:
        """When the serving plan was put in place (epoch seconds)."""
        return self._plan.loaded_at

    def swap(
        self,
        bundle: ModelBundle,
        challenger: ModelBundle | None = None,
        mode: ChallengerMode | None = None,
        share: float = 0.0,
    ) -> None:
        """Serve ``bundle`` (and a challenger, if given) from the next batch on."""
        self.serve(Serving(bundle, challenger, mode, share))

    def serve(self, serving: Serving) -> None:
        """Serve ``serving`` from the next batch on."""
        self._plan = self._prepare(serving)

    def _prepare(self, serving: Serving) -> _Plan:
        bundle, challenger = serving.champion, serving.challenger
        if challenger is None:
            serving = Serving(bundle)
        validator = EventValidator(
            bundle.spec,
            reject_unknown=self.settings.unknown_features is UnknownFeatures.reject,
            max_bytes=self.settings.max_message_bytes,
        )
        # keep each monitoring message well under the broker's 1 MB default limit
        per_row = _JSON_BYTES_PER_VALUE * (len(bundle.spec.names) + 1) + 150
        monitor_rows = max(1, MONITOR_MESSAGE_BYTES // per_row)
        return _Plan(
            serving=serving,
            champion=self._loaded(bundle),
            validator=validator,
            monitor_rows=monitor_rows,
            loaded_at=time.time(),
            challenger=self._loaded(challenger) if challenger is not None else None,
        )

    def _loaded(self, bundle: ModelBundle) -> _LoadedModel:
        return _LoadedModel(
            bundle,
            BatchScorer(bundle, num_threads=self.settings.predict_threads),
            Explainer(bundle, top_k=self.settings.explain_top_k),
            f"streamscore/{bundle.name}/{bundle.version}".encode(),
        )

    def explain_event(self, value: bytes) -> dict:
        """Score and fully explain one event with the champion (``InvalidEvent`` if not valid)."""
        plan = self._plan
        model = plan.champion
        event = plan.validator.parse(value)
        matrix = np.asarray([event.row], dtype=np.float64)
        result = model.scorer.score(matrix)
        if result.failed:
            raise InvalidEvent(Stage.score, result.failed[0])
        explanation = model.explainer.explain(matrix, top_k=len(model.bundle.spec.names))[0]
        return {
            "event_id": event.event_id,
            "entity_id": event.entity_id,
            "score": float(result.scores[0]),
            "label": bool(result.labels[0]) if result.labels is not None else None,
            "model_name": model.bundle.name,
            "model_version": model.bundle.version,
            "explanation": explanation,
        }

    def handle(self, records: Sequence[KafkaRecord], emit: Emit) -> BatchStats:
        plan = self._plan
        stats = BatchStats(consumed=len(records))
        parse = plan.validator.parse
        batch = _Batch()
        for record in records:
            try:
                event = parse(record.value())
            except InvalidEvent as exc:
                self.dead_letter(record, exc.stage, type(exc).__name__, exc.reason, emit, stats)
                continue
            except Exception as exc:  # noqa: BLE001 - the worker never dies on data
                self.dead_letter(record, Stage.validate, type(exc).__name__, str(exc), emit, stats)
                continue
            batch.records.append(record)
            batch.event_ids.append(event.event_id)
            batch.entity_ids.append(event.entity_id)
            batch.event_times.append(event.event_time_ms)
            batch.rows.append(event.row)
        if not batch.records:
            return stats

        matrix = np.asarray(batch.rows, dtype=np.float64)
        if plan.challenger is None or plan.serving.mode is ChallengerMode.shadow:
            self._serve(plan, plan.champion, batch, matrix, emit, stats, shadow=plan.challenger)
            return stats
        routed = to_challenger(batch.entity_ids, plan.serving.share)
        for model, mask in ((plan.champion, ~routed), (plan.challenger, routed)):
            if mask.any():
                positions = np.flatnonzero(mask)
                self._serve(plan, model, batch.select(positions.tolist()), matrix[positions], emit, stats)
        return stats

    def _serve(
        self,
        plan: _Plan,
        model: _LoadedModel,
        batch: _Batch,
        matrix: np.ndarray,
        emit: Emit,
        stats: BatchStats,
        shadow: _LoadedModel | None = None,
    ) -> None:
        """Score ``batch`` with ``model``; emit its predictions, dead letters and monitoring records."""
        result = model.scorer.score(matrix)
        for index, reason in result.failed.items():
            self.dead_letter(batch.records[index], Stage.score, "ScoreError", reason, emit, stats)
        if result.failed:
            batch = batch.select(np.flatnonzero(result.scored).tolist())
            matrix = matrix[result.scored]
        if not batch.records:
            return
        stats.scored += len(batch.records)
        explained: dict[int, dict] = {}
        picked = sampled(batch.event_ids, self.settings.explain_share)
        if picked:
            explained = dict(zip(picked, model.explainer.explain(matrix[picked]), strict=True))
        partitions = self._emit_predictions(model, batch, result, emit, explained, stats)
        if self.settings.monitor_enabled:
            shadow_scores = None
            if shadow is not None:  # the challenger's score per row; NaN where it failed
                scored = shadow.scorer.score(matrix)
                shadow_scores = np.full(len(matrix), np.nan)
                shadow_scores[scored.scored] = scored.scores
            self._emit_monitor(
                plan, model, batch, partitions, matrix, result.scores, emit, shadow, shadow_scores
            )

    def _emit_predictions(
        self,
        model: _LoadedModel,
        batch: _Batch,
        result: ScoredBatch,
        emit: Emit,
        explained: dict[int, dict],
        stats: BatchStats,
    ) -> list[int]:
        """Emit one prediction per scored event; returns the source partition of each."""
        bundle = model.bundle
        name, version = bundle.name, bundle.version
        now_ms = int(time.time() * 1000)
        with_headers = self.settings.prediction_headers
        if with_headers:
            ce_fixed = [
                (h.CE_SPECVERSION, b"1.0"),
                (h.CE_TYPE, h.PREDICTION_CE_TYPE.encode()),
                (h.CE_SOURCE, model.ce_source),
                (h.CE_TIME, h.ce_time(now_ms)),
                ("content-type", b"application/json"),
            ]
        labels = result.labels.tolist() if result.labels is not None else [None] * len(batch.records)
        topic = self._topic_predictions
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
                "schema_version": SCHEMA_VERSION,
            }
            if explained and i in explained:
                body["explanation"] = explained[i]
            value = dumps(body)
            headers = [(h.CE_ID, event_id.encode()), *ce_fixed] if with_headers else None
            emit(topic, entity_id.encode(), value, headers)
        return partitions

    def _emit_monitor(
        self,
        plan: _Plan,
        model: _LoadedModel,
        batch: _Batch,
        partitions: list[int],
        matrix: np.ndarray,
        scores: np.ndarray,
        emit: Emit,
        shadow: _LoadedModel | None,
        shadow_scores: np.ndarray | None,
    ) -> None:
        """Monitoring messages in columns: per source partition, at most ``monitor_rows`` rows each."""
        bundle = model.bundle
        source = batch.records[0].topic()
        by_partition = np.asarray(partitions)
        step = plan.monitor_rows
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
            value = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
            if len(value) > 2 * MONITOR_MESSAGE_BYTES and len(index) > 1:
                # long identifiers made it bigger than the estimate: halve it until it fits
                half = len(index) // 2
                emit_rows(partition, index[:half])
                emit_rows(partition, index[half:])
                return
            emit(self._topic_monitor, key_of[partition], value, None)

        for partition in np.unique(by_partition).tolist():
            key_of[partition] = f"{source}-{partition}".encode()
            in_partition = np.flatnonzero(by_partition == partition)
            for start in range(0, len(in_partition), step):
                emit_rows(partition, in_partition[start : start + step])

    def dead_letter(
        self, record: KafkaRecord, stage: Stage, error_class: str, message: str, emit: Emit, stats: BatchStats
    ) -> None:
        stats.dead_letters[stage.value] = stats.dead_letters.get(stage.value, 0) + 1
        dead_letter(
            record, stage.value, error_class, message, emit, self._topic_dlq, self.settings.max_message_bytes
        )
