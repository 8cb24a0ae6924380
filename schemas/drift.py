"""Messages of the ``drift`` topic: a report per closed window, an alert when a threshold is crossed.

Both carry ``type`` so a consumer of the topic can tell them apart before parsing.
Statistics that a window cannot support (no values, a constant column) are null.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.messages import SCHEMA_VERSION

Stat = float | None


class FeatureDrift(BaseModel):
    """One feature of one window against the training reference."""

    model_config = ConfigDict(extra="forbid")

    feature: str
    kind: Literal["numeric", "categorical"]
    count: int = Field(description="events in the window with a value for this feature")
    psi: Stat
    ks_statistic: Stat = None
    ks_p_value: Stat = None
    chi2_statistic: Stat = None
    chi2_p_value: Stat = None
    missing_rate: float
    reference_missing_rate: float
    missing_rate_change: float
    mean: Stat = None
    reference_mean: Stat = None
    mean_shift_sd: Stat = Field(None, description="(window mean - reference mean) / reference sd")
    drifted: bool
    reasons: list[str] = Field(default_factory=list)


class PredictionDrift(BaseModel):
    """The score distribution of the window against the holdout scores of training."""

    model_config = ConfigDict(extra="forbid")

    psi: Stat
    ks_statistic: Stat
    ks_p_value: Stat
    mean: Stat
    reference_mean: Stat
    drifted: bool
    reasons: list[str] = Field(default_factory=list)


class DetectorChange(BaseModel):
    """Where a streaming detector (river's ADWIN or PageHinkley) saw the stream change."""

    model_config = ConfigDict(extra="forbid")

    detector: Literal["adwin", "page_hinkley"]
    stream: Literal["score", "error"]
    model_version: str
    source_topic: str
    partition: int
    offset: int
    event_id: str
    event_time: int = Field(description="epoch milliseconds")
    position: int = Field(description="values the detector had seen, this one included")


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    psi: float
    p_value: float = Field(description="family-wise level, before the Bonferroni correction")
    p_value_per_test: float
    tests: int


class PartitionSpan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topic: str
    partition: int
    first_offset: int
    last_offset: int


class DriftReport(BaseModel):
    """Every statistic of one closed window of one model version."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["drift_report"] = "drift_report"
    model_name: str
    model_version: str
    window: int = Field(description="0, 1, 2, ... per model version since the worker started")
    events: int
    closed_by: Literal["events", "time"]
    start_event_time: int
    end_event_time: int
    spans: list[PartitionSpan]
    features: list[FeatureDrift]
    prediction: PredictionDrift
    changes: list[DetectorChange] = Field(default_factory=list)
    thresholds: Thresholds
    drifted_features: list[str]
    drifted: bool
    created_at: int = Field(description="epoch milliseconds")
    schema_version: Literal[1] = SCHEMA_VERSION


class FeatureShift(BaseModel):
    """How far a drifted feature moved."""

    model_config = ConfigDict(extra="forbid")

    feature: str
    psi: Stat
    p_value: Stat
    statistic: Stat = Field(description="KS statistic (numeric) or chi-square (categorical)")
    mean_shift_sd: Stat
    missing_rate_change: float
    reasons: list[str]


class DriftAlert(BaseModel):
    """Sent beside the report only when a window crossed a threshold."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["drift_alert"] = "drift_alert"
    model_name: str
    model_version: str
    window: int
    start_event_time: int
    end_event_time: int
    features: list[FeatureShift]
    prediction_drifted: bool
    changes: list[DetectorChange] = Field(default_factory=list)
    message: str
    created_at: int = Field(description="epoch milliseconds")
    schema_version: Literal[1] = SCHEMA_VERSION
