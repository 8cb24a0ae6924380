"""Every message that crosses a streamscore topic, as pydantic v2 models.

Each carries ``schema_version``. Messages that streamscore itself produces forbid
unknown fields; the feature event, written by upstream producers, ignores them.

A prediction and a monitoring record of a multiclass model have a form of their own,
``schema_version`` 2 (``MULTICLASS_SCHEMA_VERSION``): they add every class's probability.
Those of binary and regression models are version 1, as before multiclass existed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = 1
MULTICLASS_SCHEMA_VERSION = 2  # the form of a prediction and a monitoring record of a multiclass model
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
# a class of a multiclass model: a string or an integer, as the target column held it; as a key
# (probabilities, monitor columns) and when a label names it, its text ("2" for 2)
ClassText = Annotated[StrictStr, Field(min_length=1, max_length=MAX_IDENTIFIER_LENGTH)]
ClassName = ClassText | StrictInt


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
    """TreeSHAP contributions: bias + sum(top) + rest = raw_score (log-odds for binary; for multiclass
    the raw score of the class explained, ``class_name``)."""

    model_config = ConfigDict(extra="forbid")

    bias: FiniteFloat
    raw_score: FiniteFloat
    top: list[Contribution]
    rest: FiniteFloat = Field(description="the other features' contributions, summed")
    class_name: ClassName | None = Field(
        None, description="multiclass only: the class whose raw score is explained (the predicted one)"
    )


class Prediction(BaseModel):
    """One scored event on ``predictions``; Kafka key = ``entity_id``.

    Binary and regression models write ``schema_version`` 1. A multiclass model writes 2: ``score``
    is the predicted class's probability (still one number), ``label`` the predicted class's name
    (the most probable class), and ``probabilities`` every class's probability, in the model's
    class order (``multiclassova`` probabilities need not sum to 1).
    ``latency_ms`` runs from the input record's Kafka timestamp to ``scored_at``.
    Consumers deduplicate on ``event_id`` (delivery is at-least-once). A prediction of
    the inference endpoint (STREAMSCORE_INFER_PREDICTIONS) has the request's path as
    ``topic``, -1 as ``partition`` and ``offset``, its latency from the request's
    arrival, and the header ``streamscore.origin: api``.
    """

    model_config = ConfigDict(extra="forbid")

    event_id: str
    entity_id: str
    score: FiniteFloat = Field(
        description="binary: the probability of class 1; regression: the value; multiclass: the "
        "predicted class's probability"
    )
    label: bool | ClassName | None = Field(
        description="binary: score >= the bundle's threshold; multiclass: the predicted class; "
        "regression: null"
    )
    probabilities: dict[ClassText, FiniteFloat] | None = Field(
        None,
        description="multiclass (schema_version 2) only: each class's probability by class name (as text), "
        "in the model's class order",
    )
    model_name: str
    model_version: str
    event_time: int = Field(description="epoch milliseconds")
    scored_at: int = Field(description="epoch milliseconds")
    latency_ms: FiniteFloat
    topic: str
    partition: int
    offset: int
    explanation: Explanation | None = Field(None, description="on a sampled share of predictions")
    schema_version: Literal[1, 2] = SCHEMA_VERSION

    @model_validator(mode="after")
    def _form(self) -> Prediction:
        """Version 1: a boolean label or none, no probabilities; version 2: the multiclass form."""
        label = self.label
        if self.schema_version == SCHEMA_VERSION:
            if self.probabilities is not None:
                raise ValueError("probabilities are of the multiclass form, schema_version 2")
            if type(label) is int and label in (0, 1):  # a 0/1 label reads as the boolean, as always
                self.label = bool(label)
            elif label is not None and type(label) is not bool:
                raise ValueError("a prediction of schema_version 1 has a boolean label or none")
            return self
        if self.probabilities is None or label is None or type(label) is bool:
            raise ValueError("a multiclass prediction (schema_version 2) has probabilities and a class label")
        if str(label) not in self.probabilities or self.probabilities[str(label)] != self.score:
            raise ValueError("a multiclass prediction's label is a class of its probabilities, score its")
        return self


class MonitorBatch(BaseModel):
    """Monitoring records of scored events from one source partition, in columns.

    A few messages per scored batch (one per source partition, split to stay well
    under the broker's message size limit) rather than one per event: the drift and
    learning agents read windows of columns, and the scorer pays a few produces per
    batch instead of one per event. Row ``i`` of every list is one scored event.

    A multiclass model's records are ``schema_version`` 2: ``scores`` holds the predicted class's
    probability, ``classes`` the class names (text) in the model's order and ``probabilities`` a
    row of every class's probability per event; binary and regression records are version 1.
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
    classes: list[ClassText] | None = Field(
        None, description="multiclass (schema_version 2): the class names as text, in the model's order"
    )
    probabilities: list[list[FiniteFloat]] | None = Field(
        None, description="multiclass (schema_version 2): per row, each class's probability, as classes"
    )
    shadow_probabilities: list[list[FiniteFloat] | None] | None = Field(
        None,
        description="multiclass shadow mode: the challenger's probability of each class per row, as "
        "classes (null where it failed); never published",
    )
    schema_version: Literal[1, 2] = SCHEMA_VERSION

    @field_validator("schema_version", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: object) -> object:
        if isinstance(value, bool):  # a Literal[1] takes True as 1 otherwise
            raise ValueError("schema_version must be the integer 1 or 2")
        return value

    @model_validator(mode="after")
    def _columns_agree(self) -> MonitorBatch:
        n, width = len(self.scores), len(self.feature_names)
        columns = (self.offsets, self.event_ids, self.entity_ids, self.event_times, self.rows)
        if any(len(c) != n for c in columns) or any(len(row) != width for row in self.rows):
            raise ValueError(f"every column needs {n} entries and every row {width} values")
        if self.shadow_scores is not None and len(self.shadow_scores) != n:
            raise ValueError(f"shadow_scores needs {n} entries")
        multiclass = self.schema_version == MULTICLASS_SCHEMA_VERSION
        if multiclass != (self.classes is not None) or multiclass != (self.probabilities is not None):
            raise ValueError("classes and probabilities come together, in schema_version 2 only")
        if self.classes is not None and self.probabilities is not None:
            k = len(self.classes)
            if k < 2 or len(set(self.classes)) != k:
                raise ValueError("classes must name at least 2 distinct classes")
            if len(self.probabilities) != n or any(len(row) != k for row in self.probabilities):
                raise ValueError(f"probabilities needs {n} rows of {k} values (one per class)")
        if self.shadow_probabilities is not None:
            if self.classes is None or self.shadow_scores is None:
                raise ValueError("shadow_probabilities come with shadow_scores, in schema_version 2 only")
            k = len(self.classes)
            rows = self.shadow_probabilities
            if len(rows) != n or any(row is not None and len(row) != k for row in rows):
                raise ValueError(f"shadow_probabilities needs {n} rows of {k} values or null")
        return self


class Label(BaseModel):
    """Ground truth for an earlier event, on ``labels``; Kafka key = ``event_id``.

    A number (0/1 for a binary model, the value for a regression), or the name of a multiclass
    model's class: a string, or a number naming an integer class (``2`` or ``2.0`` name class 2).
    """

    model_config = ConfigDict(extra="forbid")

    event_id: Identifier
    # a number where one is given (a numeric string too, as always); only what is not one stays text
    label: Annotated[FiniteFloat | ClassText, Field(union_mode="left_to_right")]
    label_time: EpochMs
    schema_version: Literal[1] = SCHEMA_VERSION

    @field_validator("label", mode="wrap")
    @classmethod
    def _as_a_number_says(cls, value: object, handler: ValidatorFunctionWrapHandler) -> object:
        """Neither a number nor a class name: the error is the number's, as when a label was one."""
        try:
            return handler(value)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise PydanticCustomError(first["type"], first["msg"].replace("{", "{{")) from None


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
