"""Model lifecycle decisions, free of Kafka: the next serving state, and applying one.

Every command (deploy, rollback, promote, set or clear a challenger) turns the current
``ModelUpdate`` into the next one; ``apply_update`` turns an update into the bundles a
worker serves, through the gate, reusing what is already loaded.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from schemas.lifecycle import HISTORY_KEPT, ChallengerMode, ModelRef, ModelUpdate
from scoring.errors import LifecycleError
from scoring.lifecycle.gate import admit
from scoring.model.bundle import ModelBundle, new_metadata
from scoring.model.linear_model import LinearModel, SoftmaxLinear


def _now_ms() -> int:
    return int(time.time() * 1000)


def deploy(current: ModelUpdate | None, ref: ModelRef, reason: str = "") -> ModelUpdate:
    """``ref`` becomes the champion; the old champion goes on the rollback history."""
    history = [] if current is None else [*current.history, current.champion][-HISTORY_KEPT:]
    if current is not None and current.champion == ref:
        history = current.history
    return ModelUpdate(action="deploy", champion=ref, history=history, reason=reason, requested_at=_now_ms())


def rollback(current: ModelUpdate | None, reason: str = "") -> ModelUpdate:
    """The champion before this one serves again; any challenger is dropped."""
    if current is None or not current.history:
        raise LifecycleError("nothing to roll back to: no earlier champion is recorded")
    return ModelUpdate(
        action="rollback",
        champion=current.history[-1],
        history=current.history[:-1],
        reason=reason or f"rollback from {current.champion.version}",
        requested_at=_now_ms(),
    )


def set_challenger(
    current: ModelUpdate, ref: ModelRef, mode: ChallengerMode, share: float, reason: str = ""
) -> ModelUpdate:
    if ref == current.champion:
        raise LifecycleError(f"version {ref.version} is the champion already")
    if mode is ChallengerMode.split and not 0 < share < 1:
        raise LifecycleError(f"a split needs a challenger share between 0 and 1, got {share}")
    return current.model_copy(
        update={
            "action": "challenger",
            "challenger": ref,
            "mode": mode,
            "challenger_share": share if mode is ChallengerMode.split else 0.0,
            "reason": reason,
            "requested_at": _now_ms(),
        }
    )


def clear_challenger(current: ModelUpdate, reason: str = "") -> ModelUpdate:
    return current.model_copy(
        update={
            "action": "clear_challenger",
            "challenger": None,
            "mode": None,
            "challenger_share": 0.0,
            "reason": reason,
            "requested_at": _now_ms(),
        }
    )


def promote(current: ModelUpdate, ref: ModelRef | None = None, reason: str = "") -> ModelUpdate:
    """The challenger (or ``ref``) becomes the champion; the challenger slot empties."""
    target = ref or current.challenger
    if target is None:
        raise LifecycleError("no challenger to promote; name a version")
    update = deploy(current, target, reason or f"promote {target.version}")
    return update.model_copy(update={"action": "promote"})


@dataclass(frozen=True)
class Serving:
    champion: ModelBundle
    challenger: ModelBundle | None = None
    mode: ChallengerMode | None = None
    share: float = 0.0


def apply_update(update: ModelUpdate, serving: Serving, load: Callable[[ModelRef], ModelBundle]) -> Serving:
    """The bundles to serve for ``update``; a bundle already serving is reused, others pass the gate.

    Raises ``GateRefused`` (which check, why) if a new bundle fails; nothing changes then.
    """
    loaded = {(b.name, b.version): b for b in (serving.champion, serving.challenger) if b is not None}

    def get(ref: ModelRef, live: ModelBundle) -> ModelBundle:
        known = loaded.get((ref.name, ref.version))
        return known if known is not None else admit(lambda: load(ref), live)

    champion = get(update.champion, serving.champion)
    challenger = get(update.challenger, champion) if update.challenger is not None else None
    if challenger is None:
        return Serving(champion)
    return Serving(champion, challenger, update.mode, update.challenger_share)


def bundle_from_linear(
    model: LinearModel | SoftmaxLinear, live: ModelBundle, version: str, metrics: dict[str, float]
) -> ModelBundle:
    """A servable bundle of an exported (River) linear challenger, beside the ``live`` champion.

    It takes the champion's feature spec, task, threshold and training reference (the
    drift baseline: the challenger learned from the same stream the champion serves); a
    multiclass one, the champion's classes, which must be the model's, in the same order.
    """
    if getattr(model, "classes", None) != (list(live.class_names) or None):
        raise LifecycleError(
            f"the challenger's classes {getattr(model, 'classes', None)} are not the champion's "
            f"{list(live.class_names) or None}"
        )
    digest = hashlib.sha256(model.model_to_string().encode()).hexdigest()
    metadata = new_metadata(
        live.name, version, live.task, f"river-online:{digest}", live.metadata.target, classes=live.classes
    )
    metadata = metadata.model_copy(update={"model_kind": "linear", "threshold": live.metadata.threshold})
    return ModelBundle(None, model, live.spec, live.reference, dict(metrics), metadata)
