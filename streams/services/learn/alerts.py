"""The reporter's concept-drift alerts: every shard's detections merged into one alert per change.

Each learn shard keeps its recent detections and puts them in its KPI partial
(``shard.py``, ``merge.py``); the reporter (the owner of partition 0) reads every partial,
its own shards' and the other instances', at each report. Detections come from a topic,
so each is validated and one seen before is skipped; every new one is counted once (the
snapshot's ``changes``, hence ``streamscore_concept_drift_changes_total`` on the reporter's
/metrics). ``scoring.alerts.concept`` merges them into one ``ConceptDriftAlert`` per change
and resolves it; this module sends what it gives on ``drift``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import ValidationError

from schemas import headers as h
from schemas.drift import DetectorChange
from schemas.feedback import ConceptDriftAlert, MetricsSnapshot
from scoring.alerts.concept import ConceptAlerting
from streams.kafka.records import Emit
from streams.settings import Settings

log = logging.getLogger(__name__)

AlertListener = Callable[[ConceptDriftAlert], None]


class ConceptReports:
    """Shard detections from the partials in, merged concept-drift alerts out."""

    def __init__(self, settings: Settings, task: str, on_alert: AlertListener | None = None) -> None:
        self.settings = settings
        self.alerting = ConceptAlerting(
            settings.partitions,
            int(settings.concept_merge_seconds * 1000),
            int(settings.alert_cooldown_seconds * 1000),
            task,
        )
        self.on_alert = on_alert  # e.g. the /metrics counters
        self.sent = {"firing": 0, "resolved": 0}
        self.refused = 0  # detections in a partial that were not one

    def collect(self, partials: dict[int, dict]) -> list[DetectorChange]:
        """The detections of every shard's partial not seen before, in partition order."""
        new: list[DetectorChange] = []
        for partition in sorted(partials):
            entries = partials[partition].get("changes") or []
            for entry in entries if isinstance(entries, list) else []:
                if not (isinstance(entry, list) and len(entry) == 2):
                    self.refused += 1
                    continue
                model, payload = entry
                try:
                    change = DetectorChange.model_validate(payload)
                except ValidationError:
                    change = None
                if change is None or not isinstance(model, str):
                    self.refused += 1
                elif self.alerting.add(model, change):
                    new.append(change)
        return new

    def publish(self, snapshot: MetricsSnapshot, clock_ms: int, emit: Emit) -> None:
        """Send the alerts whose merge is over at event time ``clock_ms``, and the resolved ones."""
        alerting = self.alerting
        for alert in alerting.due(clock_ms, snapshot.labels.matched) + alerting.resolved(snapshot):
            headers = h.ce_headers(
                h.CONCEPT_ALERT_CE_TYPE,
                f"{alert.model}:{alert.change.event_id}:{alert.status}",
                alert.created_at,
                source="streamscore/learn",
            )
            emit(self.settings.topic_drift, alert.model.encode(), alert.model_dump_json().encode(), headers)
            self.sent[alert.status] += 1
            log.warning("concept drift %s: %s", alert.status, alert.message)
            if self.on_alert is not None:
                self.on_alert(alert)
