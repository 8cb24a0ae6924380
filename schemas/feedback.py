"""Messages of the feedback loop: KPI snapshots on ``metrics``, concept-drift alerts on ``drift``.

A snapshot also carries the drift windows whose labels came since the last one, each
estimated against realized (``EstimateCheck``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.drift import DetectorChange
from schemas.estimation import EstimateCheck
from schemas.messages import SCHEMA_VERSION

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
        description="multiclass: labels joined and counted, no KPIs yet (kpis empty)"
    )
    window: int
    primary_metric: str
    champion: str = Field(description="name:version of the model serving most recently")
    challenger: str
    labels: JoinCounts
    kpis: list[KpiRow]
    changes: list[DetectorChange] = Field(
        default_factory=list, description="error-stream changes since the last"
    )
    estimate_checks: list[EstimateCheck] = Field(
        default_factory=list,
        description="drift windows settled since the last snapshot: estimated against realized, one each",
    )
    created_at: int = Field(description="epoch milliseconds")
    schema_version: Literal[1] = SCHEMA_VERSION

    def overall(self, model: str) -> KpiRow | None:
        """The KPI row of ``model`` over all events (segment "all"), if it has one."""
        return next((r for r in self.kpis if r.model == model and r.segment_feature == "all"), None)


class ConceptDriftAlert(BaseModel):
    """A detector saw the error stream of a serving model change."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["concept_drift_alert"] = "concept_drift_alert"
    model: str
    change: DetectorChange
    message: str
    created_at: int = Field(description="epoch milliseconds")
    schema_version: Literal[1] = SCHEMA_VERSION
