"""Model control: the live serving state on ``model-updates``, followed by every worker.

The compacted ``model-updates`` topic holds, per model name, the latest
``ModelUpdate``: champion, challenger and how it gets traffic. A worker reads it at
start and serves the recorded champion rather than the bundle its command line
named (the command-line bundle is the fallback when nothing is recorded), then
follows the topic. Each update goes through the gate (``scoring.lifecycle.gate``); the swap
replaces the handler's whole serving plan at once, so a batch is scored by one plan
and versions change only between batches. A refused update leaves the old plan
serving and publishes a ``ModelAlert`` naming the check that failed.

This is a service with its own consumer rather than a Faust agent: an agent's
partitions are shared out across the workers of a group, but every worker needs
every update.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Message, TopicPartition
from pydantic import ValidationError

from schemas.keys import ModelKey
from schemas.lifecycle import Check, ModelAlert, ModelRef, ModelUpdate
from scoring.errors import GateRefused
from scoring.lifecycle.decisions import Serving, apply_update, deploy
from scoring.lifecycle.registry import load_ref
from scoring.lifecycle.sources import NOT_ALLOWED, ModelSources
from scoring.model.bundle import ModelBundle
from streams.kafka.config import command_producer_config, reader_config
from streams.services.control.loads import Load, PendingLoads
from streams.services.loop.policies import Never
from streams.services.loop.runner import kafka_clients, runner
from streams.services.loop.service_loop import ClientFactory
from streams.services.loop.stats import LoopStats
from streams.services.loop.step import Assign, LoopContext, Step
from streams.services.score import ScoreHandler
from streams.services.shared.model_updates import WORKER_ID, live_update, publish_update
from streams.settings import Settings

log = logging.getLogger(__name__)


def alert(outcome: str, check: Check, reason: str, version: str, serving: ModelBundle) -> ModelAlert:
    return ModelAlert(
        outcome=outcome,
        check=check,
        reason=reason,
        version=version,
        serving=str(ModelKey(serving.name, serving.version)),
        worker=WORKER_ID,
        created_at=int(time.time() * 1000),
    )


def model_sources(settings: Settings, own: ModelBundle | None) -> ModelSources:
    """Where this worker loads bundles from: the registry, its own bundle's directory, listed prefixes."""
    extra = [s.strip() for s in settings.model_sources.split(",") if s.strip()]
    return ModelSources([settings.registry_root, *([str(own.path)] if own and own.path else []), *extra])


def guarded_load(sources: ModelSources) -> Callable[[ModelRef], ModelBundle]:
    """``load_ref`` for bundles under ``sources`` only; anything else is refused untouched."""

    def load(ref: ModelRef) -> ModelBundle:
        if not sources.allows(ref.uri):
            raise GateRefused(Check.source, f"{ref.name} {ref.version}: {NOT_ALLOWED}")
        return load_ref(ref)

    return load


def refuse_outside(update: ModelUpdate, sources: ModelSources) -> None:
    """``GateRefused`` if a bundle the update names lies outside ``sources``, even one of a version that
    serves already (it would be reused, not loaded): the verdict on a record does not depend on what
    the worker happens to serve, and a worker starting on it would refuse it too."""
    for ref in (update.champion, update.challenger):
        if ref is not None and not sources.allows(ref.uri):
            raise GateRefused(Check.source, f"{ref.name} {ref.version}: {NOT_ALLOWED}")


def startup_serving(
    settings: Settings, fallback: ModelBundle, sources: ModelSources
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
            serving = apply_update(candidate, serving, guarded_load(sources))
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
        sources: ModelSources,
        on_serving: Callable[[Serving], None] | None = None,
        startup_alert: ModelAlert | None = None,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.positions = dict(positions)  # partition -> next offset: where startup (then this) read to
        self.on_serving = on_serving
        self.pending_alerts = [startup_alert] if startup_alert else []
        self.sources = sources
        self.loads = PendingLoads(settings.model_fetch_timeout_s)
        self._newest_applied = 0
        self.applied = 0
        self.refused = 0
        self.ignored = 0  # records of model-updates that name no model (junk keys)
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
            key = (record.key() or b"").decode(errors="replace")
            if record.value() is None:
                continue
            try:
                update = ModelUpdate.model_validate_json(record.value())
            except ValidationError as exc:
                if key == name:
                    self.refused += 1
                    self.pending_alerts.append(
                        alert("refused", Check.message, f"not a ModelUpdate: {exc}", "?", self.handler.bundle)
                    )
                else:
                    self._junk(key, "not a ModelUpdate")
                continue
            if update.champion.name != key:
                self._junk(key, f"its key is not the name of the model it updates ({update.champion.name})")
            elif key == name:  # another model's update is for other workers
                self.loads.start(update, self._prepare)

    def tick(self, context: LoopContext) -> None:
        for load in self.loads.finished():
            self.pending_alerts.append(self._conclude(load))
        name = self.handler.bundle.name.encode()
        for message in self.pending_alerts:
            context.emit(self.settings.topic_alerts, name, message.model_dump_json().encode(), None)
        self.pending_alerts.clear()

    def _junk(self, key: str, why: str) -> None:
        self.ignored += 1
        log.warning("record with key %r on %s ignored: %s", key[:80], self.settings.topic_model_updates, why)
        reason = f"a record with key {key[:80]!r} was ignored: {why}"
        self.pending_alerts.append(alert("refused", Check.message, reason, "?", self.handler.bundle))

    def _prepare(self, update: ModelUpdate) -> Serving:
        """Off the control loop: load and gate the update's bundles (from allowed sources only)."""
        refuse_outside(update, self.sources)
        return apply_update(update, self.handler.serving, guarded_load(self.sources))

    def apply(self, value: bytes) -> ModelAlert:
        """Apply one update (as read from the topic) now, on this thread; the alert says what happened."""
        try:
            update = ModelUpdate.model_validate_json(value)
        except ValidationError as exc:
            self.refused += 1
            return alert("refused", Check.message, f"not a ModelUpdate: {exc}", "?", self.handler.bundle)
        load = Load(0, update, time.monotonic())
        try:
            load.serving = self._prepare(update)
        except Exception as exc:  # noqa: BLE001 - said in the alert
            load.error = exc
        return self._conclude(load)

    def _conclude(self, load: Load) -> ModelAlert:
        """Serve a prepared update, or say why not."""
        update, live = load.update, self.handler.bundle
        version = update.champion.version
        if load.timed_out or load.error is not None or load.serving is None:
            self.refused += 1
            if load.timed_out:
                check, reason = (
                    Check.load,
                    f"loading the bundle took over {self.loads.timeout_s:.0f} s: given up",
                )
            elif isinstance(load.error, GateRefused):
                check, reason = load.error.check, load.error.reason
            else:
                check, reason = Check.load, f"{type(load.error).__name__}: {load.error}"
            log.error("refused model update to %s: %s: %s", version, check, reason)
            return alert("refused", check, reason, version, live)
        if load.seq and load.seq < self._newest_applied:
            return alert(
                "refused", Check.order, "a newer update was applied before this one loaded", version, live
            )
        serving, current = load.serving, self.handler.serving
        self._newest_applied = max(self._newest_applied, load.seq)
        if serving == current:  # e.g. the record a starting worker made of what it serves
            return alert("applied", Check.none, f"{update.action}: already serving", version, live)
        if self.on_serving is not None:
            self.on_serving(serving)
        self.handler.serve(serving)
        self.applied += 1
        self.timeline.append((time.time(), self._serving_label()))
        log.info("now serving %s (%s)", self._serving_label(), update.action)
        return alert("applied", Check.none, update.action, version, serving.champion)


def run_control(
    settings: Settings, step: ControlStep, stats: LoopStats, clients: ClientFactory | None = None
) -> Callable[[threading.Event], None]:
    """Every worker reads every partition of ``model-updates`` (no group), from where it read to."""
    clients = clients or kafka_clients(reader_config(settings, "control"), command_producer_config(settings))
    topic = settings.topic_model_updates

    def where() -> Assign:
        return Assign([TopicPartition(topic, p, o) for p, o in step.positions.items()])

    return runner("control", clients, step, Never, where, stats, 100, 0.25)
