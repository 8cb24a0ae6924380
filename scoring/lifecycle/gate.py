"""The gate a candidate model passes before it serves beside or instead of the live one.

In order: it loads and its files match its manifest; it takes the live model's
features (same names in the same order, same kinds, same category lists, since the
category order is the encoding); it solves the same task (a multiclass model: the same
classes in the same order, which labels, KPIs and consumers rely on); and a smoke
prediction on rows drawn from the live model's training reference gives one finite
score per row (a probability for a binary model; a probability per class for a
multiclass one). Any failure raises ``GateRefused`` naming the
check, and the caller keeps the live model.

A candidate with other features is refused rather than mapped: the events on the
topic carry the live features, so a model taking others needs its own topic or a
feature-mapping step upstream.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from schemas.lifecycle import Check
from scoring.errors import BundleError, GateRefused, ManifestMismatch
from scoring.model.bundle import ModelBundle, Task
from scoring.model.features import FeatureKind, FeatureSpec
from scoring.model.reference import Reference

SMOKE_ROWS = 64


def admit(load: Callable[[], ModelBundle], live: ModelBundle) -> ModelBundle:
    """The loaded candidate, if it passes every check against ``live``; else ``GateRefused``."""
    try:
        candidate = load()
    except GateRefused:
        raise  # the loader refused it itself (e.g. a source not allowed): its check stands
    except ManifestMismatch as exc:
        raise GateRefused(Check.manifest, str(exc)) from exc
    except BundleError as exc:
        raise GateRefused(Check.load, str(exc)) from exc
    except Exception as exc:  # a model or bundle that fails in any way is refused
        raise GateRefused(Check.load, f"{type(exc).__name__}: {exc}") from exc
    difference = spec_difference(live.spec, candidate.spec)
    if difference:
        raise GateRefused(Check.features, difference)
    if candidate.task is not live.task:
        raise GateRefused(Check.task, f"candidate is {candidate.task.value}, live model is {live.task.value}")
    if candidate.classes != live.classes:
        raise GateRefused(
            Check.task, f"candidate's classes {candidate.classes} are not the live model's {live.classes}"
        )
    smoke_test(candidate, reference_rows(live.spec, live.reference))
    return candidate


def spec_difference(live: FeatureSpec, candidate: FeatureSpec) -> str:
    """'' when the candidate takes exactly the live inputs; else what differs."""
    if live.names != candidate.names:
        missing = [n for n in live.names if n not in candidate.names]
        extra = [n for n in candidate.names if n not in live.names]
        if missing or extra:
            return f"features differ: candidate lacks {missing}, adds {extra}"
        return f"feature order differs: live {live.names}, candidate {candidate.names}"
    for old, new in zip(live.features, candidate.features, strict=True):
        if old.kind is not new.kind:
            return f"{old.name}: kind {new.kind.value}, live model has {old.kind.value}"
        if old.kind is FeatureKind.categorical and old.categories != new.categories:
            return f"{old.name}: categories {new.categories} differ from the live {old.categories}"
    return ""


def reference_rows(spec: FeatureSpec, reference: Reference, n: int = SMOKE_ROWS) -> np.ndarray:
    """Encoded rows drawn from the training reference: sample values, every category, some missing."""
    rows = np.full((n, len(spec.features)), np.nan)
    for j, feature in enumerate(spec.features):
        if feature.kind is FeatureKind.numeric:
            numeric = reference.numeric.get(feature.name)
            values = np.asarray(numeric.sample if numeric and numeric.sample else [0.0], dtype=float)
            rows[:, j] = values[np.arange(n) % len(values)]
        else:
            codes = np.arange(len(feature.categories) + 1, dtype=float)  # + the unseen code
            rows[:, j] = codes[np.arange(n) % len(codes)]
    rows[-1, :] = np.nan  # one row with every input missing
    return rows


def smoke_test(candidate: ModelBundle, rows: np.ndarray) -> None:
    try:
        scores = candidate.predict(rows)
    except Exception as exc:  # a model or bundle that fails in any way is refused
        raise GateRefused(Check.smoke, f"predict raised {type(exc).__name__}: {exc}") from exc
    classes = len(candidate.class_names)
    expected = (len(rows), classes) if classes else (len(rows),)
    if scores.shape != expected:
        raise GateRefused(Check.smoke, f"{len(rows)} rows gave scores of shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise GateRefused(
            Check.smoke, f"{int((~np.isfinite(scores)).sum())} of {len(rows)} scores not finite"
        )
    if candidate.task is not Task.regression and ((scores < 0) | (scores > 1)).any():
        raise GateRefused(Check.smoke, f"a {candidate.task.value} model gave probabilities outside [0, 1]")
