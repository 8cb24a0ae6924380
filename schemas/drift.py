"""Messages of the ``drift`` topic: a report per closed window, an alert when a threshold is crossed.

Both carry ``type`` so a consumer of the topic can tell them apart before parsing.
Statistics that a window cannot support (no values, a constant column) are null.

A multiclass model's report (``schema_version`` 3) adds ``classes``: the predicted-class
distribution and each class's probability against the holdout's; the reports of other models
have no ``classes`` and stay ``schema_version`` 2.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from schemas.alerts import ALERT_SCHEMA_VERSION, AlertStatus, Severity

Stat = float | None
MULTICLASS_REPORT_VERSION = 3


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
    p_value_threshold: Stat = Field(None, description="the level its p-value was held to, corrected")


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
    p_value_threshold: Stat = Field(None, description="the level its p-value was held to, corrected")


class PredictedClassDrift(BaseModel):
    """A multiclass model's predicted classes in the window against the holdout's: a chi-square
    goodness-of-fit test of the window's counts with the holdout's shares as expected, and PSI."""

    model_config = ConfigDict(extra="forbid")

    counts: dict[str, int] = Field(description="events predicted each class, in the model's order")
    reference_counts: dict[str, int] = Field(description="the holdout's predicted-class counts")
    psi: Stat
    chi2_statistic: Stat
    chi2_p_value: Stat
    drifted: bool
    reasons: list[str] = Field(default_factory=list)
    p_value_threshold: Stat = Field(None, description="the level its p-value was held to, corrected")


class ClassProbabilityDrift(BaseModel):
    """One class's probability in the window against its holdout distribution (PSI, KS)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="the class, as in the model's classes")
    psi: Stat
    ks_statistic: Stat
    ks_p_value: Stat
    mean: Stat
    reference_mean: Stat
    drifted: bool
    reasons: list[str] = Field(default_factory=list)
    p_value_threshold: Stat = Field(None, description="the level its p-value was held to, corrected")


class ClassDrift(BaseModel):
    """A multiclass model's outputs in one window: the predicted classes and each class's probability."""

    model_config = ConfigDict(extra="forbid")

    predicted: PredictedClassDrift
    probabilities: list[ClassProbabilityDrift]

    def drifted_tests(self) -> list[str]:
        """The names of its drifted tests: ``(predicted class)``, ``(probability NAME)``."""
        tests = [PREDICTED_CLASS] if self.predicted.drifted else []
        return tests + [probability_test(p.name) for p in self.probabilities if p.drifted]


PREDICTED_CLASS = "(predicted class)"


def probability_test(name: str) -> str:
    """How a class's probability test is named in alerts."""
    return f"(probability {name})"


class DetectorChange(BaseModel):
    """Where a streaming detector (the error CUSUM, river's ADWIN or PageHinkley) saw the stream change.

    The CUSUM also says why (``statistic`` over ``threshold``) and how far the mean moved:
    ``mean_before`` over the ``baseline`` values before, ``mean_after`` over the
    ``since_change`` values since the estimated change point; river's detectors leave them null.
    """

    model_config = ConfigDict(extra="forbid")

    detector: Literal["cusum", "adwin", "page_hinkley"]
    stream: Literal["score", "error"]
    model_version: str
    source_topic: str
    partition: int
    offset: int
    event_id: str
    event_time: int = Field(description="epoch milliseconds")
    position: int = Field(description="values the detector had seen, this one included")
    statistic: Stat = None
    threshold: Stat = None
    baseline: int | None = Field(None, description="values the baseline was estimated on")
    mean_before: Stat = None
    since_change: int | None = Field(None, description="values since the estimated change point")
    mean_after: Stat = None


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    psi: float = Field(description="a drifted test at or above this PSI makes the alert critical")
    p_value: float = Field(description="family-wise level over the window's tests, before the correction")
    p_value_per_test: float = Field(description="the smallest corrected level (Bonferroni's, Holm's first)")
    tests: int
    correction: Literal["holm", "bonferroni"] = "bonferroni"
    psi_floor: float = Field(0.0, description="the PSI a significant test needs to count as drifted")


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
    classes: ClassDrift | None = Field(
        None, description="multiclass only (schema_version 3): predicted classes and class probabilities"
    )
    schema_version: Literal[2, 3] = ALERT_SCHEMA_VERSION

    @model_validator(mode="after")
    def _versioned(self) -> DriftReport:
        if (self.classes is not None) != (self.schema_version == MULTICLASS_REPORT_VERSION):
            raise ValueError(f"classes come in schema_version {MULTICLASS_REPORT_VERSION} reports only")
        return self

    @model_serializer(mode="wrap")
    def _without_classes(self, handler):  # pydantic's wrap serializer: handler gives the plain dump
        """A report of a model of one score per event is written as before (no ``classes`` key)."""
        data = handler(self)
        if self.classes is None and isinstance(data, dict):
            data.pop("classes", None)
        return data


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
    p_value_threshold: Stat = Field(None, description="the level its p-value was held to, corrected")


class DriftAlert(BaseModel):
    """Sent beside the report when drift starts (``firing``) and when a window is clean again (``resolved``).

    A window that drifts like the last one (no feature more) sends nothing: the alert is
    firing already. The evidence: each drifted feature's statistics and the level they were
    held to (``features``), the window's size and ``thresholds``.
    """

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
    status: AlertStatus = "firing"
    severity: Severity = "warning"
    events: int | None = Field(None, description="events in the window")
    thresholds: Thresholds | None = None
    since_window: int | None = Field(None, description="the window this drift episode started in")
    schema_version: Literal[2] = ALERT_SCHEMA_VERSION
