"""Does a monitoring record fit the model version it names? Rows checked against its feature spec.

A record's rows are the encoded inputs the scorer fed the model: one column per feature,
in the spec's order; numeric values finite or missing (NaN); categorical values a category
code, ``0 .. len(categories)`` (the last meaning unseen), or missing. Anything else did not
come from a scorer of that version, and downstream code (segments, decoders, River inputs)
would index out of range on it.
"""

from __future__ import annotations

import numpy as np

from scoring.model.features import FeatureKind, FeatureSpec


def spec_problem(
    feature_names: list[str] | tuple[str, ...], rows: np.ndarray, spec: FeatureSpec
) -> str | None:
    """Why ``rows`` cannot be inputs of a model with ``spec``; None when they can."""
    if list(feature_names) != spec.names:
        return f"feature names {list(feature_names)[:5]} are not the model's {spec.names[:5]}"
    if rows.ndim != 2 or rows.shape[1] != len(spec.names):
        return f"rows of width {rows.shape[-1] if rows.ndim else 0} for {len(spec.names)} features"
    for j, feature in enumerate(spec.features):
        column = rows[:, j]
        present = column[~np.isnan(column)]
        if feature.kind is FeatureKind.categorical:
            bad = (present < 0) | (present > feature.unseen_code) | (present != np.floor(present))
            if bad.any():
                return f"feature {feature.name!r} holds {float(present[bad][0])!r}, not a category code"
        elif np.isinf(present).any():
            return f"feature {feature.name!r} holds an infinite value"
    return None
