"""Model control: the live serving state on ``model-updates``, followed by every worker.

The compacted ``model-updates`` topic holds, per model name, the latest
``ModelUpdate``: champion, challenger and how it gets traffic. A worker reads it at
start and serves the recorded champion rather than the bundle its command line
named (the command-line bundle is the fallback when nothing is recorded), then
follows the topic. Each update goes through the gate (``scoring.gate``); the swap
replaces the handler's whole serving plan at once, so a batch is scored by one plan
and versions change only between batches. A refused update leaves the old plan
serving and publishes a ``ModelAlert`` naming the check that failed.

This is a service with its own consumer rather than a Faust agent: an agent's
partitions are shared out across the workers of a group, but every worker needs
every update.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from pydantic import ValidationError

from schemas.lifecycle import ModelAlert, ModelRef, ModelUpdate
from scoring.bundle import ModelBundle
from scoring.gate import GateRefused
from scoring.lifecycle import Serving, apply_update, deploy
from scoring.registry import load_ref
from streams.kafka.config import command_producer_config, reader_config
from streams.kafka.errors import DeliveryFailed
from streams.kafka.readers import read_latest
from streams.services.handler import ScoreHandler
from streams.services.loop import (
    Assign,
    ClientCallbacks,
    ClientFactory,
    LoopContext,
    LoopStats,
    ServiceLoop,
    Step,
)
from streams.services.policies import Never
from streams.settings import Settings

log = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def live_update(settings: Settings, name: str) -> tuple[ModelUpdate | None, dict[int, int]]:
    """The recorded serving state of model ``name`` (None if never deployed) and the topic positions."""
    latest, positions = read_latest(settings, settings.topic_model_updates, idle_s=0.5)
    value = latest.get(name)
    if value is None:
        return None, positions
    try:
        return ModelUpdate.model_validate_json(value), positions
    except ValidationError:
        log.error("the recorded update of %s on %s is not a ModelUpdate", name, settings.topic_model_updates)
        return None, positions


def publish_update(settings: Settings, update: ModelUpdate) -> None:
    producer = Producer(command_producer_config(settings))
    producer.produce(settings.topic_model_updates, update.model_dump_json().encode(), update.champion.name)
    if producer.flush(15) != 0:
        raise DeliveryFailed(1, settings.topic_model_updates, settings.kafka_bootstrap)


def alert(outcome: str, check: str, reason: str, version: str, serving: ModelBundle) -> ModelAlert:
    return ModelAlert(
        outcome=outcome,
        check=check,
        reason=reason,
        version=version,
        serving=f"{serving.name}:{serving.version}",
        worker=WORKER_ID,
        created_at=int(time.time() * 1000),
    )


def startup_serving(
    settings: Settings, fallback: ModelBundle
) -> tuple[Serving, dict[int, int], ModelAlert | None]:
    """What a starting worker serves: the recorded state, else the newest earlier champion that
    passes the gate (a refused update stays recorded), else ``fallback`` (the command line's)."""
    update, positions = live_update(settings, fallback.name)
    serving = Serving(fallback)
    if update is None:
        if fallback.path is not None:  # record what serves, so the first deploy can be rolled back
            ref = ModelRef(
                name=fallback.name, version=fallback.version, uri=str(Path(fallback.path).resolve())
            )
            publish_update(settings, deploy(None, ref, reason="first worker started on it"))
        return serving, positions, None
    refusal: ModelAlert | None = None
    earlier = [update.model_copy(update={"champion": ref, "challenger": None}) for ref in update.history]
    for candidate in [update, *reversed(earlier)]:
        try:
            serving = apply_update(candidate, serving, load_ref)
        except GateRefused as exc:
            log.error("recorded champion %s failed the gate: %s", candidate.champion.version, exc)
            refusal = refusal or alert("refused", exc.check, exc.reason, update.champion.version, fallback)
            continue
        log.info("serving the recorded version %s (the command line named %s)",
                 serving.champion.version, fallback.version)  # fmt: skip
        return serving, positions, refusal
    return serving, positions, refusal


class ControlStep(Step):
    """Follows ``model-updates`` from the startup positions and applies updates to the handler."""

    def __init__(
        self,
        settings: Settings,
        handler: ScoreHandler,
        positions: dict[int, int],
        on_serving: Callable[[Serving], None] | None = None,
        startup_alert: ModelAlert | None = None,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.positions = dict(positions)  # partition -> next offset: where startup (then this) read to
        self.on_serving = on_serving
        self.pending_alerts = [startup_alert] if startup_alert else []
        self.applied = 0
        self.refused = 0
        self.timeline: list[tuple[float, str]] = [(time.time(), self._serving_label())]

    def _serving_label(self) -> str:
        serving = self.handler.serving
        label = serving.champion.version
        if serving.challenger is not None and serving.mode is not None:
            mode, share = serving.mode.value, serving.share
            label += f" + {serving.challenger.version} ({mode}{f' {share:.0%}' if mode == 'split' else ''})"
        return label

    def process(self, records: list[Message], context: LoopContext) -> None:
        name = self.handler.bundle.name
        for record in records:
            self.positions[record.partition()] = record.offset() + 1
            if record.value() is None or (record.key() or b"").decode(errors="replace") != name:
                continue
            self.pending_alerts.append(self.apply(record.value()))

    def tick(self, context: LoopContext) -> None:
        name = self.handler.bundle.name.encode()
        for message in self.pending_alerts:
            context.emit(self.settings.topic_alerts, name, message.model_dump_json().encode(), None)
        self.pending_alerts.clear()

    def apply(self, value: bytes) -> ModelAlert:
        """Apply one update (as read from the topic); the alert says what happened."""
        live = self.handler.bundle
        try:
            update = ModelUpdate.model_validate_json(value)
        except ValidationError as exc:
            self.refused += 1
            return alert("refused", "message", f"not a ModelUpdate: {exc}", "?", live)
        current = self.handler.serving
        try:
            serving = apply_update(update, current, load_ref)
        except GateRefused as exc:
            self.refused += 1
            log.error("refused model update to %s: %s", update.champion.version, exc)
            return alert("refused", exc.check, exc.reason, update.champion.version, live)
        if serving == current:  # e.g. the record a starting worker made of what it serves
            return alert("applied", "", f"{update.action}: already serving", update.champion.version, live)
        if self.on_serving is not None:
            self.on_serving(serving)
        self.handler.serve(serving)
        self.applied += 1
        self.timeline.append((time.time(), self._serving_label()))
        log.info("now serving %s (%s)", self._serving_label(), update.action)
        return alert("applied", "", update.action, update.champion.version, serving.champion)


def control_clients(settings: Settings) -> ClientFactory:
    def make(callbacks: ClientCallbacks) -> tuple[Consumer, Producer]:
        consumer = Consumer({**reader_config(settings, "control"), **callbacks.consumer})
        return consumer, Producer({**command_producer_config(settings), **callbacks.producer})

    return make


def run_control(
    settings: Settings, step: ControlStep, stats: LoopStats, clients: ClientFactory | None = None
) -> Callable[[threading.Event], None]:
    """Every worker reads every partition of ``model-updates`` (no group), from where it read to."""

    def run(stopping: threading.Event) -> None:
        topic = settings.topic_model_updates
        partitions = [TopicPartition(topic, p, o) for p, o in step.positions.items()]
        ServiceLoop(
            "control",
            clients or control_clients(settings),
            step,
            Never(),
            Assign(partitions),
            stopping,
            batch_size=100,
            linger_s=0.25,
            stats=stats,
        ).run()

    return run
