"""Consumer group names, derived from the settings in one place.

A worker runs up to four groups: the batch score path's (``group_id``), the drift and
learn services' (named after the Faust app id, so workers with other roles keep apart),
and Faust's own (the app id: its agents, when an agent path is chosen). Readers that
assign partitions themselves get a throwaway group they never join or commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from streams.settings import Role, ScorePath, Settings


@dataclass(frozen=True)
class Groups:
    score: str
    drift: str
    learn: str
    faust: str


def groups(settings: Settings) -> Groups:
    app = settings.faust_app_id
    return Groups(score=settings.group_id, drift=f"{app}-drift", learn=f"{app}-learn", faust=app)


def worker_groups(settings: Settings) -> list[str]:
    """The groups this worker's roles consume in, in the order its roles are listed."""
    names = groups(settings)
    out = []
    if settings.runs(Role.score) and settings.score_path is ScorePath.batch:
        out.append(names.score)
    if settings.runs(Role.learn):
        out.append(names.learn)
    if settings.runs(Role.drift) and settings.drift_path is ScorePath.batch:
        out.append(names.drift)
    faust_agents = settings.runs(Role.drift) and settings.drift_path is ScorePath.agent
    if faust_agents or (settings.runs(Role.score) and settings.score_path is ScorePath.agent):
        out.append(names.faust)
    return out


def reader_group(purpose: str) -> str:
    """A group id for a reader that assigns partitions itself (never joined, never committed)."""
    return f"streamscore-{purpose}-{uuid.uuid4().hex[:8]}"
