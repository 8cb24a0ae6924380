"""What the learn service keeps on the compacted ``checkpoints`` topic besides the signed state."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.messages import SCHEMA_VERSION

MAX_CHUNKS = 10_000


class CheckpointHead(BaseModel):
    """The record (key ``PREFIX/head``) naming the current generation of a learner's checkpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    generation: int = Field(ge=1, lt=2**63)
    chunks: int = Field(ge=1, le=MAX_CHUNKS, description="chunks under PREFIX/GENERATION/0..chunks-1")


class ChallengerExport(BaseModel):
    """The River challenger as plain weights (key ``APP/challenger-model``) for ``publish-challenger``."""

    model_config = ConfigDict(extra="forbid")

    model: dict = Field(description="a scoring.linear_model.LinearModel as JSON")
    metrics: dict[str, float] = Field(description="progressive-validation KPIs over every label")
    labels: int = Field(ge=0, description="labelled events it learned from")
    created_at: int = Field(description="epoch milliseconds")
    schema_version: int = SCHEMA_VERSION
