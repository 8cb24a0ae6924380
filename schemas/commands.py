"""Model commands, one type per action: what the CLI's ``model`` commands and ``POST /control/model`` take.

``ModelCommand`` is their union, told apart by ``action``; a body that is not exactly one of
them is refused with the field that is wrong (HTTP 400), before anything is read or published.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.lifecycle import ChallengerMode
from schemas.messages import Identifier

Reason = Annotated[str, Field(max_length=1000, description="recorded with the update")]


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: Identifier | None = Field(None, description="the model; default: the only one registered")
    reason: Reason = ""


class Deploy(_Command):
    """Make ``version`` the champion on every worker (the old one goes on the rollback history)."""

    action: Literal["deploy"]
    version: Identifier


class Rollback(_Command):
    """Serve the previous champion again."""

    action: Literal["rollback"]


class Promote(_Command):
    """Make the challenger (or ``version``) the champion."""

    action: Literal["promote"]
    version: Identifier | None = None


class SetChallenger(_Command):
    """Serve ``version`` beside the champion: a share of entities (split) or every event unseen (shadow)."""

    action: Literal["challenger"]
    version: Identifier
    mode: ChallengerMode = ChallengerMode.split
    share: Annotated[float, Field(ge=0, le=1)] = 0.5


class ClearChallenger(_Command):
    """Stop the challenger."""

    action: Literal["clear_challenger"]


ModelCommand = Annotated[
    Deploy | Rollback | Promote | SetChallenger | ClearChallenger, Field(discriminator="action")
]
MODEL_COMMAND: TypeAdapter[ModelCommand] = TypeAdapter(ModelCommand)
ACTIONS = ("deploy", "rollback", "promote", "challenger", "clear_challenger")
