"""What a worker runs, handed to the web views and commands that need its parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import faust
from mode import Service

from streams.services.loop.stats import LoopStats
from streams.services.loop.supervisor import SupervisedService
from streams.services.score.handler import ScoreHandler
from streams.services.score.telemetry import ScoreCounters
from streams.services.shared.intake import Refusals
from streams.services.shared.monitor_decodes import MonitorDecodes

if TYPE_CHECKING:
    from scoring.drift import DriftMonitor
    from streams.services.control.step import ControlStep
    from streams.services.drift.step import DriftCounters, DriftStep
    from streams.services.learn.step import LearnStep


@dataclass
class WorkerParts:
    """The Faust app, the handler it scores with, and the services that live beside it."""

    app: faust.App
    handler: ScoreHandler
    counters: ScoreCounters
    services: list[Service] = field(default_factory=list)
    roles: dict[str, SupervisedService] = field(default_factory=dict)  # supervised services by name
    loops: dict[str, LoopStats] = field(default_factory=dict)
    drift: DriftMonitor | None = None
    drift_counters: DriftCounters | None = None
    drift_step: DriftStep | None = None
    refusals: Refusals = field(default_factory=Refusals)  # side-topic records refused, per topic and reason
    monitor_decodes: MonitorDecodes | None = None  # monitoring records decoded once for drift and learn
    learn: LearnStep | None = None
    control: ControlStep | None = None
    faust_agents: bool = False  # a score or drift agent runs on Faust's own consumer

    def supervise(self, service: SupervisedService, stats: LoopStats) -> None:
        self.services.append(service)
        self.roles[service.name] = service
        self.loops[service.name] = stats

    def health(self) -> dict:
        """Each supervised role's state; ``failed`` if one gave up, ``degraded`` if one restarts."""
        roles = {name: service.health.as_dict() for name, service in self.roles.items()}
        states = {role["state"] for role in roles.values()}
        status = "failed" if "failed" in states else "degraded" if "restarting" in states else "ok"
        return {"status": status, "roles": roles}

    def ready(self) -> dict[str, bool]:
        """Per role: running, with partitions assigned (Faust's agents: its consumer's assignment)."""
        out = {
            name: service.health.state == "running" and bool(self.loops[name].assigned)
            for name, service in self.roles.items()
        }
        if self.faust_agents:
            out["faust"] = bool(self.app.consumer.assignment())
        return out
