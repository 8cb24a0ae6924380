"""What the learn service keeps on the compacted ``checkpoints`` topic besides the signed state."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.messages import SCHEMA_VERSION

MAX_CHUNKS = 10_000


class CheckpointHead(BaseModel):
    """The record (key ``PREFIX/head``) naming the current generation of a learner's checkpoint.

    A segment of waiting events (``PREFIX/seg/ID``) has a ``CheckpointHead`` of its own naming
    its chunks (``PREFIX/seg/ID/0..chunks-1``; ``generation`` is then the segment's id + 1).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    generation: int = Field(ge=1, lt=2**63)
    chunks: int = Field(ge=1, le=MAX_CHUNKS, description="chunks under PREFIX/GENERATION/0..chunks-1")


class ChallengerExport(BaseModel):
    """The River challenger as plain weights (key ``APP/challenger-model``) for ``publish-challenger``."""

    model_config = ConfigDict(extra="forbid")

    model: dict = Field(description="a scoring.model.linear_model.LinearModel or SoftmaxLinear, as JSON")
    metrics: dict[str, float] = Field(description="progressive-validation KPIs over every label")
    labels: int = Field(ge=0, description="labelled events it learned from")
    created_at: int = Field(description="epoch milliseconds")
    schema_version: int = SCHEMA_VERSION


class StateAlert(BaseModel):
    """A role could not restore its state and started fresh (on ``alerts``)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["state_alert"] = "state_alert"
    role: str = Field(description="the role whose state it is: learn")
    problem: str = Field(description="what was wrong with the checkpoint")
    action: str = Field(description="what the role did instead")
    worker: str
    created_at: int = Field(description="epoch milliseconds")
    schema_version: Literal[1] = SCHEMA_VERSION
