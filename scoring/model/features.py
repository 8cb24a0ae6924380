"""The feature spec: which inputs a model takes, in which order, of which kind.

Columns of a training table become features by their type: numbers are ``numeric``,
strings ``categorical``, and booleans are *two-valued*: a categorical whose categories are
exactly ``["false", "true"]`` (``BOOLEAN_CATEGORIES``). Events may carry a two-valued
feature as a JSON ``true``/``false`` or as the strings ``"true"``/``"false"``; both give
the same code. A boolean is a category, not a quantity: drift compares the share of
each value (chi-square, PSI on the two shares) where a 0/1 number would get quantile bins
that collapse to one, KPIs break down by ``true`` and ``false``, explanations show the
value by name, and a JSON boolean still is not a number to a numeric feature.

Categorical values are mapped to LightGBM category codes by their position in
``Feature.categories``. A category never seen in training gets the code
``len(categories)``, which no tree split names, so LightGBM sends it down the
"other" branch as it does for unseen categories; it is not rejected.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from scoring.errors import TrainingError


class FeatureKind(StrEnum):
    numeric = "numeric"
    categorical = "categorical"


BOOLEAN_CATEGORIES = ["false", "true"]  # a two-valued feature: a categorical with exactly these


class Feature(BaseModel):
    """One model input. Optional features fall back to ``default`` (None means missing)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: FeatureKind
    required: bool = True
    default: float | str | None = None
    min: float | None = None
    max: float | None = None
    categories: list[str] = Field(default_factory=list)

    @property
    def unseen_code(self) -> int:
        return len(self.categories)

    @property
    def two_valued(self) -> bool:
        """A boolean feature: events may send it as JSON ``true``/``false``."""
        return self.kind is FeatureKind.categorical and self.categories == BOOLEAN_CATEGORIES


class FeatureSpec(BaseModel):
    """Ordered model inputs; the order is the column order of the LightGBM model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: list[Feature]

    @model_validator(mode="after")
    def _unique_names(self) -> FeatureSpec:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        return self

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, f in enumerate(self.features) if f.kind is FeatureKind.categorical]

    @classmethod
    def infer(cls, frame: pd.DataFrame) -> FeatureSpec:
        """Infer a spec from training columns: strings are categorical, numbers numeric.

        A column with missing values becomes optional with a missing default; one
        without becomes required.
        """
        features = []
        for name in frame.columns:
            column = frame[name]
            required = not bool(column.isna().any())
            if _is_boolean(column):
                features.append(
                    Feature(
                        name=str(name),
                        kind=FeatureKind.categorical,
                        required=required,
                        categories=list(BOOLEAN_CATEGORIES),
                    )
                )
            elif pd.api.types.is_numeric_dtype(column):
                values = column.astype(float)
                if not np.isfinite(values.dropna()).all():
                    raise TrainingError(f"column {name!r} holds infinite values")
                features.append(
                    Feature(
                        name=str(name),
                        kind=FeatureKind.numeric,
                        required=required,
                        min=float(values.min()) if values.notna().any() else None,
                        max=float(values.max()) if values.notna().any() else None,
                    )
                )
            elif pd.api.types.is_object_dtype(column) or isinstance(
                column.dtype, (pd.StringDtype, pd.CategoricalDtype)
            ):
                categories = sorted({str(v) for v in column.dropna().unique()})
                features.append(
                    Feature(
                        name=str(name), kind=FeatureKind.categorical, required=required, categories=categories
                    )
                )
            else:
                raise TrainingError(f"column {name!r} has unsupported dtype {column.dtype}")
        if not features:
            raise TrainingError("no feature columns")
        return cls(features=features)

    def encode_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode a frame's feature columns into the float matrix LightGBM takes.

        Used for training and batch scoring; the stream path builds the same rows
        one event at a time in ``scoring.model.validation``.
        """
        missing = [n for n in self.names if n not in frame.columns]
        if missing:
            raise TrainingError(f"missing feature columns: {missing}")
        matrix = np.empty((len(frame), len(self.features)), dtype=np.float64)
        for j, feature in enumerate(self.features):
            column = frame[feature.name]
            if feature.kind is FeatureKind.numeric:
                matrix[:, j] = pd.to_numeric(column, errors="raise").astype(float).to_numpy()
                continue
            codes = {c: float(i) for i, c in enumerate(feature.categories)}
            unseen = float(feature.unseen_code)
            name = category_name if feature.two_valued else str
            matrix[:, j] = [
                math.nan if _is_missing(v) else codes.get(name(v), unseen) for v in column.to_numpy()
            ]
        return matrix


def category_name(value: Any) -> str:
    """A category's name as events carry it: booleans (Python's or numpy's) as ``true``/``false``."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)


def _is_boolean(column: pd.Series) -> bool:
    """A bool column, or one of booleans with gaps (pandas reads ``True,,False`` as objects)."""
    if pd.api.types.is_bool_dtype(column):
        return True
    if not pd.api.types.is_object_dtype(column):
        return False
    present = column.dropna()
    return len(present) > 0 and all(isinstance(v, bool | np.bool_) for v in present)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA
