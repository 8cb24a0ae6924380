"""Holdout metrics against scipy and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from scoring.metrics.holdout import binary_metrics, log_loss, regression_metrics, roc_auc

# few distinct score values, so ties are common
labelled_scores = st.integers(min_value=2, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda y: 0 < sum(y) < len(y)),
        st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]), min_size=n, max_size=n),
    )
)


@given(labelled_scores)
def test_roc_auc_equals_mann_whitney_u_over_pairs(data: tuple[list[int], list[float]]) -> None:
    y, scores = np.array(data[0]), np.array(data[1])
    positives, negatives = scores[y == 1], scores[y == 0]

    u = mannwhitneyu(positives, negatives, alternative="two-sided", method="asymptotic").statistic

    assert roc_auc(y, scores) == pytest.approx(u / (len(positives) * len(negatives)), abs=1e-12)


def test_roc_auc_by_hand_with_and_without_ties() -> None:
    # every positive above every negative
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    # pairs (pos, neg): (0.35, 0.1) win, (0.35, 0.4) loss, (0.8, *) two wins -> 3 / 4
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    # a tied pair counts one half: (0.5, 0.5) tie, (0.5, 0.2) win, (0.9, *) two wins -> 3.5 / 4
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.2, 0.9])) == 0.875
    # all scores equal: no information
    assert roc_auc(np.array([1, 0, 1, 0, 0]), np.full(5, 0.3)) == 0.5


@pytest.mark.parametrize("y", [[1, 1, 1], [0, 0, 0, 0]])
def test_roc_auc_of_one_class_is_nan(y: list[int]) -> None:
    assert math.isnan(roc_auc(np.array(y), np.linspace(0.1, 0.9, len(y))))


def test_log_loss_by_hand() -> None:
    expected = -(math.log(0.8) + math.log(1 - 0.3) + math.log(0.6)) / 3
    assert log_loss(np.array([1, 0, 1]), np.array([0.8, 0.3, 0.6])) == pytest.approx(expected, rel=1e-12)


def test_log_loss_of_a_confidently_wrong_prediction_is_finite() -> None:
    loss = log_loss(np.array([1, 0]), np.array([0.0, 1.0]))
    assert loss == pytest.approx(-math.log(1e-15), rel=1e-4)


def test_accuracy_by_hand_counts_the_threshold_as_positive() -> None:
    metrics = binary_metrics(np.array([1, 0, 1, 0, 1]), np.array([0.5, 0.49, 0.2, 0.9, 0.7]))
    # predicted: 1, 0, 0, 1, 1 -> right on rows 0, 1, 4
    assert metrics["accuracy"] == pytest.approx(3 / 5)


def test_accuracy_follows_the_threshold() -> None:
    y, probabilities = np.array([1, 0, 1, 0]), np.array([0.75, 0.3, 0.8, 0.65])
    assert binary_metrics(y, probabilities)["accuracy"] == 0.75
    assert binary_metrics(y, probabilities, threshold=0.7)["accuracy"] == 1.0


def test_regression_metrics_by_hand() -> None:
    metrics = regression_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0]))
    # errors 0, 1, -1, 0; total sum of squares 5
    assert metrics["mae"] == pytest.approx(0.5)
    assert metrics["rmse"] == pytest.approx(math.sqrt(0.5))
    assert metrics["r2"] == pytest.approx(1 - 2 / 5)


def test_r2_of_a_constant_target_is_nan() -> None:
    metrics = regression_metrics(np.array([2.0, 2.0, 2.0]), np.array([1.0, 2.0, 3.0]))
    assert math.isnan(metrics["r2"])
    assert metrics["mae"] == pytest.approx(2 / 3)


def test_batched_histogram_equals_counting_one_by_one() -> None:
    from streams.services.score.telemetry import Histogram

    rng = np.random.default_rng(4)
    values = rng.exponential(0.2, 5000)
    values[:3] = [0.005, 0.0051, 100.0]  # on a bound (counts in it, as Prometheus' le does), past the last
    hist = Histogram((0.005, 0.01, 0.1, 1.0))
    for chunk in np.array_split(values, 7):
        hist.observe_many(chunk)
    expected = [int((values <= b).sum()) for b in (0.005, 0.01, 0.1, 1.0)] + [len(values)]
    assert [count for _, count in hist.cumulative()] == expected
    assert hist.total == pytest.approx(values.sum())


def test_kpis_of_partitions_merged_equal_the_kpis_of_the_whole_stream() -> None:
    """Scale-out: each learner keeps the KPIs of its partitions; merged, they are the whole stream's."""
    import random

    from scoring.metrics.kpis import KpiBoard

    rng = random.Random(21)
    for task in ("binary", "regression"):
        whole = KpiBoard(task, 50)
        parts = [KpiBoard(task, 50) for _ in range(3)]
        for _ in range(3_000):
            label = float(rng.random() > 0.4) if task == "binary" else rng.gauss(10, 3)
            score = rng.random() if task == "binary" else label + rng.gauss(0, 1)
            segments = {"elevel": rng.choice("abc")}
            whole.update("loans:1", label, score, segments)
            parts[rng.randrange(3)].update("loans:1", label, score, segments)
        merged = KpiBoard.merged(parts)
        for expected, got in zip(whole.rows(), merged.rows(), strict=True):
            assert (expected["model"], expected["segment_value"]) == (got["model"], got["segment_value"])
            assert expected["count"] == got["count"]
            for metric, value in expected["cumulative"].items():
                assert got["cumulative"][metric] == pytest.approx(value, abs=1e-9), (task, metric)
        assert len(merged.overall("loans:1").recent) == 150, "the rolling window: the last 50 of each part"
