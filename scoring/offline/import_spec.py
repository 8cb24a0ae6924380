"""The feature spec of a model trained elsewhere: its own inputs, kinds and category codes.

The model file decides; the reference table only confirms it and fills what the file does
not say. For each input of the model, in its order:

- a categorical input listed in the file's ``pandas_categorical``: those categories, in that
  order (LightGBM codes a category by its position there); a reference column of pandas
  ``category`` type must hold exactly that list, strings are taken as events name
  categories, numbers or booleans are refused;
- a categorical input trained on integer codes (no list in the file): a reference column of
  integers makes it an input whose events carry the code itself (served as a number, which
  is what LightGBM was given); a pandas ``category`` column gives the map by its order (the
  codes ``cat.codes`` gives); a boolean column the codes 0 and 1; strings are refused, since
  nothing says which string had which code;
- a numeric input: a number column, or a boolean one (a two-valued input, ``false`` 0 and
  ``true`` 1 as LightGBM reads a bool column); strings or categories are refused.

A feature the table lacks is refused, all of them named at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scoring.errors import ModelRefused
from scoring.model.features import BOOLEAN_CATEGORIES, Feature, FeatureKind, FeatureSpec
from scoring.model.model_file import ModelFile, category_text, pandas_features

FROM_FILE = "the model file's pandas_categorical"
FROM_REFERENCE = "the reference table's category order (integer codes)"
INTEGER_CODES = "the events' own integer codes"
BOOLEAN = "false 0, true 1"


@dataclass
class Encoding:
    """Where each input's codes come from, as ``Origin`` records it."""

    pandas_categorical: list[str] | None = None
    integer_codes: list[str] = field(default_factory=list)
    categories: dict[str, str] = field(default_factory=dict)


def spec_from_model(model: ModelFile, reference: pd.DataFrame) -> tuple[FeatureSpec, Encoding]:
    """The spec serving ``model`` and its encoding; ``ModelRefused`` naming the first input that cannot be."""
    missing = [n for n in model.feature_names if n not in reference.columns]
    if missing:
        raise ModelRefused(
            f"the reference table lacks the model's inputs {missing} (it has {list(reference.columns)[:12]})"
        )
    lists = dict(zip(_pandas_positions(model, reference), model.pandas_categorical or [], strict=True))
    encoding = Encoding(
        pandas_categorical=[model.feature_names[j] for j in lists] if model.pandas_categorical else None
    )
    features = []
    for j, name in enumerate(model.feature_names):
        column = reference[name]
        if j in lists:
            feature = _listed(name, column, lists[j])
            encoding.categories[name] = FROM_FILE
        elif j in model.categorical:
            feature = _coded(name, column, model.categorical[j], encoding)
        else:
            feature = _numeric(name, column)
        features.append(feature.model_copy(update={"required": not bool(column.isna().any())}))
    return FeatureSpec(features=features), encoding


def _pandas_positions(model: ModelFile, reference: pd.DataFrame) -> list[int]:
    """The inputs ``pandas_categorical`` encodes: the model's categorical inputs when they are as many
    (LightGBM's default), else the reference's ``category`` columns, which a Parquet file keeps."""
    lists = model.pandas_categorical or []
    if not lists or len(lists) == len(model.categorical):
        return pandas_features(model, None)
    typed = [
        j for j, n in enumerate(model.feature_names) if isinstance(reference[n].dtype, pd.CategoricalDtype)
    ]
    if len(typed) != len(lists):
        raise ModelRefused(
            f"the model file lists {len(lists)} pandas category columns but has {len(model.categorical)} "
            "categorical inputs: give the reference table as Parquet with those columns as pandas categories"
        )
    return typed


def _listed(name: str, column: pd.Series, categories: list[str]) -> Feature:
    if isinstance(column.dtype, pd.CategoricalDtype):
        own = [category_text(c) for c in column.cat.categories]
        if own != categories:
            raise ModelRefused(
                f"column {name!r}: its categories {own[:8]} are not the model's {categories[:8]} "
                "(pandas_categorical in the model file; the order is the encoding)"
            )
    elif _is_bool(column) or pd.api.types.is_numeric_dtype(column):
        raise ModelRefused(
            f"column {name!r} holds {_kind(column)}, the model's categories are {categories[:8]} "
            "(events name a category as a string)"
        )
    return Feature(name=name, kind=FeatureKind.categorical, categories=list(categories))


def _coded(name: str, column: pd.Series, highest: int, encoding: Encoding) -> Feature:
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = [category_text(c) for c in column.cat.categories]
        source = FROM_REFERENCE
    elif _is_bool(column):
        categories, source = list(BOOLEAN_CATEGORIES), BOOLEAN
    elif pd.api.types.is_numeric_dtype(column) and _whole(column):
        encoding.integer_codes.append(name)
        encoding.categories[name] = INTEGER_CODES
        return _numeric(name, column)
    else:
        raise ModelRefused(
            f"column {name!r} holds {_kind(column)}; the model treats it as categorical, trained on integer "
            "codes, and its file does not say which value had which code: give the codes, or a pandas "
            "category column in the codes' order (Parquet keeps it)"
        )
    if highest >= len(categories):
        raise ModelRefused(
            f"column {name!r}: the model splits on category code {highest}, the reference has only "
            f"{len(categories)} categories {categories[:8]}"
        )
    encoding.categories[name] = source
    return Feature(name=name, kind=FeatureKind.categorical, categories=categories)


def _numeric(name: str, column: pd.Series) -> Feature:
    if _is_bool(column):
        return Feature(name=name, kind=FeatureKind.categorical, categories=list(BOOLEAN_CATEGORIES))
    if isinstance(column.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(column):
        raise ModelRefused(f"column {name!r} holds {_kind(column)}, the model takes it as a number")
    values = column.astype(float)
    present = values.dropna()
    if not np.isfinite(present).all():
        raise ModelRefused(f"column {name!r} holds infinite values")
    bounds = {"min": float(present.min()), "max": float(present.max())} if len(present) else {}
    return Feature(name=name, kind=FeatureKind.numeric, **bounds)


def _is_bool(column: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(column):
        return True
    present = column.dropna()
    return (
        pd.api.types.is_object_dtype(column)
        and len(present) > 0
        and all(isinstance(v, bool | np.bool_) for v in present)
    )


def _whole(column: pd.Series) -> bool:
    present = column.dropna().astype(float)
    return bool(((present >= 0) & (present == np.floor(present))).all())


def _kind(column: pd.Series) -> str:
    if isinstance(column.dtype, pd.CategoricalDtype):
        return "pandas categories"
    if _is_bool(column):
        return "booleans"
    if pd.api.types.is_numeric_dtype(column):
        return "numbers"
    sample = column.dropna().astype(str).head(3).tolist()
    return f"strings ({', '.join(map(repr, sample))})" if sample else "no values"
