"""Messages of the model lifecycle.

``ModelUpdate`` on the compacted ``model-updates`` topic, keyed by model name: each
holds the whole desired serving state (champion, optional challenger and how it gets
traffic, earlier champions for rollback), so the latest message per key is the live
state and compaction loses nothing a worker needs.

``ModelAlert`` on ``alerts``: a worker refused an update (the reason says which
check failed) or applied one. ``RetrainRequest`` on ``retrain-requests``: drift, a
KPI below its threshold, or a KPI estimated below it before labels asks for a new model.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.messages import SCHEMA_VERSION

HISTORY_KEPT = 20


class ChallengerMode(StrEnum):
    """``split``: a share of entities is served by the challenger. ``shadow``: scored, not served."""

    split = "split"
    shadow = "shadow"


class Check(StrEnum):
    """What a refused model update failed (``ModelAlert.check``); empty when it was applied."""

    none = ""
    message = "message"  # the record is not a ModelUpdate (or its key names no model)
    source = "source"  # its bundle is not in the registry or an allowed source
    manifest = "manifest"  # a bundle file is missing or differs from the manifest
    load = "load"  # the bundle cannot be read, or took too long to fetch
    features = "features"  # its features differ from the serving model's
    task = "task"  # the task differs (binary, multiclass, regression), or a multiclass model's classes
    smoke = "smoke"  # it cannot score a few reference rows sanely
    order = "order"  # a newer update was applied before this one loaded


class ModelRef(BaseModel):
    """One registered bundle: where a worker loads it from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    uri: str = Field(description="bundle directory: a local path or an fsspec URL")


class ModelUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["model_update"] = "model_update"
    action: Literal["deploy", "rollback", "promote", "challenger", "clear_challenger"]
    champion: ModelRef
    challenger: ModelRef | None = None
    mode: ChallengerMode | None = None
    challenger_share: float = Field(0.0, ge=0, le=1, description="split mode: share of entities")
    history: list[ModelRef] = Field(default_factory=list, description="earlier champions, newest last")
    reason: str = ""
    requested_at: int = Field(description="epoch milliseconds")
    schema_version: Literal[1] = SCHEMA_VERSION


class ModelAlert(BaseModel):
    """What a worker did with a model update."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["model_alert"] = "model_alert"
    outcome: Literal["applied", "refused"]
    check: Check = Field(description="what the update failed; empty when applied")
    reason: str
    version: str = Field(description="the version the update asked for")
    serving: str = Field(description="name:version serving after the update")
    worker: str
    created_at: int = Field(description="epoch milliseconds")
    schema_version: Literal[1] = SCHEMA_VERSION


class RetrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["retrain_request"] = "retrain_request"
    model: str = Field(description="name:version whose data or quality moved")
    trigger: Literal["drift", "kpi", "estimated", "manual"] = Field(
        description="estimated: a window's KPI estimated below its threshold before labels arrived"
    )
    reason: str
    details: dict[str, float | str | None] = Field(default_factory=dict)
    created_at: int = Field(description="epoch milliseconds")
    schema_version: Literal[1] = SCHEMA_VERSION
