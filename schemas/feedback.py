"""Messages of the feedback loop: KPI snapshots on ``metrics``, concept-drift alerts on ``drift``.

A snapshot also carries the drift windows whose labels came since the last one, each
estimated against realized (``EstimateCheck``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.alerts import ALERT_SCHEMA_VERSION, AlertStatus, Severity
from schemas.drift import DetectorChange
from schemas.estimation import EstimateCheck

Stat = float | None


class KpiRow(BaseModel):
    """KPIs of one model (``name:version``, or ``river:...`` for the challenger) on one segment."""

    model_config = ConfigDict(extra="forbid")

    model: str
    segment_feature: str = Field(description='"all", or the segment feature')
    segment_value: str
    count: int
    rolling: dict[str, Stat] = Field(description="over the last `window` labelled events")
    cumulative: dict[str, Stat]
    gap_to_overall: Stat = Field(description="rolling primary KPI of the segment minus the model's overall")
    flagged: bool = Field(description="the segment stands far from the rest")


class JoinCounts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    matched: int
    pending_events: int
    pending_labels: int
    expired_events: int = Field(description="events whose label never came within the TTL")
    unmatched_labels: int = Field(description="labels whose event never came within the TTL")


class MetricsSnapshot(BaseModel):
    """Every N labels and every T seconds: KPIs of the serving models and of the challenger."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["metrics_snapshot"] = "metrics_snapshot"
    task: Literal["binary", "regression", "multiclass"] = Field(
        description="the KPIs' names follow it: multiclass rows carry accuracy, f1_macro, f1_weighted, "
        "auc_macro_ovr, log_loss and precision:CLASS, recall:CLASS per class"
    )
    window: int
    primary_metric: str
    champion: str = Field(description="name:version of the model serving most recently")
    challenger: str
    labels: JoinCounts
    kpis: list[KpiRow]
    changes: list[DetectorChange] = Field(
        default_factory=list, description="error-stream changes since the last, every shard's"
    )
    estimate_checks: list[EstimateCheck] = Field(
        default_factory=list,
        description="drift windows settled since the last snapshot: estimated against realized, one each",
    )
    created_at: int = Field(description="epoch milliseconds")
    schema_version: Literal[2] = ALERT_SCHEMA_VERSION

    def overall(self, model: str) -> KpiRow | None:
        """The KPI row of ``model`` over all events (segment "all"), if it has one."""
        return next((r for r in self.kpis if r.model == model and r.segment_feature == "all"), None)


class ConceptDriftAlert(BaseModel):
    """The error stream of a serving model rose (``firing``), or came back down (``resolved``).

    One alert per change however many learn shards saw it: the reporter merges the shards'
    detections of the same change (``detections``, one per shard, ``shards`` their partitions)
    within ``merge_interval_ms`` of event time. ``change`` is the first of them (the field of
    version 1). The evidence: the detector's ``statistic`` over its ``threshold``, and the
    error before and after (``error_before``, ``error_after``; a resolved alert's
    ``error_after`` is the rolling error that cleared it).
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["concept_drift_alert"] = "concept_drift_alert"
    model: str
    change: DetectorChange
    message: str
    created_at: int = Field(description="epoch milliseconds")
    status: AlertStatus = "firing"
    severity: Severity = "warning"
    detections: list[DetectorChange] = Field(default_factory=list, description="each shard's detection")
    shards: list[int] = Field(default_factory=list, description="partitions whose detector saw the change")
    partitions: int | None = Field(None, description="learn shards the deployment has")
    merge_interval_ms: int | None = Field(None, description="detections this close in event time are one")
    statistic: Stat = Field(None, description="the largest detector statistic among the detections")
    threshold: Stat = None
    error_before: Stat = Field(None, description="mean error before the change (the shards' baselines)")
    error_after: Stat = Field(None, description="mean error since the change")
    schema_version: Literal[2] = ALERT_SCHEMA_VERSION
