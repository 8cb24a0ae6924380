"""The window-level estimator the drift path calls: a bundle's estimator, scores in, KPIs out.

``PerformanceEstimator.from_bundle(bundle)`` is None when the bundle carries nothing
to estimate with (``bundle.estimation_note`` says why; logging it once is the
caller's job). ``estimate(scores, rows)`` takes one closed window as the drift
monitor holds it (the model's raw scores; for a binary model a probability, the
class decision ``score >= threshold``; the encoded feature rows in the spec's
order; for a multiclass model its class probabilities, events x classes) and returns a
``PerformanceEstimate``. ``new_partial``, ``add`` and ``from_partial`` do the same from
mergeable per-partition parts (binary and regression; a multiclass window is estimated whole,
its merged drift window holding every event's probabilities).

Binary: the AUC here is exact (groups of equal scores); from parts it is binned.
Regression: the sums are exact either way. Multiclass: ``scoring.estimation.multiclass``.
"""

from __future__ import annotations

import math
import time

import numpy as np

from schemas.estimation import UNIT_METRICS, ExpectedConfusion, MetricEstimate, PerformanceEstimate
from scoring.estimation.binary import ConfusionSums, Estimated, confusion_metrics, confusion_sums
from scoring.estimation.multiclass import multiclass_estimates
from scoring.estimation.partial import BinaryPartial, RegressionPartial
from scoring.estimation.soft_auc import soft_auc
from scoring.model.bundle import ModelBundle, Task
from scoring.model.calibration import Calibration, ClassCalibration
from scoring.model.loss_models import LossModels

BAND_Z = 3.0  # lower/upper = estimate -/+ 3 std: about 99.7% of windows under a normal approximation
METRICS = {
    Task.binary: ("accuracy", "precision", "recall", "f1", "auc"),
    Task.regression: ("mae", "rmse"),
    Task.multiclass: ("accuracy", "f1_macro", "auc_macro_ovr"),
}  # what an estimate of each task holds, in its order

Partial = BinaryPartial | RegressionPartial


class PerformanceEstimator:
    """Estimates one model version's KPIs per window without labels."""

    def __init__(
        self,
        model_name: str,
        model_version: str,
        threshold: float = 0.5,
        calibration: Calibration | None = None,
        loss_models: LossModels | None = None,
        band_z: float = BAND_Z,
        class_calibration: ClassCalibration | None = None,
    ) -> None:
        if sum(x is not None for x in (calibration, loss_models, class_calibration)) != 1:
            raise ValueError(
                "an estimator needs one of a calibration (binary), loss models (regression) or a "
                "class calibration (multiclass)"
            )
        self.model_name = model_name
        self.model_version = model_version
        self.threshold = threshold
        self.calibration = calibration
        self.loss_models = loss_models
        self.class_calibration = class_calibration
        self.band_z = band_z

    @property
    def task(self) -> Task:
        if self.class_calibration is not None:
            return Task.multiclass
        return Task.binary if self.calibration is not None else Task.regression

    @classmethod
    def from_bundle(cls, bundle: ModelBundle, band_z: float = BAND_Z) -> PerformanceEstimator | None:
        """The bundle's estimator, or None when it has no calibrator (binary, one per class for
        multiclass) or loss models (regression)."""
        if bundle.estimation_note is not None:
            return None
        task = bundle.task
        return cls(
            bundle.name,
            bundle.version,
            bundle.metadata.threshold,
            calibration=bundle.calibration if task is Task.binary else None,
            loss_models=bundle.loss_models if task is Task.regression else None,
            band_z=band_z,
            class_calibration=bundle.class_calibration if task is Task.multiclass else None,
        )

    def estimate(
        self,
        scores: np.ndarray,
        rows: np.ndarray | None = None,
        probabilities: np.ndarray | None = None,
        **window: int | None,
    ) -> PerformanceEstimate:
        """Estimated KPIs of one window; ``window``: ``window``, ``start_event_time``, ``end_event_time``.

        ``rows`` (events x features) are needed for a regression model only, ``probabilities``
        (events x classes) for a multiclass one.
        """
        scores = np.asarray(scores, dtype=np.float64).ravel()
        if self.class_calibration is not None:
            if probabilities is None or len(probabilities) != len(scores):
                raise ValueError(f"a multiclass estimate needs probabilities per score ({len(scores)})")
            calibrated = self.class_calibration.calibrate(probabilities)
            return self._message(multiclass_estimates(probabilities, calibrated), len(scores), None, window)
        if self.calibration is None:
            partial = self.new_partial()
            self.add(partial, scores, rows)
            return self.from_partial(partial, **window)
        probabilities = self.calibration.calibrate(scores)
        confusion = confusion_sums(probabilities, scores >= self.threshold)
        estimates = [*confusion_metrics(confusion), soft_auc(scores, probabilities)]
        return self._message(estimates, len(scores), confusion, window)

    def new_partial(self) -> Partial:
        if self.class_calibration is not None:
            raise ValueError("a multiclass window is estimated whole (``estimate``), not from parts")
        return BinaryPartial() if self.calibration is not None else RegressionPartial()

    def add(self, partial: Partial, scores: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Put events of a window into one of its parts."""
        scores = np.asarray(scores, dtype=np.float64).ravel()
        if isinstance(partial, BinaryPartial):
            assert self.calibration is not None
            partial.update(scores, self.calibration.calibrate(scores), scores >= self.threshold)
            return
        assert self.loss_models is not None
        if rows is None or len(rows) != len(scores):
            raise ValueError(f"a regression estimate needs one feature row per score ({len(scores)})")
        if len(scores):
            partial.update(*self.loss_models.expected_losses(rows, scores))

    def from_partial(self, partial: Partial, **window: int | None) -> PerformanceEstimate:
        """The estimate of a window from its (merged) parts."""
        if isinstance(partial, BinaryPartial):
            return self._message(partial.estimates(), partial.events, partial.confusion, window)
        assert self.loss_models is not None
        info = self.loss_models.info
        estimates = partial.estimates(info.mae_sd_relative, info.rmse_sd_relative, info.chunk_rows)
        return self._message(estimates, partial.events, None, window)

    def _message(
        self, estimates: list[Estimated], events: int, confusion: ConfusionSums | None, window: dict
    ) -> PerformanceEstimate:
        binary = self.calibration is not None
        cbpe = binary or self.class_calibration is not None
        return PerformanceEstimate(
            model_name=self.model_name,
            model_version=self.model_version,
            task=self.task.value,
            events=events,
            threshold=self.threshold if binary else None,
            band_z=self.band_z,
            confusion=None if confusion is None else _confusion(confusion),
            metrics=[self._metric(e, cbpe, events) for e in estimates],
            created_at=int(time.time() * 1000),
            **window,
        )

    @property
    def holdout_rows(self) -> int:
        """Events the estimator was fitted on: the calibrator's holdout, or the loss models' fit half."""
        if self.calibration is not None:
            return self.calibration.holdout_rows
        if self.class_calibration is not None:
            return self.class_calibration.holdout_rows
        assert self.loss_models is not None
        return self.loss_models.info.fit_rows

    def _metric(self, e: Estimated, cbpe: bool, events: int) -> MetricEstimate:
        value = lower = upper = estimator_std = None
        if e.value is not None and e.std is not None:
            top = 1.0 if e.metric in UNIT_METRICS else float("inf")
            value = min(max(e.value, 0.0), top)  # a ratio a rounding error put past its range
            estimator_std = e.std * math.sqrt(events / max(self.holdout_rows, 1))
            half = self.band_z * math.hypot(e.std, estimator_std)
            lower, upper = max(value - half, 0.0), min(value + half, top)
        return MetricEstimate(
            metric=e.metric,
            estimate=value,
            std=e.std,
            estimator_std=estimator_std,
            lower=lower,
            upper=upper,
            method="cbpe" if cbpe else "dle",
            uncertainty="analytic" if cbpe else "holdout_chunks",
            approximation_error=e.approximation_error,
        )


def _confusion(c: ConfusionSums) -> ExpectedConfusion:
    """The expected counts, with float rounding below zero (an FP of -1e-13) clipped."""
    return ExpectedConfusion(tp=max(c.tp, 0.0), fp=max(c.fp, 0.0), fn=max(c.fn, 0.0), tn=max(c.tn, 0.0))
