"""Import a LightGBM model trained elsewhere as a bundle: the same kind ``train`` writes.

``import_model(model, reference)`` takes a ``lightgbm.Booster`` or a fitted scikit-learn
LightGBM estimator (its ``booster_``) and a table of the model's inputs (a sample of its
training or validation data); ``import_model_file(path, reference)`` reads the text file
``Booster.save_model`` writes. The bundle keeps the model as it is (no retraining) and takes:

- the spec from the model's own inputs and category codes (``scoring.offline.import_spec``);
- drift references from the table's rows and the model's scores on them;
- with ``target``: metrics on those labelled rows, and the calibrator (binary) or loss models
  (regression) that estimate performance before labels; without, none, and
  ``ModelBundle.estimation_note`` says why;
- for a multiclass model (``multiclass``, ``multiclassova``), its class names in its order: ``classes``
  as given; else a scikit-learn estimator's own ``classes_``; else, with ``target``, the sorted
  distinct values of that column (the order ``LabelEncoder`` and ``LGBMClassifier`` give codes in);
  else the class indices 0 .. K-1.

Before anything is written the encoded rows are scored and, where LightGBM takes the table as
it is (pandas ``category``, numbers, booleans), compared with LightGBM's own predict on it: an
encoding that would change a score is refused. Every refusal is a ``ModelRefused`` naming what
to change; nothing is written then.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from schemas.keys import Task
from scoring.errors import ModelRefused
from scoring.model.bundle import ModelBundle, Origin, new_metadata
from scoring.model.calibration import fit_calibration, fit_class_calibration
from scoring.model.loss_models import fit_loss_models
from scoring.model.metadata import class_text, classes_problem
from scoring.model.model_file import read_model_file, task_of_objective
from scoring.model.reference import build_reference
from scoring.offline.import_spec import spec_from_model
from scoring.offline.targets import class_labels
from scoring.offline.training import frame_sha256, holdout_metrics

AGREE_TOLERANCE = 1e-12  # encoded rows vs LightGBM's own predict on the table

__all__ = ["import_model", "import_model_file"]


def import_model_file(path: Path | str, reference: pd.DataFrame, **options: Any) -> ModelBundle:
    """``import_model`` of the LightGBM text model at ``path``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelRefused(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelRefused(f"{path} is a directory; give the file Booster.save_model wrote") from None
    what = f"{path} is not a LightGBM text model (the file Booster.save_model writes)"
    try:
        text = data.decode()
        read_model_file(text)
    except UnicodeDecodeError:
        raise ModelRefused(f"{what}: it is binary (a pickle or joblib file?)") from None
    except ValueError as exc:
        raise ModelRefused(f"{what}: {exc}") from None
    try:
        booster = lgb.Booster(model_str=text)
    except lgb.basic.LightGBMError as exc:
        raise ModelRefused(f"{what}: LightGBM cannot load it: {exc}") from None
    source = f"{path.name} sha256:{hashlib.sha256(data).hexdigest()}"
    return import_model(booster, reference, source=source, **options)


def import_model(
    model: Any,
    reference: pd.DataFrame,
    out_dir: Path | str | None = None,
    target: str | None = None,
    task: Task | str | None = None,
    name: str = "model",
    version: str = "1",
    source: str | None = None,
    seed: int = 0,
    classes: list[str | int] | None = None,
) -> ModelBundle:
    """A bundle serving ``model`` exactly, with references (and, given ``target``, metrics and estimators)
    from ``reference``; saved to ``out_dir`` (and loaded back from it) when given. ``classes``: a
    multiclass model's class names in its order (see the module's docstring for the default)."""
    booster = _booster(model)
    text = booster.model_to_string()
    try:
        described = read_model_file(text)
    except ValueError as exc:
        raise ModelRefused(f"the model is not a LightGBM text model: {exc}") from None
    task_kind = task_of_objective(described.objective, task)
    if classes is not None and task_kind is not Task.multiclass:
        raise ModelRefused(f"class names are for a multiclass model; this one is {task_kind.value}")
    if classes is None and task_kind is Task.multiclass:
        classes = _estimator_classes(model)
    if target is not None and target not in reference.columns:
        raise ModelRefused(
            f"no target column {target!r} in the reference table ({list(reference.columns)[:12]})"
        )
    if target is not None:
        reference = reference.dropna(subset=[target]).reset_index(drop=True)
    if len(reference) == 0:
        raise ModelRefused("the reference table has no rows" + (f" with a {target!r}" if target else ""))
    features = reference[[n for n in described.feature_names if n in reference.columns]]
    spec, encoding = spec_from_model(described, features)
    matrix = spec.encode_frame(features)
    scores = np.asarray(booster.predict(matrix), dtype=np.float64)
    _check_same_scores(booster, features, scores)
    metrics: dict[str, float] = {"reference_rows": float(len(reference))}
    estimators: dict[str, Any] = {}
    classes_from = None
    if task_kind is Task.multiclass:
        classes, classes_from = _classes(described.num_class, classes, reference, target)
    if target is not None:
        y = _labels(reference[target], target, task_kind, classes)
        metrics.update(holdout_metrics(task_kind, y, scores))
        if task_kind is Task.binary:
            estimators = {"calibration": fit_calibration(scores, y, seed)}
        elif task_kind is Task.regression:
            estimators = {"loss_models": fit_loss_models(matrix, y, scores, spec, seed)}
        else:
            names = tuple(class_text(c) for c in classes or ())
            estimators = {"class_calibration": fit_class_calibration(scores, y, names, seed)}
    origin = Origin(
        made_by="import",
        objective=described.objective,
        num_class=described.num_class,
        pandas_categorical=encoding.pandas_categorical,
        integer_codes=encoding.integer_codes,
        categories=encoding.categories,
        classes_from=classes_from,
        source=source,
        labelled=target is not None,
    )
    names = tuple(str(c) for c in classes or ())
    bundle = ModelBundle(
        path=None,
        booster=booster,
        spec=spec,
        reference=build_reference(spec, matrix, scores, names),
        metrics=metrics,
        metadata=new_metadata(
            name, version, task_kind, frame_sha256(reference), target or "label", origin, None, classes
        ),
        **estimators,
    )
    if out_dir is None:
        return bundle
    bundle.save(Path(out_dir))
    return ModelBundle.load(out_dir)


def _booster(model: Any) -> lgb.Booster:
    """The Booster of ``model``: itself, or a fitted scikit-learn LightGBM estimator's ``booster_``."""
    if isinstance(model, lgb.Booster):
        return model
    if hasattr(model, "steps"):
        raise ModelRefused(
            "a scikit-learn Pipeline: import its LightGBM step (pipeline[-1]) with a reference table of "
            "what that step takes (pipeline[:-1].transform(data)); events then carry those inputs"
        )
    if isinstance(model, lgb.LGBMModel):
        try:
            return model.booster_
        except (AttributeError, ValueError) as exc:  # LightGBM's not-fitted error is both
            raise ModelRefused(f"the {type(model).__name__} is not fitted: {exc}") from None
    raise ModelRefused(
        f"expected a lightgbm.Booster or a fitted LightGBM scikit-learn estimator, got {type(model).__name__}"
    )


def _check_same_scores(booster: lgb.Booster, features: pd.DataFrame, scores: np.ndarray) -> None:
    """Where LightGBM takes the table as it is, its own scores must be the encoded rows' scores."""
    typed = all(
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_numeric_dtype(dtype)
        or pd.api.types.is_bool_dtype(dtype)
        for dtype in features.dtypes
    )
    if not typed:
        return  # strings: LightGBM itself refuses such a frame, there is nothing to compare with
    try:
        own = np.asarray(booster.predict(features), dtype=np.float64)
    except (ValueError, lgb.basic.LightGBMError):  # e.g. category columns for a model trained on codes
        return
    worst = float(np.nanmax(np.abs(own - scores))) if len(scores) else 0.0
    if not worst <= AGREE_TOLERANCE:
        raise ModelRefused(
            f"scoring the reference rows as events differs from LightGBM's own predict by up to {worst:.3g}: "
            "the encoding does not match the model's; this is a bug, please report it with the model"
        )


def _estimator_classes(model: Any) -> list[str | int] | None:
    """A fitted scikit-learn classifier's ``classes_`` (its own map of codes to names), as Python values."""
    own = getattr(model, "classes_", None) if not isinstance(model, lgb.Booster) else None
    return None if own is None else [v.item() if isinstance(v, np.generic) else v for v in own]


def _classes(
    num_class: int, given: list[str | int] | None, reference: pd.DataFrame, target: str | None
) -> tuple[list[str | int], str]:
    """A multiclass model's class names in its order, and where they come from."""
    if given is not None:
        problem = classes_problem(given)
        if problem is not None or len(given) != num_class:
            why = problem or f"{len(given)} names for a {num_class}-class model"
            raise ModelRefused(f"the class names {list(given)[:8]} cannot name this model's classes: {why}")
        return list(given), "given (--classes, or the estimator's classes_)"
    if target is None:
        return list(range(num_class)), "the class indices (no --classes, no --target)"
    try:
        found, _ = class_labels(reference[target])
    except ValueError as exc:
        raise ModelRefused(f"target {target!r}: {exc}") from None
    if len(found) != num_class:
        raise ModelRefused(
            f"target {target!r} holds {len(found)} distinct classes {found[:8]}, the model has {num_class}: "
            "give the class names in the model's order with --classes a,b,c"
        )
    return found, f"the sorted values of the target column {target!r}"


def _labels(column: pd.Series, target: str, task: Task, classes: list[str | int] | None) -> np.ndarray:
    if task is Task.multiclass:
        try:
            _, index = class_labels(column, classes)
        except ValueError as exc:
            raise ModelRefused(f"target {target!r}: {exc}") from None
        if len(index) < 10:
            raise ModelRefused(f"need at least 10 labelled rows for metrics, got {len(index)}")
        return index.astype(float)
    try:
        y = column.to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise ModelRefused(f"target {target!r} must be numeric (0/1 for binary)") from None
    if task is Task.binary and not set(np.unique(y)) <= {0.0, 1.0}:
        raise ModelRefused(f"binary target {target!r} must hold only 0 and 1")
    if len(y) < 10:
        raise ModelRefused(f"need at least 10 labelled rows for metrics, got {len(y)}")
    return y
