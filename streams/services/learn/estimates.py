"""Performance estimates on the topics, after the drift path sent them: checked, and read back.

The learn path (``EstimateChecks``) reads each window's ``PerformanceEstimate`` from
``drift``, matches the labelled events the learner joins to their windows
(``scoring.estimation.ledger``), and puts every window that settles into the next
``MetricsSnapshot`` on ``metrics`` as an ``EstimateCheck``: estimated against
realized, one per window. Its state goes into the learner's checkpoint.

Commands read them back: ``latest_estimates`` for ``streamscore status`` (from
``drift``), ``estimate_checks`` for ``streamscore report --from-topics`` (from ``metrics``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import orjson
from confluent_kafka import Message
from pydantic import ValidationError

from schemas.estimation import EstimateCheck, PerformanceEstimate
from schemas.feedback import MetricsSnapshot
from scoring.estimation.ledger import EstimateLedger
from scoring.feedback.class_shadow import class_row
from scoring.feedback.loop import Learner, ScoredEvent
from streams.kafka.errors import TopicMissing
from streams.kafka.readers import read_until_quiet
from streams.kafka.records import KafkaRecord
from streams.settings import Settings

log = logging.getLogger(__name__)


class EstimateChecks:
    """The learn path's part: estimates in from ``drift``, labelled events in from the learner, checks out."""

    def __init__(self) -> None:
        self.ledger = EstimateLedger()
        self.counters = {"estimates": 0, "checks": 0, "disagree": 0, "unreadable": 0}
        self._shape: tuple[int, int] | None = None  # a multiclass learner's features and classes

    def follow(self, learner: Learner) -> None:
        """Count every label the learner joins towards its window's check."""
        learner.on_labelled = self._labelled
        self._shape = (len(learner.spec.names), len(learner.classes)) if learner.classes else None

    def _labelled(self, event: ScoredEvent, label: float) -> None:
        """``label``: a multiclass model's class index, whose probabilities follow the features in the row."""
        probabilities: tuple[float, ...] = ()
        if self._shape is not None:  # the served model's K (a shadow challenger's K may follow)
            probabilities = tuple(class_row(np.frombuffer(event.row), *self._shape)[0])
        self.ledger.labelled(
            event.model, event.source_topic, event.partition, event.offset, event.score, label, probabilities
        )

    def on_drift(self, record: KafkaRecord) -> None:
        """One record of ``drift``: an estimate is kept, any other message there is none of this path's.

        One that does not read is counted and logged, never raised: the drift path wrote it,
        and a dead letter of derived data would help no one.
        """
        try:
            body = orjson.loads(record.value() or b"")
            if isinstance(body, dict) and body.get("type") == "performance_estimate":
                self.ledger.add(PerformanceEstimate.model_validate(body))
                self.counters["estimates"] += 1
        except (ValueError, ValidationError) as exc:
            self.counters["unreadable"] += 1
            log.warning(
                "unreadable estimate on %s [%d] @%d skipped: %s",
                record.topic(),
                record.partition(),
                record.offset(),
                exc,
            )

    def settle(self, snapshot: MetricsSnapshot, newest_time: int, ttl_ms: float) -> MetricsSnapshot:
        """The snapshot with the checks of the windows that settled since the last one (labels come
        for ``ttl_ms`` of event time after an event; ``newest_time`` is the join's clock)."""
        checks = self.ledger.settle(newest_time, ttl_ms)
        for check in checks:
            self.counters["checks"] += 1
            if check.disagree:
                self.counters["disagree"] += 1
                log.warning("estimate check: %s", check.message)
        return snapshot.model_copy(update={"estimate_checks": checks}) if checks else snapshot

    def state(self) -> dict:
        return self.ledger.state()

    def restore(self, state: dict | None) -> None:
        if state is not None:  # a checkpoint from before the checks: nothing pending
            self.ledger.restore(state)


# ---------------------------------------------------------------- read back by commands


def latest_estimates(settings: Settings, idle_s: float = 1.0) -> list[PerformanceEstimate]:
    """The latest estimate of every model version on ``drift`` (none if the topic does not exist)."""
    latest: dict[tuple[str, str], PerformanceEstimate] = {}
    for body in _written_so_far(settings, settings.topic_drift, idle_s):
        if body.get("type") != "performance_estimate":
            continue
        try:
            estimate = PerformanceEstimate.model_validate(body)
        except ValidationError:
            continue
        latest[(estimate.model_name, estimate.model_version)] = estimate
    return [latest[key] for key in sorted(latest)]


def estimate_line(estimate: PerformanceEstimate) -> str:
    """One line of ``streamscore status``: a version's last window and its estimated KPIs with bands."""
    end = estimate.end_event_time
    when = datetime.fromtimestamp(end / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if end else "?"
    kpis = ", ".join(
        f"{m.metric} {m.estimate:.4f} [{m.lower:.4f}, {m.upper:.4f}]"
        for m in estimate.metrics
        if m.estimate is not None and m.lower is not None and m.upper is not None
    )
    return (
        f"{estimate.model_name}:{estimate.model_version} window {estimate.window} "
        f"({estimate.events:,} events to {when}): estimated {kpis or 'nothing (too few events)'}"
    )


def estimate_checks(
    settings: Settings, model_name: str, model_version: str, idle_s: float = 3.0
) -> list[EstimateCheck]:
    """Every window of one model version checked by the learn path, from ``metrics`` (the last per window)."""
    checks: dict[int | None, EstimateCheck] = {}
    for check in _checks(settings, idle_s):
        if (check.model_name, check.model_version) == (model_name, model_version):
            checks[check.window] = check
    return [checks[w] for w in sorted(checks, key=lambda w: -1 if w is None else w)]


def latest_checks(settings: Settings, idle_s: float = 1.0) -> dict[tuple[str, str], EstimateCheck]:
    """The latest check of every model version on ``metrics``, by (name, version)."""
    return {(c.model_name, c.model_version): c for c in _checks(settings, idle_s)}


def check_line(check: EstimateCheck) -> str:
    """One line of ``streamscore status``: a version's last checked window, estimated against realized."""
    kpis = ", ".join(
        f"{m.metric} {m.realized:.4f} vs {m.estimate:.4f} [{m.lower:.4f}, {m.upper:.4f}]"
        for m in check.checks
    )
    verdict = "disagree" if check.disagree else "agree"
    return (
        f"{check.model_name}:{check.model_version} window {check.window} checked on {check.labelled:,} of "
        f"{check.events:,} labels: realized vs estimated {kpis or 'nothing'} ({verdict})"
    )


def _checks(settings: Settings, idle_s: float) -> Iterator[EstimateCheck]:
    """The estimate checks of the snapshots on ``metrics``, in order (an unreadable one left out)."""
    for body in _written_so_far(settings, settings.topic_metrics, idle_s):
        if body.get("type") != "metrics_snapshot":
            continue
        for raw in body.get("estimate_checks") or []:
            try:
                yield EstimateCheck.model_validate(raw)
            except ValidationError:
                continue


def _written_so_far(settings: Settings, topic: str, idle_s: float) -> Iterator[dict]:
    """The JSON objects of ``topic`` written before this call; nothing if the topic does not exist.

    A live learn role writes a snapshot every few seconds, so ``metrics`` may never go quiet:
    a partition ends at its first record stamped after the call, or after ``idle_s`` of quiet.
    """
    started_ms = int(time.time() * 1000)

    def newer(message: Message) -> bool:
        return message.timestamp()[1] > started_ms

    try:
        for message in read_until_quiet(settings, [topic], idle_s, purpose="estimates", stop=newer):
            try:
                body = orjson.loads(message.value() or b"")
            except orjson.JSONDecodeError:
                continue
            if isinstance(body, dict):
                yield body
    except TopicMissing:
        return
