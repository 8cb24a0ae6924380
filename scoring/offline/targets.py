"""A multiclass target column as class names and class indices, for ``train`` and ``model import``.

The class names are the column's values, strings or integers (a column of whole numbers read as
floats, as pandas reads integers with gaps, counts as integers). Without names given, the classes
are the sorted distinct values: the order scikit-learn's ``LabelEncoder`` and ``LGBMClassifier``
use, so class ``k`` of a model trained on those codes is the ``k``-th name. Names given (``--classes``)
keep their order, and every value of the column must be one of them.

>>> import pandas as pd
>>> classes, y = class_labels(pd.Series(["support", "billing", "fraud", "billing"]))
>>> classes, y.tolist()
(['billing', 'fraud', 'support'], [2, 0, 1, 0])
>>> class_labels(pd.Series([3.0, 1.0, 3.0]))[0]
[1, 3]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from scoring.model.metadata import class_lookup, class_text, classes_problem


def class_labels(column: pd.Series, classes: Sequence[str | int] | None = None) -> tuple[list, np.ndarray]:
    """(the class names, each row's class index); ``ValueError`` saying what is wrong with the column.

    ``column`` holds no missing values (the caller drops those rows).
    """
    values = _names(column)
    classes = sorted(set(values)) if classes is None else list(classes)
    problem = classes_problem(classes)
    if problem is not None:
        raise ValueError(problem)
    lookup = class_lookup(classes)
    index = [lookup.get(class_text(v), -1) for v in values]
    if -1 in index:
        stray = values[index.index(-1)]
        raise ValueError(f"it holds {stray!r}, not one of the classes {classes[:8]}")
    return classes, np.asarray(index, dtype=np.int64)


def parse_classes(text: str) -> list[str | int]:
    """``--classes a,b,c`` as names; all integers (``0,1,2``) as integers, as a target column of them."""
    names = [part.strip() for part in text.split(",")]
    if all(_integer(n) for n in names):
        return [int(n) for n in names]
    return names


def _integer(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _names(column: pd.Series) -> list:
    if pd.api.types.is_bool_dtype(column):
        raise ValueError("it holds booleans: a model of two classes is binary (--task binary)")
    if pd.api.types.is_numeric_dtype(column):
        numbers = column.to_numpy(dtype=float)
        if not np.all(np.isfinite(numbers) & (numbers == np.floor(numbers))):
            bad = numbers[~(np.isfinite(numbers) & (numbers == np.floor(numbers)))][0]
            raise ValueError(f"class names are strings or integers, it holds {float(bad)!r}")
        return [int(v) for v in numbers]
    values = column.tolist()
    kinds = {type(v) for v in values}
    if not kinds <= {str}:
        shown = sorted(k.__name__ for k in kinds)
        raise ValueError(f"class names are all strings or all integers, it holds {shown}")
    return values
