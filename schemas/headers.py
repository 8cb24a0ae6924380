"""Kafka header names used on streamscore topics.

Predictions carry CloudEvents Kafka-binding headers (binary mode, ``ce_`` prefix).
Dead letters carry their context in the spirit of Kafka Connect's
``__connect.errors.*`` headers, under a ``streamscore.errors.`` prefix, after the
original message's own headers.
"""

from __future__ import annotations

from datetime import UTC, datetime

CE_SPECVERSION = "ce_specversion"
CE_ID = "ce_id"
CE_TYPE = "ce_type"
CE_SOURCE = "ce_source"
CE_TIME = "ce_time"
PREDICTION_CE_TYPE = "io.streamscore.prediction.v1"
DRIFT_REPORT_CE_TYPE = "io.streamscore.drift.report.v1"
DRIFT_ALERT_CE_TYPE = "io.streamscore.drift.alert.v1"
ESTIMATE_CE_TYPE = "io.streamscore.performance.estimate.v1"
ESTIMATE_ALERT_CE_TYPE = "io.streamscore.performance.alert.v1"
CONCEPT_ALERT_CE_TYPE = "io.streamscore.concept-drift.alert.v1"

DLQ_PREFIX = "streamscore.errors."
DLQ_CLASS = DLQ_PREFIX + "exception.class.name"
DLQ_MESSAGE = DLQ_PREFIX + "exception.message"
DLQ_STAGE = DLQ_PREFIX + "stage"
DLQ_TOPIC = DLQ_PREFIX + "topic"
DLQ_PARTITION = DLQ_PREFIX + "partition"
DLQ_OFFSET = DLQ_PREFIX + "offset"
DLQ_TIME = DLQ_PREFIX + "timestamp"
# only on a dead letter whose value was cut to max_message_bytes: the original length
DLQ_ORIGINAL_SIZE = DLQ_PREFIX + "original.size"
DLQ_HEADERS_DROPPED = DLQ_PREFIX + "original.headers.dropped"  # "<count> headers, <bytes> bytes"


def ce_time(epoch_ms: int) -> bytes:
    """The ``ce_time`` header value: RFC 3339 in UTC."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat().encode()


# on a prediction written by the inference endpoint (STREAMSCORE_INFER_PREDICTIONS), not by the stream
PREDICTION_ORIGIN = "streamscore.origin"
ORIGIN_API = b"api"


def ce_headers(ce_type: str, ce_id: str, at_ms: int, source: str) -> list[tuple[str, bytes]]:
    """CloudEvents binary-mode headers of one message, as on predictions."""
    return [
        (CE_SPECVERSION, b"1.0"),
        (CE_ID, ce_id.encode()),
        (CE_TYPE, ce_type.encode()),
        (CE_SOURCE, source.encode()),
        (CE_TIME, ce_time(at_ms)),
    ]
