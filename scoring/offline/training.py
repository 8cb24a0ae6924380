"""Train a LightGBM model from a table and write it as a bundle.

The rows are split once: a holdout (``holdout``, 20%) that only measures and fits the
estimators, and the rest; with early stopping a ``validation`` share of the rest picks the
best iteration, and the booster keeps the trees up to it. The parameters are the defaults of
``scoring.offline.params`` under whatever the caller gives; the bundle's metadata records what
was used (``TrainingRun``) and where the model came from (``Origin``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from scoring.errors import TrainingError
from scoring.metrics.holdout import binary_metrics, multiclass_metrics, regression_metrics
from scoring.model.bundle import ModelBundle, Origin, Task, TrainingRun, new_metadata
from scoring.model.calibration import fit_calibration, fit_class_calibration
from scoring.model.features import FeatureSpec
from scoring.model.loss_models import fit_loss_models
from scoring.model.metadata import class_text
from scoring.model.model_file import read_model_file
from scoring.model.reference import build_reference
from scoring.offline.params import training_params
from scoring.offline.tables import read_table
from scoring.offline.targets import class_labels

Progress = Callable[[int, int], None]

__all__ = ["frame_sha256", "holdout_metrics", "holdout_split", "read_table", "train_bundle"]

# LightGBM replaces whitespace in a feature name with "_" and refuses JSON punctuation: a bundle whose
# model names its inputs otherwise than the events do cannot load, so such a column is refused
REWRITTEN = re.compile(r'[\s",:\[\]{}]')


def frame_sha256(frame: pd.DataFrame) -> str:
    """A stable digest of the training data, recorded in the bundle metadata."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest = hashlib.sha256(hashed.tobytes())
    digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()


def holdout_split(n: int, holdout: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(holdout rows, training rows) of ``train_bundle``'s random split, for the same n and seed."""
    order = np.random.default_rng(seed).permutation(n)
    n_holdout = max(1, int(n * holdout))
    return order[:n_holdout], order[n_holdout:]


def check_feature_names(names: list[str]) -> None:
    """``TrainingError`` naming the first column LightGBM would rename or refuse, and what to call it."""
    for name in names:
        found = sorted(set(REWRITTEN.findall(name)))
        if not name or found:
            better = REWRITTEN.sub("_", name) or "x"
            raise TrainingError(
                f"feature column {name!r} has {' '.join(map(repr, found)) or 'no name'}, which LightGBM "
                f"rewrites or refuses, so its bundle would not load: rename the column (e.g. {better!r})"
            )


def train_bundle(
    frame: pd.DataFrame,
    target: str,
    out_dir: Path | None = None,
    task: str = "binary",
    name: str = "model",
    version: str = "1",
    num_trees: int | None = None,
    num_leaves: int | None = None,
    holdout: float = 0.2,
    seed: int = 0,
    progress: Progress | None = None,
    spec: FeatureSpec | None = None,
    params: dict | None = None,
    early_stopping_rounds: int | None = None,
    validation: float = 0.1,
    classes: Sequence[str | int] | None = None,
) -> ModelBundle:
    """Infer the feature spec (unless given), train on a random split, measure the holdout, and save.

    ``out_dir`` None keeps the bundle in memory only (tests, benchmarks). Retraining
    passes the live model's ``spec`` so the new version takes exactly its inputs.
    ``params`` are LightGBM parameters over the defaults; ``num_trees`` the round limit
    (100 when neither sets one); ``early_stopping_rounds`` stops after that many rounds
    without improvement on a ``validation`` share of the training rows.
    The holdout also fits what estimates performance before labels arrive: a
    calibrator of the scores (binary) or loss models (regression); a holdout too
    small for them leaves them out (and a multiclass model has none yet).
    A multiclass target holds class names, strings or integers: the bundle records them
    sorted (``scoring.offline.targets``), and the model's class ``k`` is the ``k``-th; ``classes``
    given (a retrain of a live model) keep their order, and every target value must be one of them.
    """
    task_kind = Task(task)
    given = dict(params or {})
    if num_leaves is not None:
        given.setdefault("num_leaves", num_leaves)
    given_classes = classes
    frame, y, classes = _labelled(frame, target, task_kind, given_classes)
    lgb_params, rounds = training_params(given, task_kind, seed, num_trees, len(classes or ()) or None)
    if early_stopping_rounds is not None and not (early_stopping_rounds >= 1 and 0 < validation < 1):
        raise TrainingError(
            f"early stopping needs rounds >= 1 and a validation share in (0, 1), got "
            f"{early_stopping_rounds} and {validation}"
        )
    features = frame.drop(columns=[target])
    spec = spec or FeatureSpec.infer(features)
    check_feature_names(spec.names)
    matrix = spec.encode_frame(features)

    test_idx, train_idx = holdout_split(len(frame), holdout, seed)
    valid_idx = train_idx[:0]
    if early_stopping_rounds is not None:
        inner_valid, inner_train = holdout_split(len(train_idx), validation, seed + 1)
        valid_idx, train_idx = train_idx[inner_valid], train_idx[inner_train]
    booster = _fit(
        matrix, y, (train_idx, valid_idx), spec, lgb_params, rounds, early_stopping_rounds, progress
    )
    scores = np.asarray(booster.predict(matrix[test_idx]), dtype=float)
    metrics = holdout_metrics(task_kind, y[test_idx], scores)
    metrics["holdout_rows"] = float(len(test_idx))
    metrics["train_rows"] = float(len(train_idx))
    run = TrainingRun(
        params=lgb_params,
        num_boost_round=rounds,
        early_stopping_rounds=early_stopping_rounds,
        validation_share=validation if early_stopping_rounds is not None else 0.0,
        best_iteration=booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration(),
        rows={"train": len(train_idx), "validation": len(valid_idx), "holdout": len(test_idx)},
    )
    described = read_model_file(booster.model_to_string())
    origin = Origin(
        objective=described.objective,
        num_class=described.num_class,
        classes_from=None
        if classes is None
        else "given, in that order"
        if given_classes is not None
        else f"the sorted values of the target column {target!r}",
    )
    bundle = ModelBundle(
        path=None,
        booster=booster,
        spec=spec,
        reference=build_reference(spec, matrix[train_idx], scores, tuple(map(str, classes or ()))),
        metrics=metrics,
        metadata=new_metadata(name, version, task_kind, frame_sha256(frame), target, origin, run, classes),
        **_estimators(task_kind, matrix[test_idx], y[test_idx], scores, spec, seed, classes),
    )
    if out_dir is not None:
        bundle.save(Path(out_dir))
        return ModelBundle.load(out_dir)
    return bundle


def _labelled(
    frame: pd.DataFrame, target: str, task: Task, classes: Sequence[str | int] | None = None
) -> tuple[pd.DataFrame, np.ndarray, list | None]:
    """The rows with a target, the target as floats (class indices for multiclass) and a multiclass
    model's class names (``classes`` when given); ``TrainingError`` when it is unusable."""
    if target not in frame.columns:
        raise TrainingError(f"target column {target!r} not in {list(frame.columns)}")
    frame = frame.dropna(subset=[target]).reset_index(drop=True)
    if len(frame) < 10:
        raise TrainingError(f"need at least 10 labelled rows, got {len(frame)}")
    if task is Task.multiclass:
        try:
            classes, index = class_labels(frame[target], classes)
        except ValueError as exc:
            raise TrainingError(f"multiclass target {target!r}: {exc}") from None
        return frame, index.astype(float), classes
    try:
        y = frame[target].to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"target {target!r} must be numeric (0/1 for binary): {exc}") from None
    if task is Task.binary and not set(np.unique(y)) <= {0.0, 1.0}:
        raise TrainingError(f"binary target {target!r} must hold only 0 and 1")
    return frame, y, None


def holdout_metrics(task: Task, y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The holdout metrics of a model of ``task``: the one place ``train`` and ``model import`` pick them."""
    if task is Task.binary:
        return binary_metrics(y, scores)
    if task is Task.multiclass:
        return multiclass_metrics(y.astype(int), scores)
    return regression_metrics(y, scores)


def _fit(
    matrix: np.ndarray,
    labels: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray],
    spec: FeatureSpec,
    params: dict,
    rounds: int,
    early_stopping_rounds: int | None,
    progress: Progress | None,
) -> lgb.Booster:
    """A LightGBM booster on the training rows (early stopped on the validation rows), its inputs named
    as the spec's."""
    train_idx, valid_idx = rows

    def dataset(idx: np.ndarray, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        return lgb.Dataset(
            matrix[idx],
            label=labels[idx],
            feature_name=spec.names,
            categorical_feature=spec.categorical_indices or "auto",
            free_raw_data=False,
            reference=reference,
        )

    train_set = dataset(train_idx)
    callbacks = []
    if progress is not None:
        callbacks.append(lambda env: progress(env.iteration + 1, env.end_iteration))
    valid_sets = []
    if early_stopping_rounds is not None:
        valid_sets = [dataset(valid_idx, train_set)]
        callbacks.append(lgb.early_stopping(early_stopping_rounds, verbose=False))
    try:
        booster = lgb.train(
            params, train_set, num_boost_round=rounds, valid_sets=valid_sets, callbacks=callbacks
        )
    except lgb.basic.LightGBMError as exc:
        raise TrainingError(f"LightGBM refused the parameters or data: {exc}") from None
    if booster.feature_name() != spec.names:
        raise TrainingError(f"LightGBM renamed the features {spec.names} to {booster.feature_name()}")

    return booster


def _estimators(
    task: Task,
    rows: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    spec: FeatureSpec,
    seed: int,
    classes: list | tuple | None = None,
) -> dict:
    """What the holdout fits for estimating performance without labels (``ModelBundle`` fields)."""
    if task is Task.binary:
        return {"calibration": fit_calibration(scores, labels, seed)}
    if task is Task.multiclass:
        names = tuple(class_text(c) for c in classes or ())
        return {"class_calibration": fit_class_calibration(scores, labels, names, seed)}
    return {"loss_models": fit_loss_models(rows, labels, scores, spec, seed)}
