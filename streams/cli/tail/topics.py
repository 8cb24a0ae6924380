"""The service's topics as ``tail`` knows them: by role name (the default topic name) or real name.

Each has the setting that names it, the function that turns its records into lines, and
whether its records are about entities and models (what ``--entity`` and ``--model`` can
match on).
"""

from __future__ import annotations

from dataclasses import dataclass

from scoring.errors import ConfigError
from streams.cli.tail.lines import (
    Line,
    Render,
    dead_letter_line,
    feature_line,
    label_line,
    monitor_line,
    opaque_line,
    prediction_line,
)
from streams.cli.tail.reports import alert_line, drift_line, metrics_line, retrain_line, update_line
from streams.settings import Settings


@dataclass(frozen=True)
class TopicKind:
    setting: str  # the Settings field holding the topic's name
    render: Render
    entities: bool = False
    models: bool = False

    @property
    def role(self) -> str:
        """The topic's name by default, by which ``tail`` knows it whatever it is called."""
        return Settings.model_fields[self.setting].default


KINDS = (
    TopicKind("topic_features", feature_line, entities=True),
    TopicKind("topic_predictions", prediction_line, entities=True, models=True),
    TopicKind("topic_dlq", dead_letter_line, entities=True),
    TopicKind("topic_monitor", monitor_line, entities=True, models=True),
    TopicKind("topic_labels", label_line, entities=True),
    TopicKind("topic_labels_dlq", dead_letter_line, entities=True),
    TopicKind("topic_monitor_dlq", dead_letter_line),
    TopicKind("topic_drift", drift_line, models=True),
    TopicKind("topic_metrics", metrics_line, models=True),
    TopicKind("topic_model_updates", update_line, models=True),
    TopicKind("topic_alerts", alert_line, models=True),
    TopicKind("topic_retrain", retrain_line, models=True),
    TopicKind("topic_checkpoints", opaque_line),
    TopicKind("topic_drift_partials", opaque_line),
)


def resolve(settings: Settings, name: str) -> tuple[str, TopicKind]:
    """The real topic name and kind of ``name``, a role name or a topic's real name."""
    for kind in KINDS:
        if name == kind.role:
            return getattr(settings, kind.setting), kind
    for kind in KINDS:
        if name == getattr(settings, kind.setting):
            return name, kind
    roles = ", ".join(kind.role for kind in KINDS)
    raise ConfigError(
        f"{name!r} is not a topic of this service\n"
        f"give one of {roles} (or the name a STREAMSCORE_TOPIC_* variable gives it)"
    )


def check_filters(kind: TopicKind, entity: str | None, model: str | None) -> None:
    """A filter the topic's records cannot match is a mistake: say which topics it applies to."""
    for given, flag, wanted in ((entity, "--entity", "entities"), (model, "--model", "models")):
        if given is not None and not getattr(kind, wanted):
            fits = ", ".join(k.role for k in KINDS if getattr(k, wanted))
            raise ConfigError(f"{flag} does not apply to {kind.role}; it filters {fits}")


def matches(line: Line, entity: str | None, model: str | None) -> bool:
    """``--entity`` and ``--model`` (a name, or name:version); an undecodable record always shows."""
    if line.undecodable is not None:
        return True
    if entity is not None and entity not in line.entities:
        return False
    if model is None:
        return True
    return any(model in (m, m.rpartition(":")[0]) for m in line.models)
