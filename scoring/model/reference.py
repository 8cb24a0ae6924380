"""Training reference statistics that later drift tests compare live windows against."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from scoring.model.features import FeatureKind, FeatureSpec

DEFAULT_BINS = 10
DEFAULT_SAMPLE = 2000


class NumericReference(BaseModel):
    """Quantile bin edges (inner edges; the outer bins are open) and training counts per bin.

    ``sample`` is a uniform sample of the training values, kept for two-sample tests.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    edges: list[float]
    counts: list[int]
    missing: int
    total: int
    sample: list[float] = Field(default_factory=list)


class CategoricalReference(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    frequencies: dict[str, int]
    missing: int
    total: int


class Reference(BaseModel):
    """Per-feature reference statistics, plus the score distribution on the holdout.

    For a multiclass model ``score`` is the predicted class's probability (as ``scores`` on
    ``monitor``), ``probabilities`` each class's probability and ``predicted`` how often each
    class was predicted, all on the holdout (or an imported model's reference rows).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    numeric: dict[str, NumericReference] = Field(default_factory=dict)
    categorical: dict[str, CategoricalReference] = Field(default_factory=dict)
    score: NumericReference | None = None
    probabilities: dict[str, NumericReference] = Field(default_factory=dict)  # multiclass: class -> its
    predicted: CategoricalReference | None = None  # multiclass: the predicted classes


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of finite values per bin, bins split at the inner ``edges`` (right-closed)."""
    finite = values[~np.isnan(values)]
    return np.bincount(np.searchsorted(edges, finite, side="left"), minlength=len(edges) + 1)


def bin_counts_sorted(ordered: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``bin_counts`` of values already sorted and free of NaN, for edges in increasing order: the
    same counts from one search per edge instead of one per value."""
    at_or_below = np.searchsorted(ordered, edges, side="right")
    return np.diff(at_or_below, prepend=0, append=ordered.size)


def numeric_reference(
    values: np.ndarray, bins: int = DEFAULT_BINS, sample: int = DEFAULT_SAMPLE, seed: int = 0
) -> NumericReference:
    values = np.asarray(values, dtype=float)
    finite = values[~np.isnan(values)]
    if finite.size:
        quantiles = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])
        edges = np.unique(quantiles)
    else:
        edges = np.array([], dtype=float)
    rng = np.random.default_rng(seed)
    picked = finite if finite.size <= sample else rng.choice(finite, size=sample, replace=False)
    return NumericReference(
        edges=edges.tolist(),
        counts=bin_counts(values, edges).tolist(),
        missing=int(values.size - finite.size),
        total=int(values.size),
        sample=picked.tolist(),
    )


def build_reference(
    spec: FeatureSpec, matrix: np.ndarray, holdout_scores: np.ndarray, class_names: tuple[str, ...] = ()
) -> Reference:
    """Reference statistics from the encoded training matrix and the holdout scores: (n,) of a model
    of one score per event, (n, K) class probabilities of a multiclass one (``class_names`` K)."""
    numeric: dict[str, NumericReference] = {}
    categorical: dict[str, CategoricalReference] = {}
    for j, feature in enumerate(spec.features):
        column = matrix[:, j]
        if feature.kind is FeatureKind.numeric:
            numeric[feature.name] = numeric_reference(column)
            continue
        present = column[~np.isnan(column)].astype(int)
        counts = np.bincount(present, minlength=len(feature.categories))
        categorical[feature.name] = CategoricalReference(
            frequencies={c: int(counts[i]) for i, c in enumerate(feature.categories)},
            missing=int(column.size - present.size),
            total=int(column.size),
        )
    holdout_scores = np.asarray(holdout_scores, dtype=float)
    if not class_names:
        return Reference(numeric=numeric, categorical=categorical, score=numeric_reference(holdout_scores))
    predicted = holdout_scores.argmax(axis=1)
    counts = np.bincount(predicted, minlength=len(class_names))
    return Reference(
        numeric=numeric,
        categorical=categorical,
        score=numeric_reference(holdout_scores[np.arange(len(predicted)), predicted]),
        probabilities={c: numeric_reference(holdout_scores[:, k]) for k, c in enumerate(class_names)},
        predicted=CategoricalReference(
            frequencies={c: int(counts[k]) for k, c in enumerate(class_names)},
            missing=0,
            total=len(predicted),
        ),
    )
