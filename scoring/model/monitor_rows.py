"""Does a monitoring record fit the model version it names? Rows checked against its feature spec.

A record's rows are the encoded inputs the scorer fed the model: one column per feature,
in the spec's order; numeric values finite or missing (NaN); categorical values a category
code, ``0 .. len(categories)`` (the last meaning unseen), or missing. Anything else did not
come from a scorer of that version, and downstream code (segments, decoders, River inputs)
would index out of range on it. A multiclass model's records carry its classes, in its order,
and a probability in [0, 1] per class and event (a shadow challenger's too); any other model's
records carry none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from schemas.monitor import MonitorColumns
from scoring.model.features import FeatureKind, FeatureSpec


@dataclass(frozen=True)
class RecordShape:
    """What the monitoring records of a model version hold: its inputs, and a multiclass model's class
    names as text (``ModelBundle.class_names``; () for a model of one score per event)."""

    spec: FeatureSpec
    classes: tuple[str, ...] = ()

    def problem(self, columns: MonitorColumns) -> str | None:
        """Why ``columns`` cannot be a record of this model version; None when they can."""
        problem = spec_problem(columns.feature_names, columns.rows, self.spec)
        if problem is not None:
            return problem
        problem = probabilities_problem(columns.classes, columns.probabilities, self.classes)
        shadow = columns.shadow_probabilities  # a shadow challenger's, NaN rows where it failed
        if problem is None and shadow is not None and ((shadow < 0) | (shadow > 1)).any():
            return "a shadow challenger's class probability outside [0, 1]"
        return problem


def probabilities_problem(
    named: Sequence[str], probabilities: np.ndarray | None, classes: tuple[str, ...]
) -> str | None:
    """Why a record's class names and probabilities (events x classes) cannot be a model's with
    ``classes``; None when they can."""
    if not classes:
        return None if probabilities is None else "class probabilities for a model of one score per event"
    if probabilities is None:
        return f"no class probabilities for a model of {len(classes)} classes"
    if tuple(named) != classes:
        return f"classes {list(named)[:5]} are not the model's {list(classes)[:5]}"
    if probabilities.ndim != 2 or probabilities.shape[1] != len(classes):
        return f"probabilities of width {probabilities.shape[-1]} for {len(classes)} classes"
    if ((probabilities < 0) | (probabilities > 1)).any():
        return "a class probability outside [0, 1]"
    return None


def spec_problem(
    feature_names: list[str] | tuple[str, ...], rows: np.ndarray, spec: FeatureSpec
) -> str | None:
    """Why ``rows`` cannot be inputs of a model with ``spec``; None when they can.

    Checked over the whole matrix at once (a record holds a batch of events); the problem
    named is the first feature in the spec's order that has one, and its first bad row.
    """
    features = spec.features
    if list(feature_names) != spec.names:
        return f"feature names {list(feature_names)[:5]} are not the model's {spec.names[:5]}"
    if rows.ndim != 2 or rows.shape[1] != len(features):
        return f"rows of width {rows.shape[-1] if rows.ndim else 0} for {len(features)} features"
    bad = np.isinf(rows).any(axis=0)  # an infinite code is out of range too
    categorical = [j for j, f in enumerate(features) if f.kind is FeatureKind.categorical]
    if categorical:
        unseen = [features[j].unseen_code for j in categorical]
        bad[categorical] |= _not_codes(rows[:, categorical], unseen).any(axis=0)
    if not bad.any():
        return None
    j = int(np.argmax(bad))
    feature = features[j]
    if feature.kind is FeatureKind.categorical:
        column = rows[:, j : j + 1]
        value = column[np.argmax(_not_codes(column, [feature.unseen_code])[:, 0]), 0]
        return f"feature {feature.name!r} holds {float(value)!r}, not a category code"
    return f"feature {feature.name!r} holds an infinite value"


def _not_codes(block: np.ndarray, unseen: list[int]) -> np.ndarray:
    """Cells of ``block`` (events x categorical features) that are present and not a code ``0 .. unseen``."""
    wrong = (block < 0) | (block > np.asarray(unseen, dtype=float)) | (block != np.floor(block))
    return wrong & ~np.isnan(block)
