"""Performance estimation without labels: the definitions as loops, the uncertainty, mergeable parts."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from schemas.estimation import PerformanceEstimate
from scoring.estimation import BinaryPartial, PerformanceEstimator, RegressionPartial
from scoring.estimation.binary import confusion_metrics, confusion_sums
from scoring.estimation.soft_auc import AucMoments, exact_groups, soft_auc
from scoring.model.bundle import ModelBundle

# ---------------------------------------------------------------- the definitions, written as loops


def loop_definitions(scores: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    tp = fp = fn = tn = 0.0
    for s, q in zip(scores.tolist(), p.tolist(), strict=True):
        if s >= threshold:
            tp, fp = tp + q, fp + (1 - q)
        else:
            fn, tn = fn + q, tn + (1 - q)
    numerator = pairs = 0.0
    for i, j in itertools.permutations(range(len(p)), 2):
        weight = p[i] * (1 - p[j])
        pairs += weight
        numerator += weight * (1.0 if scores[i] > scores[j] else 0.5 if scores[i] == scores[j] else 0.0)
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "accuracy": (tp + tn) / len(p),
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "f1": 2 * tp / (2 * tp + fp + fn),
        "auc": numerator / pairs,
    }


def small_window(seed: int, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Scores on a coarse grid (many ties, some exactly at the threshold) and calibrated probabilities."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 11, n) / 10
    return scores, np.clip(scores + rng.normal(0, 0.15, n), 0, 1)


@pytest.mark.parametrize("seed", range(6))
def test_estimates_equal_a_loop_over_the_definitions(seed: int) -> None:
    scores, p = small_window(seed)
    expected = loop_definitions(scores, p, threshold=0.5)

    confusion = confusion_sums(p, scores >= 0.5)
    got = {e.metric: e.value for e in confusion_metrics(confusion)}
    got["auc"] = soft_auc(scores, p).value

    for name in ("tp", "fp", "fn", "tn"):
        assert getattr(confusion, name) == pytest.approx(expected[name], abs=1e-12)
    for name in ("accuracy", "precision", "recall", "f1", "auc"):
        assert got[name] == pytest.approx(expected[name], abs=1e-12), name


def test_the_estimator_uses_the_models_threshold_and_its_calibrator(agrawal_bundle: ModelBundle) -> None:
    estimator = PerformanceEstimator.from_bundle(agrawal_bundle)
    assert estimator is not None
    scores, _ = small_window(7)
    p = agrawal_bundle.calibration.calibrate(scores)
    expected = loop_definitions(scores, p, agrawal_bundle.metadata.threshold)

    estimate = estimator.estimate(scores, window=3, start_event_time=10, end_event_time=20)

    assert estimate.window == 3 and estimate.events == len(scores)
    assert estimate.confusion.tp == pytest.approx(expected["tp"], abs=1e-12)
    for metric in ("accuracy", "precision", "recall", "f1", "auc"):
        assert estimate.metric(metric).estimate == pytest.approx(expected[metric], abs=1e-12)
    assert PerformanceEstimate.model_validate_json(estimate.model_dump_json()) == estimate


def test_accuracy_and_precision_std_are_the_exact_spread_over_every_labelling() -> None:
    scores, p = small_window(3, n=12)
    predicted = scores >= 0.5
    accuracy, precision = [], []
    weights = []
    for labels in itertools.product((0, 1), repeat=len(p)):
        y = np.array(labels, dtype=bool)
        weights.append(np.prod(np.where(y, p, 1 - p)))
        accuracy.append(np.mean(y == predicted))
        precision.append(y[predicted].mean())
    w = np.array(weights)

    got = {e.metric: e for e in confusion_metrics(confusion_sums(p, predicted))}

    for name, values in (("accuracy", np.array(accuracy)), ("precision", np.array(precision))):
        mean = w @ values
        assert got[name].value == pytest.approx(mean, abs=1e-12)
        assert got[name].std ** 2 == pytest.approx(w @ (values - mean) ** 2, abs=1e-12)


def test_auc_moments_are_exact_over_every_labelling_with_ties() -> None:
    scores, p = small_window(5, n=11)
    n = len(p)
    k = (scores[:, None] > scores[None, :]) + 0.5 * (scores[:, None] == scores[None, :])
    np.fill_diagonal(k, 0)
    w_values, positives, weights = [], [], []
    for labels in itertools.product((0, 1), repeat=n):
        y = np.array(labels, dtype=float)
        weights.append(np.prod(np.where(y == 1, p, 1 - p)))
        w_values.append(y @ k @ (1 - y))
        positives.append(y.sum())
    w, wv, pv = np.array(weights), np.array(w_values), np.array(positives)

    m = AucMoments.of(exact_groups(scores, p))

    assert m.expected_w == pytest.approx(w @ wv, abs=1e-12)
    assert m.var_w == pytest.approx(w @ (wv - w @ wv) ** 2, abs=1e-12)
    assert m.cov_w_p == pytest.approx(w @ ((wv - w @ wv) * (pv - w @ pv)), abs=1e-12)


def test_the_analytic_std_matches_the_spread_of_simulated_labellings() -> None:
    rng = np.random.default_rng(11)
    n, draws = 3_000, 3_000
    scores = np.round(rng.beta(2, 3, n), 3)  # rounded: ties too
    p = np.clip(scores + rng.normal(0, 0.1, n), 0, 1)
    predicted = scores >= 0.5
    labels = rng.random((draws, n)) < p
    tp, fn = (labels & predicted).sum(1), (labels & ~predicted).sum(1)
    ranks = pd.Series(scores).rank().to_numpy()  # average ranks over ties
    pos = labels.sum(1)
    realized = {
        "accuracy": (labels == predicted).mean(1),
        "precision": tp / predicted.sum(),
        "recall": tp / (tp + fn),
        "f1": 2 * tp / (predicted.sum() + tp + fn),
        "auc": (labels @ ranks - pos * (pos + 1) / 2) / (pos * (n - pos)),
    }

    got = {e.metric: e for e in confusion_metrics(confusion_sums(p, predicted))}
    got["auc"] = soft_auc(scores, p)

    for name, values in realized.items():
        print(
            f"\n{name}: estimate {got[name].value:.4f} std {got[name].std:.5f}; "
            f"simulated mean {values.mean():.4f} std {values.std():.5f}",
            end="",
        )
        assert got[name].std == pytest.approx(values.std(), rel=0.1)
        assert got[name].value == pytest.approx(values.mean(), abs=0.2 * values.std())


# ---------------------------------------------------------------- mergeable parts


def _values(estimates) -> dict[str, tuple[float | None, float | None]]:
    return {e.metric: (e.value, e.std) for e in estimates}


def test_parts_on_bin_centres_equal_the_exact_window_and_merge_in_any_split() -> None:
    rng = np.random.default_rng(2)
    scores = (rng.integers(0, 1000, 3_000) + 0.5) / 1000  # one score per bin: binning loses nothing
    p = np.clip(scores + rng.normal(0, 0.1, scores.size), 0, 1)
    predicted = scores >= 0.5
    exact = _values([*confusion_metrics(confusion_sums(p, predicted)), soft_auc(scores, p)])

    parts = []
    for part in np.array_split(np.arange(scores.size), 3):
        partial = BinaryPartial()
        partial.update(scores[part], p[part], predicted[part])
        parts.append(BinaryPartial.from_state(json.loads(json.dumps(partial.state()))))
    merged = parts[0].merge(parts[1]).merge(parts[2])

    assert merged.events == scores.size
    for metric, (value, std) in _values(merged.estimates()).items():
        assert value == pytest.approx(exact[metric][0], abs=1e-12), metric
        assert std == pytest.approx(exact[metric][1], abs=1e-12), metric


def test_binned_auc_stays_within_its_reported_bound_on_continuous_scores() -> None:
    rng = np.random.default_rng(8)
    scores = rng.beta(2, 5, 20_000)
    p = np.clip(scores + rng.normal(0, 0.05, scores.size), 0, 1)
    partial = BinaryPartial()
    partial.update(scores, p, scores >= 0.5)

    binned = partial.estimates()[-1]
    exact = soft_auc(scores, p)

    print(f"\nAUC exact {exact.value:.6f}, binned {binned.value:.6f}, bound {binned.approximation_error:.6f}")
    assert abs(binned.value - exact.value) <= binned.approximation_error
    assert binned.approximation_error < 1e-3


def test_regression_parts_add_up() -> None:
    a, b = RegressionPartial(), RegressionPartial()
    a.update(np.array([1.0, 2.0]), np.array([1.0, 5.0]))
    b.update(np.array([3.0]), np.array([10.0]))

    merged = RegressionPartial.from_state(json.loads(json.dumps(a.state()))).merge(b)
    mae, rmse = merged.estimates(mae_sd_relative=0.1, rmse_sd_relative=0.2, chunk_rows=3)

    assert merged.events == 3
    assert mae.value == pytest.approx(2.0) and mae.std == pytest.approx(0.2)
    assert rmse.value == pytest.approx(np.sqrt(16 / 3)) and rmse.std == pytest.approx(0.2 * np.sqrt(16 / 3))


def test_an_estimate_from_partition_parts_matches_the_window_estimate(agrawal_bundle: ModelBundle) -> None:
    estimator = PerformanceEstimator.from_bundle(agrawal_bundle)
    scores = np.random.default_rng(6).random(4_000)
    whole = estimator.estimate(scores, window=1)

    parts = [estimator.new_partial() for _ in range(4)]
    for partition, chunk in enumerate(np.array_split(scores, 8)):
        estimator.add(parts[partition % 4], chunk)
    merged = parts[0].merge(parts[1]).merge(parts[2]).merge(parts[3])
    from_parts = estimator.from_partial(merged, window=1)

    assert from_parts.events == whole.events == scores.size
    assert from_parts.confusion.model_dump() == pytest.approx(whole.confusion.model_dump(), abs=1e-9)
    for metric in ("accuracy", "precision", "recall", "f1"):
        assert from_parts.metric(metric).estimate == pytest.approx(whole.metric(metric).estimate, abs=1e-12)
    auc = from_parts.metric("auc")
    assert abs(auc.estimate - whole.metric("auc").estimate) <= auc.approximation_error
    assert whole.metric("auc").approximation_error is None
