"""Model commands (deploy, rollback, promote, challenger) shared by the CLI and the /control endpoint.

Each reads the live state from ``model-updates``, computes the next one
(``scoring.lifecycle.decisions``), checks new bundles through the same gate the workers use
(so a bad bundle is refused here, before any worker sees it), and publishes it.
Workers check again on their side: what they load is what counts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from schemas.checkpoint import ChallengerExport
from schemas.commands import ACTIONS, MODEL_COMMAND, Deploy, ModelCommand, Promote, Rollback, SetChallenger
from schemas.lifecycle import ChallengerMode, ModelRef, ModelUpdate
from scoring.errors import BundleError, LifecycleError
from scoring.lifecycle import decisions as lifecycle
from scoring.lifecycle.gate import admit
from scoring.lifecycle.registry import ModelRegistry, load_ref
from scoring.lifecycle.sources import NOT_ALLOWED, is_local
from scoring.model.bundle import ModelBundle
from streams.kafka.readers import read_latest
from streams.kafka.topics import ensure_topics
from streams.services.control.loads import load_within
from streams.services.control.step import model_sources
from streams.services.shared.model_updates import live_update, publish_update
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.services.control.labelled import Skipped


def model_name(settings: Settings, name: str | None) -> str:
    """The model a command is about: named, or the only one registered or recorded as live.

    Only records that are model updates count (a record whose key names no model is junk,
    not a model), so one junk key on ``model-updates`` cannot make every command ambiguous.
    """
    if name:
        return name
    names = {m.ref.name for m in ModelRegistry(settings.registry_root).models()}
    if not names:
        ensure_topics(settings)
        latest, _ = read_latest(settings, settings.topic_model_updates, idle_s=0.5)
        names = {key for key, value in latest.items() if _updates(key, value)}
    if len(names) != 1:
        raise LifecycleError(f"name the model (--name): found {sorted(names) or 'no models'}")
    return names.pop()


def _updates(key: str, value: bytes) -> bool:
    try:
        return ModelUpdate.model_validate_json(value).champion.name == key
    except ValidationError:
        return False


def run_command(
    settings: Settings,
    action: str,
    name: str | None = None,
    version: str | None = None,
    mode: ChallengerMode = ChallengerMode.split,
    share: float = 0.5,
    reason: str = "",
) -> ModelUpdate:
    """``execute`` with the command's fields as arguments (what the CLI has at hand)."""
    if action not in ACTIONS:
        raise LifecycleError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    fields = {"action": action, "name": name, "reason": reason}
    if action in ("deploy", "promote", "challenger"):
        fields["version"] = version
    if action == "challenger":
        fields |= {"mode": mode, "share": share}
    try:
        command = MODEL_COMMAND.validate_python(fields, strict=False)
    except ValidationError as exc:
        raise LifecycleError(f"{action}: {exc.errors(include_url=False)[0]['msg']}") from exc
    return execute(settings, command)


def execute(settings: Settings, command: ModelCommand) -> ModelUpdate:
    """Publish the update ``command`` makes of the live state; returns it."""
    registry = ModelRegistry(settings.registry_root)
    name = model_name(settings, command.name)
    ensure_topics(settings)
    current, _ = live_update(settings, name)
    reason = command.reason
    match command:
        case Deploy(version=version):
            update = lifecycle.deploy(current, registry.ref(name, version), reason)
        case Rollback():
            update = lifecycle.rollback(current, reason)
        case _ if current is None:
            raise LifecycleError(f"{name} has no deployed champion yet: deploy one first")
        case Promote(version=version):
            update = lifecycle.promote(current, registry.ref(name, version) if version else None, reason)
        case SetChallenger(version=version, mode=mode, share=share):
            update = lifecycle.set_challenger(current, registry.ref(name, version), mode, share, reason)
        case _:
            update = lifecycle.clear_challenger(current, reason)
    load = bounded_load(settings)
    live = _live_bundle(current, load) if current is not None else None
    # fail fast on a bundle the workers would refuse; with no live bundle in time, their gate alone decides
    if current is not None and live is not None:
        for new in (update.champion, update.challenger):
            if new is not None and new != current.champion:
                admit(lambda new=new: load(new), live)
    publish_update(settings, update)
    return update


def bounded_load(settings: Settings) -> Callable[[ModelRef], ModelBundle]:
    """``load_ref`` for bundles named on ``model-updates``, which anyone with write access fills: a
    remote one only under the registry or STREAMSCORE_MODEL_SOURCES, each load given up after
    ``model_fetch_timeout_s`` (a URL that never answers must not hang the command)."""
    sources = model_sources(settings, None)

    def load(ref: ModelRef) -> ModelBundle:
        if not (is_local(ref.uri) or sources.allows(ref.uri)):
            raise BundleError(f"{ref.name} {ref.version}: {NOT_ALLOWED}")
        return load_within(lambda: load_ref(ref), settings.model_fetch_timeout_s, f"{ref.name} {ref.version}")

    return load


def _live_bundle(current: ModelUpdate, load: Callable[[ModelRef], ModelBundle]) -> ModelBundle | None:
    """The recorded champion, or the newest earlier one that loads (a refused update stays recorded)."""
    for ref in [current.champion, *reversed(current.history)]:
        try:
            return load(ref)
        except BundleError:
            continue
    return None


def _live_or_fail(settings: Settings, current: ModelUpdate) -> ModelBundle:
    live = _live_bundle(current, bounded_load(settings))
    if live is None:
        raise BundleError(f"no recorded champion of {current.champion.name} loads")
    return live


def retrain_from_topics(
    settings: Settings,
    name: str | None,
    labelled: int,
    num_trees: int,
    version: str | None,
    out_dir: Path,
    skipped: Skipped | None = None,
) -> tuple[ModelRef, dict[str, float]]:
    """Train a new version on the last ``labelled`` labelled events of the topics and register it.

    It takes the live champion's feature spec, task and target (and a multiclass model's classes, in
    its order), so it passes the gate's feature and class checks by construction.
    """
    from scoring.offline.training import train_bundle
    from streams.services.control.class_topics import class_labels
    from streams.services.control.labelled import Skipped, labelled_from_topics

    registry = ModelRegistry(settings.registry_root)
    name = model_name(settings, name)
    current, _ = live_update(settings, name)
    if current is None:
        raise BundleError(f"{name} has no deployed champion to retrain")
    live = _live_or_fail(settings, current)
    skipped = skipped if skipped is not None else Skipped()
    labels = None
    if live.classes is not None:  # multiclass: labels name the live model's classes, kept in its order
        labels = {i: live.classes[k] for i, k in class_labels(settings, live, skipped).items()}
    frame, y = labelled_from_topics(
        settings, live, labelled, any_version=True, skipped=skipped, labels=labels
    )
    if len(y) < 100:
        raise BundleError(f"only {len(y)} labelled events on the topics; at least 100 are needed")
    frame[live.metadata.target] = y
    version = version or _next_version(registry, current)
    bundle = train_bundle(
        frame,
        live.metadata.target,
        out_dir / f"{name}-{version}",
        task=live.task.value,
        name=name,
        version=version,
        num_trees=num_trees,
        spec=live.spec,
        classes=live.classes,
    )
    return registry.register(bundle.path), bundle.metrics


def publish_challenger(
    settings: Settings, name: str | None, version: str | None, out_dir: Path
) -> tuple[ModelRef, ChallengerExport]:
    """Register the learn worker's latest exported River challenger as a version of the live model."""
    from scoring.lifecycle.decisions import bundle_from_linear
    from scoring.model.linear_model import read_linear
    from streams.services.shared.checkpoints import challenger_key

    registry = ModelRegistry(settings.registry_root)
    name = model_name(settings, name)
    current, _ = live_update(settings, name)
    if current is None:
        raise BundleError(f"{name} has no deployed champion")
    key = challenger_key(settings).decode()
    latest, _ = read_latest(settings, settings.topic_checkpoints, idle_s=1.0, prefix=key)
    if key not in latest:
        raise BundleError("no exported challenger on the checkpoints topic yet (is a learn worker running?)")
    try:
        export = ChallengerExport.model_validate_json(latest[key])
        model = read_linear(export.model)
    except ValidationError as exc:
        raise BundleError(
            f"the exported challenger on {settings.topic_checkpoints} is not readable: {exc}"
        ) from exc
    version = version or _next_version(registry, current)
    live = _live_or_fail(settings, current)
    bundle = bundle_from_linear(model, live, version, export.metrics)
    bundle.save(out_dir / f"{name}-{version}")
    return registry.register(out_dir / f"{name}-{version}"), export


def _next_version(registry: ModelRegistry, current: ModelUpdate) -> str:
    """One past every version registered or ever recorded as serving (those may be outside it)."""
    from scoring.lifecycle.retrain import next_version

    known = [m.ref.version for m in registry.models(current.champion.name)]
    known += [r.version for r in (current.champion, current.challenger, *current.history) if r is not None]
    return next_version(known)
