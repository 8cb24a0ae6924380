"""The batched score path: a service loop over ``features`` on its own confluent-kafka consumer.

Faust's per-message consumer and stream machinery caps an agent near 13,000 events/s
on two cores, whatever the agent does. This service runs inside the Faust worker and
its lifecycle, but consumes and produces in batches on a thread of its own, so the
event loop stays free for the web server.

Delivery: at-least-once (``policies.AfterAcks``): a batch's offsets are committed only
after every prediction, dead letter and monitoring record of that batch is acknowledged;
a crash before the commit replays the batch, and predictions carry ``event_id`` so
consumers can deduplicate. With ``processing_guarantee=exactly_once`` each batch is one
Kafka transaction instead (``policies.Transactional``).

The worker never dies on data: the handler dead-letters each event it cannot read or
score; if handling a batch still raises (a defect the handler did not foresee), the
batch is split in halves until the events that cause it are alone, and those are
dead-lettered with the error (``stage=score``). Events handled before the failure may be
emitted twice then (at-least-once allows it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import Message

from scoring.errors import Stage
from streams.kafka.config import SCORE_PREFETCH_KBYTES, group_consumer_config, producer_config
from streams.kafka.names import groups
from streams.services.loop.policies import AfterAcks, Transactional
from streams.services.loop.runner import kafka_clients
from streams.services.loop.service_loop import ClientFactory, CommitPolicy, ServiceLoop
from streams.services.loop.stats import LoopStats
from streams.services.loop.step import LoopContext, Step, Subscribe
from streams.services.score.batch_stats import BatchListener, BatchStats
from streams.services.score.handler import ScoreHandler
from streams.settings import Settings

log = logging.getLogger(__name__)


class ScoreStep(Step):
    """Score a batch with the handler; report it to ``on_batch`` once its outputs are delivered."""

    def __init__(self, handler: ScoreHandler, on_batch: BatchListener | None = None) -> None:
        self.handler = handler
        self.on_batch = on_batch
        self.isolated = 0  # events dead-lettered because handling their batch raised

    def process(self, records: list[Message], context: LoopContext) -> BatchStats:
        try:
            return self.handler.handle(records, context.emit)
        except Exception:
            log.exception("handling a batch of %d records failed; isolating the cause", len(records))
            return self._isolate(records, context)

    def _isolate(self, records: list[Message], context: LoopContext) -> BatchStats:
        """Handle halves separately; an event that fails alone is dead-lettered with the error."""
        stats = BatchStats()
        pending = [records]
        while pending:
            part = pending.pop()
            try:
                stats.add(self.handler.handle(part, context.emit))
                continue
            except Exception as exc:  # noqa: BLE001
                if len(part) > 1:
                    half = len(part) // 2
                    pending += [part[half:], part[:half]]
                    continue
                error = exc
            record = part[0]
            one = BatchStats(consumed=1)
            self.handler.dead_letter(record, Stage.score, type(error).__name__, str(error), context.emit, one)
            stats.add(one)
            self.isolated += 1
            log.error(
                "event at %s [%s] @%s dead-lettered: handling it raised %r",
                record.topic(),
                record.partition(),
                record.offset(),
                error,
            )
        return stats

    def committed(self, result: Any, seconds: float) -> None:
        if self.on_batch is not None:
            self.on_batch(result, seconds)


def score_clients(settings: Settings) -> ClientFactory:
    consumer = group_consumer_config(settings, groups(settings).score, prefetch_kbytes=SCORE_PREFETCH_KBYTES)
    return kafka_clients(consumer, producer_config(settings, transactional=True))


def score_policy(settings: Settings) -> CommitPolicy:
    return Transactional(settings.shutdown_timeout_s) if settings.exactly_once else AfterAcks()


def score_loop(
    settings: Settings,
    step: ScoreStep,
    stopping: threading.Event,
    stats: LoopStats | None = None,
    clients: ClientFactory | None = None,
) -> ServiceLoop:
    return ServiceLoop(
        "score",
        clients or score_clients(settings),
        step,
        score_policy(settings),
        Subscribe([settings.topic_features]),
        stopping,
        batch_size=settings.batch_size,
        linger_s=settings.batch_linger_ms / 1000.0,
        stats=stats,
        commit_deadline_s=settings.session_timeout_s,
    )


def run_score(
    settings: Settings, step: ScoreStep, stats: LoopStats, clients: ClientFactory | None = None
) -> Callable[[threading.Event], None]:
    """The score role as a supervised service's work: a new loop (new clients) per start."""
    return lambda stopping: score_loop(settings, step, stopping, stats, clients).run()
