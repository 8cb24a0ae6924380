"""Every message that crosses a streamscore topic, as pydantic v2 models.

Each carries ``schema_version``. Messages that streamscore itself produces forbid
unknown fields; the feature event, written by upstream producers, ignores them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

SCHEMA_VERSION = 1
# event_id and entity_id are copied into every output (key, body, ce_id header, monitoring
# columns): bounded, so a prediction and a monitoring message always fit a Kafka message
MAX_IDENTIFIER_LENGTH = 256

# Epoch-millisecond times from 1970 to the year 3000: every writer downstream (int64 columns,
# numpy, checkpoints) takes them, and anything outside is a producer's bug, not a time.
EPOCH_MS_MAX = 32_503_680_000_000
INT64_MAX = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_YEAR_3000 = datetime(3000, 1, 1, tzinfo=UTC)

# strict: a JSON boolean is not a number (it is a value of a two-valued feature); NaN and
# infinity are not values
FeatureValue = Annotated[float, Field(strict=True, allow_inf_nan=False)] | StrictBool | str | None
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
EpochMs = Annotated[int, Field(ge=0, le=EPOCH_MS_MAX, description="epoch milliseconds")]
EventTime = EpochMs | datetime
Identifier = Annotated[str, Field(min_length=1, max_length=MAX_IDENTIFIER_LENGTH)]
Offset = Annotated[int, Field(ge=0, le=INT64_MAX)]
PartitionId = Annotated[int, Field(ge=0, lt=2**31)]


class FeatureEvent(BaseModel):
    """What upstream producers write to ``features``; Kafka key = ``entity_id``."""

    model_config = ConfigDict(extra="ignore")

    event_id: str = Field(min_length=1, max_length=MAX_IDENTIFIER_LENGTH)
    entity_id: str = Field(min_length=1, max_length=MAX_IDENTIFIER_LENGTH)
    event_time: EventTime = Field(description="RFC 3339 timestamp or epoch milliseconds")
    features: dict[str, FeatureValue]
    schema_version: Annotated[int, Field(strict=True)] = SCHEMA_VERSION

    @field_validator("event_time")
    @classmethod
    def _in_range(cls, value: int | datetime) -> int | datetime:
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
            if not _EPOCH <= moment <= _YEAR_3000:
                raise ValueError("event_time must lie between 1970 and the year 3000")
        return value


class Contribution(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feature: str
    value: float | str | None = Field(description="the input: number, category name, or null if missing")
    contribution: FiniteFloat = Field(description="in raw score units (log-odds for binary)")


class Explanation(BaseModel):
    """TreeSHAP contributions: bias + sum(top) + rest = raw_score (log-odds for binary)."""

    model_config = ConfigDict(extra="forbid")

    bias: FiniteFloat
    raw_score: FiniteFloat
    top: list[Contribution]
    rest: FiniteFloat = Field(description="the other features' contributions, summed")


class Prediction(BaseModel):
    """One scored event on ``predictions``; Kafka key = ``entity_id``.

    ``latency_ms`` runs from the input record's Kafka timestamp to ``scored_at``.
    Consumers deduplicate on ``event_id`` (delivery is at-least-once). A prediction of
    the inference endpoint (STREAMSCORE_INFER_PREDICTIONS) has the request's path as
    ``topic``, -1 as ``partition`` and ``offset``, its latency from the request's
    arrival, and the header ``streamscore.origin: api``.
    """

    model_config = ConfigDict(extra="forbid")

    event_id: str
    entity_id: str
    score: FiniteFloat
    label: bool | None = Field(description="binary models: score >= the bundle's threshold")
    model_name: str
    model_version: str
    event_time: int = Field(description="epoch milliseconds")
    scored_at: int = Field(description="epoch milliseconds")
    latency_ms: FiniteFloat
    topic: str
    partition: int
    offset: int
    explanation: Explanation | None = Field(None, description="on a sampled share of predictions")
    schema_version: Literal[1] = SCHEMA_VERSION


class MonitorBatch(BaseModel):
    """Monitoring records of scored events from one source partition, in columns.

    A few messages per scored batch (one per source partition, split to stay well
    under the broker's message size limit) rather than one per event: the drift and
    learning agents read windows of columns, and the scorer pays a few produces per
    batch instead of one per event. Row ``i`` of every list is one scored event.
    """

    model_config = ConfigDict(extra="forbid", strict=True)  # written by streamscore: exactly as written

    model_name: Identifier
    model_version: Identifier
    source_topic: Identifier
    partition: PartitionId
    offsets: list[Offset]
    event_ids: list[Identifier]
    entity_ids: list[Identifier]
    event_times: list[EpochMs]
    scores: list[FiniteFloat]
    feature_names: list[Identifier]
    rows: list[list[FiniteFloat | None]] = Field(description="encoded model inputs; null = missing")
    shadow_model_name: Identifier | None = Field(
        None, description="shadow mode: the challenger that also scored"
    )
    shadow_model_version: Identifier | None = None
    shadow_scores: list[FiniteFloat | None] | None = Field(
        None, description="the challenger's score per row (null where it failed); never published"
    )
    schema_version: Literal[1] = SCHEMA_VERSION

    @field_validator("schema_version", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: object) -> object:
        if isinstance(value, bool):  # a Literal[1] takes True as 1 otherwise
            raise ValueError("schema_version must be the integer 1")
        return value

    @model_validator(mode="after")
    def _columns_agree(self) -> MonitorBatch:
        n, width = len(self.scores), len(self.feature_names)
        columns = (self.offsets, self.event_ids, self.entity_ids, self.event_times, self.rows)
        if any(len(c) != n for c in columns) or any(len(row) != width for row in self.rows):
            raise ValueError(f"every column needs {n} entries and every row {width} values")
        if self.shadow_scores is not None and len(self.shadow_scores) != n:
            raise ValueError(f"shadow_scores needs {n} entries")
        return self


class Label(BaseModel):
    """Ground truth for an earlier event, on ``labels``; Kafka key = ``event_id``."""

    model_config = ConfigDict(extra="forbid")

    event_id: Identifier
    label: FiniteFloat
    label_time: EpochMs
    schema_version: Literal[1] = SCHEMA_VERSION


class DeadLetterContext(BaseModel):
    """Why a message is on the dead-letter topic.

    Carried in Kafka headers (see ``schemas.headers``) beside the original key,
    value and headers, so the dead letter is the original message plus its reason.
    """

    model_config = ConfigDict(extra="forbid")

    error_class: str
    error_message: str
    stage: Literal["decode", "validate", "score"]
    source_topic: str
    source_partition: int
    source_offset: int
    failed_at: int = Field(description="epoch milliseconds")
    schema_version: Literal[1] = SCHEMA_VERSION


ALL_MESSAGES: dict[str, type[BaseModel]] = {
    "feature_event": FeatureEvent,
    "prediction": Prediction,
    "monitor_batch": MonitorBatch,
    "label": Label,
    "dead_letter_context": DeadLetterContext,
}
