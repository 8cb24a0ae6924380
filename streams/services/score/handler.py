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
from dataclasses import dataclass

import numpy as np

from schemas.lifecycle import ChallengerMode
from scoring.errors import InvalidEvent, Stage, UnknownClass
from scoring.lifecycle.decisions import Serving
from scoring.lifecycle.routing import to_challenger
from scoring.model.bundle import ModelBundle
from scoring.model.explain import Explainer, sampled
from scoring.model.scorer import BatchScorer, ScoredBatch
from scoring.model.validation import EventValidator, ParsedEvent
from streams.kafka.records import Emit, KafkaRecord
from streams.services.score.batch_stats import BatchStats
from streams.services.score.outputs import (
    JSON_BYTES_PER_VALUE,
    MONITOR_MESSAGE_BYTES,
    LoadedModel,
    ValidEvents,
    emit_monitor,
    emit_predictions,
)
from streams.services.shared.dead_letters import dead_letter
from streams.services.shared.monitor_decodes import Written
from streams.settings import Settings, UnknownFeatures

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Plan:
    """What one batch is scored with; replaced as a whole between batches, never piecemeal.

    With a challenger in ``split`` mode, each entity goes to one model by a stable hash
    of its id; in ``shadow`` mode the challenger scores every event too, but only the
    champion's prediction is published and the monitoring record carries both.
    """

    serving: Serving  # the bundles, as the lifecycle names them
    champion: LoadedModel
    validator: EventValidator
    monitor_rows: int
    loaded_at: float
    challenger: LoadedModel | None = None


class RowRefused(InvalidEvent):
    """One event of a request scored outside the stream failed validation; ``row`` is its position."""

    def __init__(self, row: int, stage: Stage, reason: str) -> None:
        super().__init__(stage, reason)
        self.row = row


@dataclass(frozen=True)
class Answered:
    """One model's part of a request scored outside the stream: which rows it scored, and how."""

    model: LoadedModel
    rows: np.ndarray  # positions in the request
    result: ScoredBatch  # aligned with ``rows``; its ``failed`` indexes ``rows``


class ScoreHandler:
    def __init__(self, settings: Settings, bundle: ModelBundle) -> None:
        self.settings = settings
        self._topic_predictions = settings.topic_predictions
        self._topic_dlq = settings.topic_dlq
        self._topic_monitor = settings.topic_monitor
        self._plan = self._prepare(Serving(bundle))
        # told of each monitoring record written: the drift and learn roles of this process take its
        # columns instead of decoding it (``monitor_decodes``); None when no role here reads monitor
        self.monitor_written: Callable[[Written], None] | None = None

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
        classes = len(bundle.class_names) * (2 if challenger is not None else 1)  # a shadow's too
        per_row = JSON_BYTES_PER_VALUE * (len(bundle.spec.names) + 1 + classes) + 150
        monitor_rows = max(1, MONITOR_MESSAGE_BYTES // per_row)
        return _Plan(
            serving=serving,
            champion=self._loaded(bundle),
            validator=validator,
            monitor_rows=monitor_rows,
            loaded_at=time.time(),
            challenger=self._loaded(challenger) if challenger is not None else None,
        )

    def _loaded(self, bundle: ModelBundle) -> LoadedModel:
        return LoadedModel(
            bundle,
            BatchScorer(bundle, num_threads=self.settings.predict_threads),
            Explainer(bundle, top_k=self.settings.explain_top_k),
            f"streamscore/{bundle.name}/{bundle.version}".encode(),
        )

    def explain_event(self, value: bytes, class_name: str | None = None) -> dict:
        """Score and fully explain one event with the champion (``InvalidEvent`` if not valid).

        A multiclass model's answer adds every class's probability, and explains the predicted
        class, or ``class_name`` (``UnknownClass`` if the model has no such class).
        """
        plan = self._plan
        model = plan.champion
        bundle = model.bundle
        wanted = None
        if class_name is not None:
            wanted = bundle.class_index(class_name)
            if wanted is None:
                names = ", ".join(bundle.class_names[:20]) or "none: it is not a multiclass model"
                model_key = f"{bundle.name}:{bundle.version}"
                raise UnknownClass(f"{model_key} has no class {class_name!r}; its classes: {names}")
        event = plan.validator.parse(value)
        matrix = np.asarray([event.row], dtype=np.float64)
        result = model.scorer.score(matrix)
        if result.failed:
            raise InvalidEvent(Stage.score, result.failed[0])
        classes = None
        if result.predicted is not None:
            classes = np.asarray([result.predicted[0] if wanted is None else wanted])
        explanation = model.explainer.explain(matrix, top_k=len(bundle.spec.names), classes=classes)[0]
        answer = {
            "event_id": event.event_id,
            "entity_id": event.entity_id,
            "score": float(result.scores[0]),
            "label": result.labels[:1].tolist()[0] if result.labels is not None else None,
            "model_name": bundle.name,
            "model_version": bundle.version,
            "explanation": explanation,
        }
        if result.probabilities is not None:
            probabilities = result.probabilities[0].tolist()
            answer["probabilities"] = dict(zip(bundle.class_names, probabilities, strict=True))
        return answer

    def score_events(
        self, values: Sequence[bytes], version: str | None = None
    ) -> tuple[list[ParsedEvent], list[Answered]]:
        """Score encoded feature events with the current plan as the stream would, emitting nothing.

        For request/response callers (the inference protocol): the same validator, the same
        split by entity (a shadow challenger's score is not asked for: only the monitor
        record carries it) and the same scorers. ``version`` names a served model that then
        scores every row instead. Raises ``RowRefused`` for the first invalid event and
        ``KeyError`` if ``version`` does not serve (now: the plan may have changed since the
        caller looked).
        """
        plan = self._plan
        events: list[ParsedEvent] = []
        for row, value in enumerate(values):
            try:
                events.append(plan.validator.parse(value))
            except InvalidEvent as exc:
                raise RowRefused(row, exc.stage, exc.reason) from None
            except Exception as exc:  # noqa: BLE001 - as on the stream, anything else is a refusal too
                raise RowRefused(row, Stage.validate, f"{type(exc).__name__}: {exc}") from None
        matrix = np.asarray([e.row for e in events], dtype=np.float64).reshape(len(events), -1)
        every = np.arange(len(events))
        if version is not None:
            by_version = {m.bundle.version: m for m in (plan.champion, plan.challenger) if m is not None}
            parts = [(by_version[version], every)]
        elif plan.challenger is None or plan.serving.mode is ChallengerMode.shadow:
            parts = [(plan.champion, every)]
        else:
            routed = to_challenger([e.entity_id for e in events], plan.serving.share)
            parts = [(plan.champion, every[~routed]), (plan.challenger, every[routed])]
        return events, [Answered(m, rows, m.scorer.score(matrix[rows])) for m, rows in parts if len(rows)]

    def handle(self, records: Sequence[KafkaRecord], emit: Emit) -> BatchStats:
        plan = self._plan
        stats = BatchStats(consumed=len(records))
        parse = plan.validator.fields
        batch = ValidEvents()
        for record in records:
            try:
                event_id, entity_id, event_time, row = parse(record.value())
            except InvalidEvent as exc:
                self.dead_letter(record, exc.stage, type(exc).__name__, exc.reason, emit, stats)
                continue
            except Exception as exc:  # noqa: BLE001 - the worker never dies on data
                self.dead_letter(record, Stage.validate, type(exc).__name__, str(exc), emit, stats)
                continue
            batch.records.append(record)
            batch.event_ids.append(event_id)
            batch.entity_ids.append(entity_id)
            batch.event_times.append(event_time)
            batch.rows.append(row)
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
        model: LoadedModel,
        batch: ValidEvents,
        matrix: np.ndarray,
        emit: Emit,
        stats: BatchStats,
        shadow: LoadedModel | None = None,
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
            classes = None if result.predicted is None else result.predicted[picked]
            explanations = model.explainer.explain(matrix[picked], classes=classes)
            explained = dict(zip(picked, explanations, strict=True))
        partitions = emit_predictions(
            self._topic_predictions,
            self.settings.prediction_headers,
            model,
            batch,
            result,
            emit,
            explained,
            stats,
        )
        if self.settings.monitor_enabled:
            shadow_scores = shadow_probabilities = None
            if shadow is not None:  # the challenger's score per row; NaN where it failed
                scored = shadow.scorer.score(matrix)
                shadow_scores = np.full(len(matrix), np.nan)
                shadow_scores[scored.scored] = scored.scores
                if scored.probabilities is not None and result.probabilities is not None:  # multiclass
                    shadow_probabilities = np.full((len(matrix), scored.probabilities.shape[1]), np.nan)
                    shadow_probabilities[scored.scored] = scored.probabilities
            emit_monitor(
                self._topic_monitor,
                plan.monitor_rows,
                self.settings.partitions,
                model,
                batch,
                partitions,
                matrix,
                result.scores,
                emit,
                shadow,
                shadow_scores,
                result.probabilities,
                shadow_probabilities,
                self.monitor_written,
            )

    def dead_letter(
        self, record: KafkaRecord, stage: Stage, error_class: str, message: str, emit: Emit, stats: BatchStats
    ) -> None:
        stats.dead_letters[stage.value] = stats.dead_letters.get(stage.value, 0) + 1
        dead_letter(
            record, stage.value, error_class, message, emit, self._topic_dlq, self.settings.max_message_bytes
        )
