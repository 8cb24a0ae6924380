"""Message contracts of streamscore: pydantic models, header names, JSON Schema export."""

from schemas.checkpoint import ChallengerExport, CheckpointHead, StateAlert
from schemas.drift import DriftAlert, DriftReport
from schemas.estimation import EstimateCheck, EstimatedKpiAlert, PerformanceEstimate
from schemas.feedback import ConceptDriftAlert, MetricsSnapshot
from schemas.lifecycle import ModelAlert, ModelUpdate, RetrainRequest
from schemas.messages import ALL_MESSAGES as _CORE_MESSAGES
from schemas.messages import (
    SCHEMA_VERSION,
    DeadLetterContext,
    FeatureEvent,
    Label,
    MonitorBatch,
    Prediction,
)

ALL_MESSAGES = {
    **_CORE_MESSAGES,
    "drift_report": DriftReport,
    "drift_alert": DriftAlert,
    "model_update": ModelUpdate,
    "model_alert": ModelAlert,
    "retrain_request": RetrainRequest,
    "metrics_snapshot": MetricsSnapshot,
    "concept_drift_alert": ConceptDriftAlert,
    "checkpoint_head": CheckpointHead,
    "challenger_export": ChallengerExport,
    "state_alert": StateAlert,
    "performance_estimate": PerformanceEstimate,
    "estimate_check": EstimateCheck,
    "estimated_kpi_alert": EstimatedKpiAlert,
}

__all__ = [
    "ALL_MESSAGES",
    "SCHEMA_VERSION",
    "DeadLetterContext",
    "DriftAlert",
    "DriftReport",
    "EstimateCheck",
    "EstimatedKpiAlert",
    "FeatureEvent",
    "Label",
    "MonitorBatch",
    "PerformanceEstimate",
    "Prediction",
]
