"""Train a LightGBM model from a table and write it as a bundle."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from scoring.errors import TrainingError
from scoring.metrics.holdout import binary_metrics, regression_metrics
from scoring.model.bundle import ModelBundle, Task, new_metadata
from scoring.model.calibration import fit_calibration
from scoring.model.features import FeatureSpec
from scoring.model.loss_models import fit_loss_models
from scoring.model.reference import build_reference
from scoring.offline.tables import read_table

Progress = Callable[[int, int], None]

__all__ = ["frame_sha256", "holdout_split", "read_table", "train_bundle"]

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
    num_trees: int = 100,
    num_leaves: int = 31,
    holdout: float = 0.2,
    seed: int = 0,
    progress: Progress | None = None,
    spec: FeatureSpec | None = None,
) -> ModelBundle:
    """Infer the feature spec (unless given), train on a random split, measure the holdout, and save.

    ``out_dir`` None keeps the bundle in memory only (tests, benchmarks). Retraining
    passes the live model's ``spec`` so the new version takes exactly its inputs.
    The holdout also fits what estimates performance before labels arrive: a
    calibrator of the scores (binary) or loss models (regression); a holdout too
    small for them leaves them out.
    """
    task_kind = Task(task)
    frame, y = _labelled(frame, target, task_kind)
    features = frame.drop(columns=[target])
    spec = spec or FeatureSpec.infer(features)
    check_feature_names(spec.names)
    matrix = spec.encode_frame(features)

    test_idx, train_idx = holdout_split(len(frame), holdout, seed)

    booster = _fit(matrix[train_idx], y[train_idx], spec, task_kind, num_trees, num_leaves, seed, progress)
    scores = np.asarray(booster.predict(matrix[test_idx]), dtype=float)
    metrics = (
        binary_metrics(y[test_idx], scores)
        if task_kind is Task.binary
        else regression_metrics(y[test_idx], scores)
    )
    metrics["holdout_rows"] = float(len(test_idx))
    metrics["train_rows"] = float(len(train_idx))

    bundle = ModelBundle(
        path=None,
        booster=booster,
        spec=spec,
        reference=build_reference(spec, matrix[train_idx], scores),
        metrics=metrics,
        metadata=new_metadata(name, version, task_kind, frame_sha256(frame), target),
        **_estimators(task_kind, matrix[test_idx], y[test_idx], scores, spec, seed),
    )
    if out_dir is not None:
        bundle.save(Path(out_dir))
        return ModelBundle.load(out_dir)
    return bundle


def _labelled(frame: pd.DataFrame, target: str, task: Task) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows with a target, and the target as floats; ``TrainingError`` when it is unusable."""
    if target not in frame.columns:
        raise TrainingError(f"target column {target!r} not in {list(frame.columns)}")
    frame = frame.dropna(subset=[target]).reset_index(drop=True)
    if len(frame) < 10:
        raise TrainingError(f"need at least 10 labelled rows, got {len(frame)}")
    try:
        y = frame[target].to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"target {target!r} must be numeric (0/1 for binary): {exc}") from None
    if task is Task.binary and not set(np.unique(y)) <= {0.0, 1.0}:
        raise TrainingError(f"binary target {target!r} must hold only 0 and 1")
    return frame, y


def _fit(
    rows: np.ndarray,
    labels: np.ndarray,
    spec: FeatureSpec,
    task: Task,
    num_trees: int,
    num_leaves: int,
    seed: int,
    progress: Progress | None,
) -> lgb.Booster:
    """A deterministic LightGBM booster on the training rows, its inputs named as the spec's."""
    params = {
        "objective": "binary" if task is Task.binary else "regression",
        "num_leaves": num_leaves,
        "learning_rate": 0.1,
        "min_data_in_leaf": 20,
        "seed": seed,
        "deterministic": True,
        "num_threads": 2,
        "verbosity": -1,
    }
    train_set = lgb.Dataset(
        rows,
        label=labels,
        feature_name=spec.names,
        categorical_feature=spec.categorical_indices or "auto",
        free_raw_data=False,
    )
    callbacks = []
    if progress is not None:
        callbacks.append(lambda env: progress(env.iteration + 1, env.end_iteration))
    booster = lgb.train(params, train_set, num_boost_round=num_trees, callbacks=callbacks)
    if booster.feature_name() != spec.names:
        raise TrainingError(f"LightGBM renamed the features {spec.names} to {booster.feature_name()}")

    return booster


def _estimators(
    task: Task, rows: np.ndarray, labels: np.ndarray, scores: np.ndarray, spec: FeatureSpec, seed: int
) -> dict:
    """What the holdout fits for estimating performance without labels (``ModelBundle`` fields)."""
    if task is Task.binary:
        return {"calibration": fit_calibration(scores, labels, seed)}
    return {"loss_models": fit_loss_models(rows, labels, scores, spec, seed)}
