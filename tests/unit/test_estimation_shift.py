"""Estimates on whole windows: covariate shift, concept drift, direct loss estimation, the check.

Statistical checks on windows of 5,000 events with fixed seeds: the figures they
print are the estimate, its band and the realized KPI of each window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scoring.estimation import PerformanceEstimator, check_estimate
from scoring.metrics.holdout import binary_metrics, regression_metrics
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import logistic_frame as binary_frame
from scoring.offline.synthetic import noisy_regression_frame as regression_frame
from scoring.offline.training import train_bundle

WINDOW = 5_000


@pytest.fixture(scope="module")
def binary_bundle() -> ModelBundle:
    return train_bundle(binary_frame(50_000, seed=1), "y", num_trees=100, name="shift")


def estimate_and_realize(bundle: ModelBundle, frame: pd.DataFrame, labels: np.ndarray | None = None):
    rows = bundle.spec.encode_frame(frame.drop(columns="y"))
    scores = bundle.predict(rows)
    estimate = PerformanceEstimator.from_bundle(bundle).estimate(scores, rows)
    y = frame["y"].to_numpy() if labels is None else labels
    return estimate, binary_metrics(y, scores, bundle.metadata.threshold)


def test_under_covariate_shift_estimated_accuracy_and_auc_follow_the_realized(
    binary_bundle: ModelBundle,
) -> None:
    print(f"\ncalibrator: {binary_bundle.calibration.summary()}")
    seen = {}
    for name, scale, seed in (("no shift", 1.0, 101), ("x0 x 0.5", 0.5, 102), ("x0 x 0.3", 0.3, 103)):
        estimate, realized = estimate_and_realize(binary_bundle, binary_frame(WINDOW, seed, scale))
        for metric in ("accuracy", "auc", "f1"):
            m = estimate.metric(metric)
            print(
                f"{name:9} {metric:8} estimated {m.estimate:.4f} +- {m.std:.4f} band [{m.lower:.4f}, "
                f"{m.upper:.4f}]  realized {realized[metric]:.4f}  difference "
                f"{realized[metric] - m.estimate:+.4f}"
            )
        for metric in ("accuracy", "auc"):
            assert abs(estimate.metric(metric).estimate - realized[metric]) < 0.02
        assert not check_estimate(estimate, realized).disagree
        seen[name] = estimate

    assert seen["x0 x 0.3"].metric("accuracy").estimate < seen["no shift"].metric("accuracy").estimate - 0.05
    assert seen["x0 x 0.3"].metric("auc").estimate < seen["no shift"].metric("auc").estimate - 0.05


def test_under_concept_drift_the_estimate_stays_the_realized_falls_and_the_check_disagrees(
    binary_bundle: ModelBundle,
) -> None:
    before = binary_frame(WINDOW, 201)
    after = binary_frame(WINDOW, 202)
    flipped = 1 - after["y"].to_numpy()  # the same features, the labels' meaning reversed

    estimate_before, realized_before = estimate_and_realize(binary_bundle, before)
    estimate_after, realized_after = estimate_and_realize(binary_bundle, after, labels=flipped)
    check_before = check_estimate(estimate_before, realized_before)
    check_after = check_estimate(estimate_after, realized_after)

    for label, e, r in (
        ("before", estimate_before, realized_before),
        ("after", estimate_after, realized_after),
    ):
        print(
            f"\n{label}: accuracy estimated {e.metric('accuracy').estimate:.4f} "
            f"realized {r['accuracy']:.4f}; auc estimated {e.metric('auc').estimate:.4f} "
            f"realized {r['auc']:.4f}",
            end="",
        )
    print(f"\n{check_after.message}")
    assert (
        abs(estimate_after.metric("accuracy").estimate - estimate_before.metric("accuracy").estimate) < 0.01
    )
    assert realized_after["accuracy"] < realized_before["accuracy"] - 0.3
    assert not check_before.disagree
    assert check_after.disagree
    assert {c.metric for c in check_after.checks if c.disagree} >= {"accuracy", "auc"}


def test_direct_loss_estimation_follows_the_mae_on_a_shifted_window() -> None:
    bundle = train_bundle(regression_frame(30_000, seed=1), "y", task="regression", num_trees=100)
    estimator = PerformanceEstimator.from_bundle(bundle)
    print(f"\nloss models: {bundle.loss_models.info.summary()}")
    maes = {}
    for name, shift, seed in (("no shift", 0.0, 301), ("x0 + 1", 1.0, 302)):
        frame = regression_frame(WINDOW, seed, shift)
        rows = bundle.spec.encode_frame(frame.drop(columns="y"))
        scores = bundle.predict(rows)
        estimate = estimator.estimate(scores, rows)
        realized = regression_metrics(frame["y"].to_numpy(), scores)
        for metric in ("mae", "rmse"):
            m = estimate.metric(metric)
            print(
                f"{name:8} {metric}: estimated {m.estimate:.4f} +- {m.std:.4f} band [{m.lower:.4f}, "
                f"{m.upper:.4f}]  realized {realized[metric]:.4f}  relative error "
                f"{realized[metric] / m.estimate - 1:+.3f}"
            )
        assert abs(realized["mae"] / estimate.metric("mae").estimate - 1) < 0.10
        assert not check_estimate(estimate, realized).disagree
        maes[name] = estimate.metric("mae").estimate

    assert maes["x0 + 1"] > 1.2 * maes["no shift"]


# ---------------------------------------------------------------- the API around it


def test_an_empty_window_estimates_nothing_and_a_regression_needs_its_rows(
    binary_bundle: ModelBundle,
) -> None:
    empty = PerformanceEstimator.from_bundle(binary_bundle).estimate(np.array([]))
    regression = train_bundle(regression_frame(2_000, seed=4), "y", task="regression", num_trees=10)

    assert empty.events == 0
    assert all(m.estimate is None for m in empty.metrics)
    with pytest.raises(ValueError, match="one feature row per score"):
        PerformanceEstimator.from_bundle(regression).estimate(np.array([1.0, 2.0]))


def test_the_check_widens_the_band_when_few_events_got_labels(binary_bundle: ModelBundle) -> None:
    estimate, _ = estimate_and_realize(binary_bundle, binary_frame(WINDOW, 401))
    accuracy = estimate.metric("accuracy")
    combined = np.hypot(accuracy.std, accuracy.estimator_std)
    off = {"accuracy": accuracy.estimate + 3.5 * combined}

    full = check_estimate(estimate, off)
    quarter = check_estimate(estimate, off, labelled=WINDOW // 4)
    floored = check_estimate(estimate, off, min_difference=0.05)

    assert accuracy.estimator_std == pytest.approx(accuracy.std * np.sqrt(WINDOW / 10_000))
    assert (accuracy.lower, accuracy.upper) == pytest.approx(
        (accuracy.estimate - 3 * combined, accuracy.estimate + 3 * combined)
    )
    assert full.disagree and full.checks[0].std == pytest.approx(combined)
    assert not quarter.disagree
    assert quarter.checks[0].std == pytest.approx(np.hypot(2 * accuracy.std, accuracy.estimator_std))
    assert not floored.disagree
