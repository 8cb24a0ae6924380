"""A linear model as a servable bundle model: the River challenger, exported.

River keeps its models as Python objects (a pickle is the only serialisation),
which a serving worker must not load from a shared place. The default challenger is
linear (StandardScaler and one-hot encoding, then LogisticRegression or
LinearRegression), so it exports exactly to weights in JSON: per numeric feature a
weight, the scaler's mean and scale; per categorical feature a weight per category.

It offers the slice of ``lightgbm.Booster`` a bundle uses (``predict`` with
``pred_contrib``, ``feature_name``, ``feature_importance``, ``model_to_string``),
so scoring, explanations, the gate and reports take it unchanged. Its scores equal
River's ``predict_proba_one`` / ``predict_one`` on the same inputs: a missing value
adds nothing (River leaves the key out), a zero-variance feature adds nothing, and
the logistic link clips at +-30 as River's does.

A multiclass challenger is River's ``SoftmaxRegression`` behind the same preprocessing; it
exports as ``SoftmaxLinear``: per class, in the champion's class order, an identity-link
``LinearModel`` (River's softmax has no intercept: 0) giving the class's raw score, and the
row's softmax of them as River computes it (less the row's maximum, exponentiated, scaled to
sum to 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from scoring.model.features import FeatureKind, FeatureSpec

UNSEEN = "__unseen__"  # the category name the learner gives an unseen code


class NumericTerm(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: float
    mean: float
    scale: float  # standard deviation; 0 makes the term 0, as River's scaler does


class LinearModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["linear"] = "linear"
    link: Literal["logistic", "identity"]
    intercept: float
    features: list[str]
    numeric: dict[str, NumericTerm]
    categorical: dict[str, dict[str, float]]  # feature -> category -> weight
    categories: dict[str, list[str]]  # the spec's categories: code i is categories[i]

    # -- the Booster slice

    def feature_name(self) -> list[str]:
        return list(self.features)

    def model_to_string(self) -> str:
        return self.model_dump_json(indent=2)

    def feature_importance(self, importance_type: str = "gain") -> np.ndarray:
        """The largest absolute weight of each feature (numeric weights are per standard deviation)."""
        out = []
        for name in self.features:
            if name in self.numeric:
                out.append(abs(self.numeric[name].weight))
            else:
                out.append(max((abs(w) for w in self.categorical.get(name, {}).values()), default=0.0))
        return np.asarray(out, dtype=float)

    def predict(self, matrix: np.ndarray, num_threads: int = 1, pred_contrib: bool = False) -> np.ndarray:
        terms = self._terms(np.asarray(matrix, dtype=float))
        if pred_contrib:
            return np.column_stack([terms, np.full(len(terms), self.intercept)])
        raw = terms.sum(axis=1) + self.intercept
        if self.link == "identity":
            return raw
        clipped = np.clip(raw, -30, 30)
        probability = 1 / (1 + np.exp(-clipped))
        return np.where(raw < -30, 0.0, np.where(raw > 30, 1.0, probability))

    def _terms(self, matrix: np.ndarray) -> np.ndarray:
        """rows x features: each feature's additive term of the raw score."""
        terms = np.zeros_like(matrix)
        for j, name in enumerate(self.features):
            column = matrix[:, j]
            present = ~np.isnan(column)
            if name in self.numeric:
                t = self.numeric[name]
                if t.scale > 0:
                    terms[present, j] = t.weight * (column[present] - t.mean) / t.scale
                continue
            categories = self.categories[name]
            weights = self.categorical.get(name, {})
            by_code = np.asarray([weights.get(c, 0.0) for c in categories] + [weights.get(UNSEEN, 0.0)])
            codes = np.minimum(column[present].astype(int), len(categories))
            terms[present, j] = by_code[codes]
        return terms


class SoftmaxLinear(BaseModel):
    """Multiclass: ``heads[k]`` gives ``classes[k]``'s raw score (identity link); the probabilities
    are the row's softmax, as River's ``SoftmaxRegression`` computes them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["linear_softmax"] = "linear_softmax"
    classes: list[str] = Field(min_length=2)
    heads: list[LinearModel]

    def model_post_init(self, _context: object) -> None:
        if len(self.heads) != len(self.classes):
            raise ValueError(f"{len(self.heads)} heads for {len(self.classes)} classes")
        if any(h.link != "identity" or h.features != self.heads[0].features for h in self.heads):
            raise ValueError("every head must have the identity link, over the same features")

    def feature_name(self) -> list[str]:
        return self.heads[0].feature_name()

    def model_to_string(self) -> str:
        return self.model_dump_json(indent=2)

    def feature_importance(self, importance_type: str = "gain") -> np.ndarray:
        """Each feature's largest importance over the classes."""
        return np.max([h.feature_importance(importance_type) for h in self.heads], axis=0)

    def predict(self, matrix: np.ndarray, num_threads: int = 1, pred_contrib: bool = False) -> np.ndarray:
        """(n, K) probabilities; with ``pred_contrib``, (n, K x (features + 1)) as LightGBM's multiclass
        layout: each class's terms of its raw score, then its intercept (0)."""
        if pred_contrib:
            return np.hstack([h.predict(matrix, pred_contrib=True) for h in self.heads])
        raw = np.column_stack([h.predict(matrix) for h in self.heads])
        e = np.exp(raw - raw.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


AnyLinear = Annotated[LinearModel | SoftmaxLinear, Field(discriminator="kind")]
_ANY_LINEAR: TypeAdapter[LinearModel | SoftmaxLinear] = TypeAdapter(AnyLinear)


def read_linear(data: bytes | str | dict) -> LinearModel | SoftmaxLinear:
    """A linear bundle model from its JSON (``kind`` says which); pydantic's ``ValidationError`` if none."""
    if isinstance(data, dict):
        return _ANY_LINEAR.validate_python(data)
    return _ANY_LINEAR.validate_json(data)


def _parts(estimator) -> list:
    """Every step of a River pipeline, unions included, depth first."""
    steps = getattr(estimator, "steps", None)
    transformers = getattr(estimator, "transformers", None)
    if steps is not None:
        return [p for step in steps.values() for p in _parts(step)]
    if transformers is not None:
        return [p for t in transformers.values() for p in _parts(t)]
    return [estimator]


def linear_from_river(
    pipeline, spec: FeatureSpec, classes: Sequence[str] = ()
) -> LinearModel | SoftmaxLinear:
    """Export a River linear pipeline (the default challenger); ``ValueError`` for anything else.

    ``classes``: a multiclass challenger's, in the champion's order; its ``SoftmaxRegression``
    knows them by index (the learner teaches it class indices) and must have seen every one.
    """
    from river import linear_model

    parts = _parts(pipeline)
    head = parts[-1] if parts else None
    if isinstance(head, linear_model.SoftmaxRegression):
        missing = [name for k, name in enumerate(classes) if k not in head.weights]
        if len(classes) < 2 or missing:
            raise ValueError(f"the challenger has not learned the classes {missing} yet")
        heads = [
            _linear(parts[:-1], dict(head.weights[k]), 0.0, "identity", spec) for k in range(len(classes))
        ]
        return SoftmaxLinear(classes=list(classes), heads=heads)
    if classes:
        raise ValueError(f"a multiclass challenger must be a SoftmaxRegression, not {type(head).__name__}")
    if not isinstance(head, linear_model.LogisticRegression | linear_model.LinearRegression):
        raise ValueError(f"only a linear challenger can be exported as a bundle, not {type(head).__name__}")
    link = "logistic" if isinstance(head, linear_model.LogisticRegression) else "identity"
    return _linear(parts[:-1], dict(head.weights), float(head.intercept), link, spec)


def _linear(
    preprocessing_parts: list, weights: dict, intercept: float, link: str, spec: FeatureSpec
) -> LinearModel:
    """A linear head's ``weights`` behind the pipeline's preprocessing, as a ``LinearModel``."""
    from river import preprocessing

    known = (preprocessing.StandardScaler, preprocessing.OneHotEncoder)
    selectors = ("Select", "PresentOnly")
    others = [
        type(p).__name__
        for p in preprocessing_parts
        if not isinstance(p, known) and type(p).__name__ not in selectors
    ]
    if others:
        raise ValueError(f"cannot export a pipeline with {others}")
    scaler = next((p for p in preprocessing_parts if isinstance(p, preprocessing.StandardScaler)), None)
    numeric: dict[str, NumericTerm] = {}
    categorical: dict[str, dict[str, float]] = {}
    for feature in spec.features:
        if feature.kind is FeatureKind.numeric:
            if scaler is None:
                raise ValueError("the exported challenger must scale its numeric features")
            var = float(scaler.vars[feature.name]) if feature.name in scaler.vars else 0.0
            numeric[feature.name] = NumericTerm(
                weight=float(weights.get(feature.name, 0.0)),
                mean=float(scaler.means[feature.name]) if feature.name in scaler.means else 0.0,
                scale=math.sqrt(var) if var > 0 else 0.0,
            )
        else:
            prefix, names = f"{feature.name}_", {*feature.categories, UNSEEN}
            categorical[feature.name] = {
                key[len(prefix) :]: float(w)
                for key, w in weights.items()
                if key.startswith(prefix) and key[len(prefix) :] in names
            }
    return LinearModel(
        link=link,  # type: ignore[arg-type]
        intercept=intercept,
        features=spec.names,
        numeric=numeric,
        categorical=categorical,
        categories={f.name: list(f.categories) for f in spec.features if f.kind is FeatureKind.categorical},
    )
