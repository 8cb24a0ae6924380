"""Messages of performance estimation: a model's KPIs estimated per window before labels arrive.

``PerformanceEstimate``: one closed drift window of one model version, its KPIs
estimated from the scores (and, for regression, the features) alone, each with its
sampling uncertainty for the window's size. ``EstimateCheck``: the same window once
labels came, estimated against realized, and whether they disagree beyond the band.
``EstimatedKpiAlert``: a window's estimated KPI past the alert threshold, before labels.

Estimates and alerts go on the ``drift`` topic beside the window's ``DriftReport``;
checks go on ``metrics`` inside the ``MetricsSnapshot`` of the learn path.

Numbers are finite (no NaN or infinity); a KPI a window cannot define (precision
with no predicted positive) is null.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.alerts import ALERT_SCHEMA_VERSION, AlertStatus, Severity
from schemas.drift import PartitionSpan
from schemas.messages import SCHEMA_VERSION

Metric = Literal["accuracy", "precision", "recall", "f1", "auc", "f1_macro", "auc_macro_ovr", "mae", "rmse"]
UNIT_METRICS = frozenset(
    {"accuracy", "precision", "recall", "f1", "auc", "f1_macro", "auc_macro_ovr"}
)  # within [0, 1]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class MetricEstimate(BaseModel):
    """One KPI of one window: the estimate, its standard deviation and its band."""

    model_config = ConfigDict(extra="forbid")

    metric: Metric
    estimate: NonNegative | None
    std: NonNegative | None = Field(description="sampling standard deviation for the window's size")
    estimator_std: NonNegative | None = Field(
        None,
        description="the estimator's own error: fitted on a holdout of H events, taken as uncertain as a "
        "window of that size, std x sqrt(events / H)",
    )
    lower: NonNegative | None = Field(
        description="estimate - band_z sqrt(std^2 + estimator_std^2), clipped to the metric's range"
    )
    upper: NonNegative | None
    method: Literal["cbpe", "dle"] = Field(
        description="cbpe: confidence-based (calibrated probabilities); dle: direct loss estimation"
    )
    uncertainty: Literal["analytic", "holdout_chunks"] = Field(
        description="analytic: labels drawn from the calibrated probabilities; holdout_chunks: the spread "
        "of estimated against realized over holdout chunks, scaled by sqrt(chunk / events)"
    )
    approximation_error: NonNegative | None = Field(
        None, description="bound on the error of a binned (mergeable) computation; null when exact"
    )
    realized: NonNegative | None = Field(None, description="from the labels, once they arrived")

    @model_validator(mode="after")
    def _in_range(self) -> MetricEstimate:
        if self.metric in UNIT_METRICS:
            for name in ("estimate", "lower", "upper", "realized"):
                value = getattr(self, name)
                if value is not None and value > 1:
                    raise ValueError(f"{self.metric} {name} {value} is above 1")
        return self


class ExpectedConfusion(BaseModel):
    """Sums of calibrated probabilities: TP = sum p over predicted positives, FP = sum (1 - p), ..."""

    model_config = ConfigDict(extra="forbid")

    tp: NonNegative
    fp: NonNegative
    fn: NonNegative
    tn: NonNegative


class PerformanceEstimate(BaseModel):
    """Estimated KPIs of one window of one model version, from its scores alone."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["performance_estimate"] = "performance_estimate"
    model_name: str
    model_version: str
    task: Literal["binary", "regression", "multiclass"]
    window: int | None = Field(None, description="the drift window's number, as in its DriftReport")
    start_event_time: int | None = Field(None, description="epoch milliseconds")
    end_event_time: int | None = None
    spans: list[PartitionSpan] = Field(
        default_factory=list, description="the window's offsets per source partition, as in its DriftReport"
    )
    events: int = Field(ge=0)
    threshold: Finite | None = Field(None, description="binary: the class decision is score >= threshold")
    band_z: NonNegative = Field(
        description="lower and upper are estimate -/+ band_z x sqrt(std^2 + estimator_std^2)"
    )
    confusion: ExpectedConfusion | None = None
    metrics: list[MetricEstimate]
    created_at: int = Field(description="epoch milliseconds")
    schema_version: Literal[1] = SCHEMA_VERSION

    def metric(self, name: str) -> MetricEstimate | None:
        return next((m for m in self.metrics if m.metric == name), None)


class MetricCheck(BaseModel):
    """One KPI of one window: estimated against realized."""

    model_config = ConfigDict(extra="forbid")

    metric: Metric
    estimate: NonNegative
    realized: NonNegative
    difference: Finite = Field(description="realized - estimate")
    std: NonNegative = Field(
        description="sqrt(std^2 + estimator_std^2), the sampling part widened when only some events "
        "got labels"
    )
    lower: NonNegative
    upper: NonNegative
    disagree: bool = Field(description="realized outside [lower, upper] (and beyond the caller's floor)")


class EstimateCheck(BaseModel):
    """A window's estimate once its labels came: how good the estimate was."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["estimate_check"] = "estimate_check"
    model_name: str
    model_version: str
    window: int | None
    events: int = Field(ge=0)
    labelled: int = Field(ge=0, description="events of the window whose label came")
    checks: list[MetricCheck]
    disagree: bool = Field(description="some KPI's realized value is outside its band")
    message: str
    created_at: int = Field(description="epoch milliseconds")
    schema_version: Literal[1] = SCHEMA_VERSION


class EstimatedKpiAlert(BaseModel):
    """A window's estimated KPI crossed the alert threshold before any label said so."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["estimated_kpi_alert"] = "estimated_kpi_alert"
    model_name: str
    model_version: str
    window: int | None = Field(None, description="the drift window's number, as in its DriftReport")
    start_event_time: int | None = Field(None, description="epoch milliseconds")
    end_event_time: int | None = None
    events: int = Field(ge=0)
    metric: Metric
    estimate: NonNegative
    lower: NonNegative | None
    upper: NonNegative | None
    threshold: Finite = Field(
        description="STREAMSCORE_ALERT_KPI_MIN: a floor, or a ceiling for an error metric (mae, rmse)"
    )
    message: str
    created_at: int = Field(description="epoch milliseconds")
    status: AlertStatus = Field(
        "firing", description="resolved: a window's estimate is back past the threshold"
    )
    severity: Severity = Field("warning", description="critical: the whole band is past the threshold")
    since_window: int | None = Field(None, description="the window this episode started in")
    schema_version: Literal[2] = ALERT_SCHEMA_VERSION
