"""Direct loss estimation for regression: two small LightGBM models of the serving model's error.

At training, the holdout is split in two halves (seeded). On the first ("fit") half
one LightGBM learns the absolute error ``|y - prediction|`` and one the squared
error, both from the features plus the model's prediction as one more column. On
the second ("check") half they are measured: the estimated against the realized MAE
and RMSE over the whole half (``*_relative_error``), and over chunks of
``chunk_rows`` rows the spread of ``realized / estimated - 1`` (``*_sd_relative``),
which is the sampling uncertainty a window of that size gets, scaled by
``sqrt(chunk_rows / n)`` for a window of ``n`` events. Nothing is refitted after
the check, so the figures are those of the stored models.

Files in the bundle: ``loss_abs.txt`` and ``loss_sq.txt`` (LightGBM text models)
and ``loss_models.json`` (this summary).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from schemas.messages import FiniteFloat
from scoring.model.features import FeatureSpec

ABS_FILE = "loss_abs.txt"
SQ_FILE = "loss_sq.txt"
INFO_FILE = "loss_models.json"
FILES = (INFO_FILE, ABS_FILE, SQ_FILE)
PREDICTION_COLUMN = "model_prediction"
MIN_ROWS = 100  # fewer holdout rows than this: no loss models
CHUNKS = 10  # the check half is cut into this many chunks for the sampling spread
LOSS_PARAMS = {
    "objective": "regression",
    "num_leaves": 15,
    "learning_rate": 0.05,
    "min_data_in_leaf": 20,
    "deterministic": True,
    "num_threads": 2,
    "verbosity": -1,
}
LOSS_TREES = 100


class LossSummary(BaseModel):
    """How the loss models were fitted and how well they estimated on the check half."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = "dle"
    feature_names: list[str] = Field(description="the spec's features, then the prediction column")
    fit_rows: int
    check_rows: int
    chunk_rows: int
    mae_sd_relative: FiniteFloat = Field(ge=0, description="sd of realized/estimated - 1 over check chunks")
    rmse_sd_relative: FiniteFloat = Field(ge=0)
    mae_relative_error: FiniteFloat = Field(description="realized/estimated - 1 over the whole check half")
    rmse_relative_error: FiniteFloat

    def summary(self) -> dict[str, float | int | str]:
        """What the manifest records about the loss models."""
        return {
            "kind": "loss_models",
            "method": self.method,
            "fit_rows": self.fit_rows,
            "check_rows": self.check_rows,
            "mae_relative_error": round(self.mae_relative_error, 6),
            "rmse_relative_error": round(self.rmse_relative_error, 6),
        }


@dataclass(frozen=True)
class LossModels:
    """The absolute-error and squared-error models, with their summary."""

    absolute: lgb.Booster
    squared: lgb.Booster
    info: LossSummary

    def expected_losses(self, rows: np.ndarray, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per event, the expected absolute and squared error (clipped at 0)."""
        return _predict(self.absolute, self.squared, with_prediction(rows, predictions))

    def files(self) -> dict[str, bytes]:
        """The bundle files of the loss models."""
        return {
            INFO_FILE: self.info.model_dump_json(indent=2).encode(),
            ABS_FILE: self.absolute.model_to_string().encode(),
            SQ_FILE: self.squared.model_to_string().encode(),
        }

    @classmethod
    def from_files(cls, contents: dict[str, bytes], spec: FeatureSpec) -> LossModels:
        """Loss models from their bundle files; ValueError (and LightGBM's errors) when they do not fit."""
        info = LossSummary.model_validate_json(contents[INFO_FILE])
        absolute = lgb.Booster(model_str=contents[ABS_FILE].decode())
        squared = lgb.Booster(model_str=contents[SQ_FILE].decode())
        if info.feature_names[:-1] != spec.names:
            raise ValueError(f"loss models take {info.feature_names[:-1]}, the spec {spec.names}")
        for booster in (absolute, squared):
            if booster.feature_name() != info.feature_names:
                raise ValueError(f"a loss model takes {booster.feature_name()}, not {info.feature_names}")
        return cls(absolute, squared, info)


def _predict(
    absolute: lgb.Booster, squared: lgb.Booster, inputs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Expected absolute and squared errors; a loss model's rare negative output is clipped to 0."""
    abs_hat = np.asarray(absolute.predict(inputs, num_threads=1), dtype=np.float64)
    sq_hat = np.asarray(squared.predict(inputs, num_threads=1), dtype=np.float64)
    return np.maximum(abs_hat, 0.0), np.maximum(sq_hat, 0.0)


def with_prediction(rows: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    return np.column_stack([rows, np.asarray(predictions, dtype=np.float64).reshape(len(rows))])


def fit_loss_models(
    rows: np.ndarray, labels: np.ndarray, predictions: np.ndarray, spec: FeatureSpec, seed: int = 0
) -> LossModels | None:
    """Loss models from the holdout (encoded rows, targets, the model's predictions); None if too few rows."""
    labels = np.asarray(labels, dtype=np.float64)
    if len(labels) < MIN_ROWS:
        return None
    inputs = with_prediction(rows, predictions)
    error = labels - np.asarray(predictions, dtype=np.float64)
    order = np.random.default_rng(seed).permutation(len(labels))
    fit, check = order[: len(order) // 2], order[len(order) // 2 :]
    names = [*spec.names, _free_name(spec.names)]
    boosters = [
        _train(inputs[fit], target[fit], names, spec.categorical_indices, seed)
        for target in (np.abs(error), error**2)
    ]
    est_abs, est_sq = _predict(boosters[0], boosters[1], inputs[check])
    real_abs, real_sq = np.abs(error[check]), error[check] ** 2
    chunk_rows = len(check) // CHUNKS
    info = LossSummary(
        feature_names=names,
        fit_rows=len(fit),
        check_rows=len(check),
        chunk_rows=chunk_rows,
        mae_sd_relative=_chunk_sd(est_abs, real_abs, chunk_rows, np.mean),
        rmse_sd_relative=_chunk_sd(est_sq, real_sq, chunk_rows, lambda v: np.sqrt(np.mean(v))),
        mae_relative_error=_relative(real_abs.mean(), est_abs.mean()),
        rmse_relative_error=_relative(np.sqrt(real_sq.mean()), np.sqrt(est_sq.mean())),
    )
    return LossModels(boosters[0], boosters[1], info)


def _train(
    inputs: np.ndarray, target: np.ndarray, names: list[str], categorical: list[int], seed: int
) -> lgb.Booster:
    data = lgb.Dataset(inputs, label=target, feature_name=names, categorical_feature=categorical or "auto")
    return lgb.train({**LOSS_PARAMS, "seed": seed}, data, num_boost_round=LOSS_TREES)


def _chunk_sd(
    estimated: np.ndarray, realized: np.ndarray, chunk_rows: int, metric: Callable[[np.ndarray], float]
) -> float:
    """Standard deviation over consecutive chunks of ``realized metric / estimated metric - 1``."""
    chunks = len(estimated) // chunk_rows
    ratios = []
    for k in range(chunks):
        part = slice(k * chunk_rows, (k + 1) * chunk_rows)
        ratios.append(_relative(metric(realized[part]), metric(estimated[part])))
    return float(np.std(ratios, ddof=1)) if len(ratios) > 1 else 0.0


def _relative(realized: float, estimated: float) -> float:
    return float(realized / estimated - 1.0) if estimated > 0 else 0.0


def _free_name(names: list[str]) -> str:
    name = PREDICTION_COLUMN
    while name in names:
        name = "_" + name
    return name
