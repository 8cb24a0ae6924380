"""Message contracts of streamscore: pydantic models, header names, JSON Schema export."""

from schemas.messages import (
    ALL_MESSAGES,
    SCHEMA_VERSION,
    DeadLetterContext,
    FeatureEvent,
    Label,
    MonitorBatch,
    Prediction,
)

__all__ = [
    "ALL_MESSAGES",
    "SCHEMA_VERSION",
    "DeadLetterContext",
    "FeatureEvent",
    "Label",
    "MonitorBatch",
    "Prediction",
]
