"""Estimates on the drift windows, their alerts, and their checks once labels come: without Kafka."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from schemas.drift import PartitionSpan
from schemas.estimation import MetricEstimate, PerformanceEstimate
from scoring.drift import DriftMonitor, MonitorColumns
from scoring.estimation import PerformanceEstimator
from scoring.estimation.ledger import EstimateLedger
from scoring.lifecycle.retrain import EstimateWatch, from_estimate
from scoring.metrics.holdout import binary_metrics, regression_metrics
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import numeric_frame
from scoring.offline.training import train_bundle


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    return train_bundle(numeric_frame(8_000, n_features=5, seed=31), "y", name="est", num_trees=20)


def columns(bundle: ModelBundle, rows: np.ndarray, first: int = 0, partition: int = 0) -> MonitorColumns:
    offsets = list(range(first, first + len(rows)))
    ids = [f"e{partition}-{o}" for o in offsets]
    scores = bundle.predict(rows)
    return MonitorColumns(
        bundle.name, bundle.version, "features", partition, offsets, ids, offsets, scores, rows
    )


def rows_of(bundle: ModelBundle, n: int, seed: int) -> np.ndarray:
    return bundle.spec.encode_frame(numeric_frame(n, n_features=5, seed=seed).drop(columns="y"))


# ---------------------------------------------------------------- the drift windows


def test_each_closed_window_is_estimated_from_exactly_its_events(bundle: ModelBundle) -> None:
    monitor = DriftMonitor(window_events=1_000)
    monitor.register(bundle)
    rows = rows_of(bundle, 2_600, seed=32)
    closed = []
    for start in range(0, len(rows), 700):
        closed += monitor.observe_windows(columns(bundle, rows[start : start + 700], first=start))

    estimator = PerformanceEstimator.from_bundle(bundle)
    assert [w.report.window for w in closed] == [0, 1]
    for w in closed:
        first, last = w.report.spans[0].first_offset, w.report.spans[0].last_offset
        direct = estimator.estimate(bundle.predict(rows[first : last + 1]))
        assert w.estimate.window == w.report.window and w.estimate.spans == w.report.spans
        assert (w.estimate.start_event_time, w.estimate.end_event_time) == (first, last)
        assert w.estimate.events == w.report.events == 1_000
        for got, want in zip(w.estimate.metrics, direct.metrics, strict=True):
            assert (got.metric, got.estimate, got.lower, got.upper) == (
                want.metric,
                want.estimate,
                want.lower,
                want.upper,
            )
    assert monitor.observe(columns(bundle, rows[:10], first=5_000)) == []  # observe still gives reports


def test_an_old_bundle_without_a_calibrator_gets_reports_only_and_the_log_says_so_once(
    bundle: ModelBundle, caplog: pytest.LogCaptureFixture
) -> None:
    old = dataclasses.replace(bundle, calibration=None)
    monitor = DriftMonitor(window_events=500)
    with caplog.at_level(logging.WARNING, logger="scoring.drift.windows"):
        monitor.register(old)
        monitor.register(old)  # a later swap registers the same version again
        closed = monitor.observe_windows(columns(old, rows_of(old, 1_000, seed=33)))

    notes = [r.getMessage() for r in caplog.records if "no performance estimate" in r.getMessage()]
    print(notes)
    assert len(notes) == 1 and old.estimation_note in notes[0]
    assert [(w.report.window, w.estimate) for w in closed] == [(0, None), (1, None)]


def test_a_failing_estimator_costs_the_estimate_not_the_report(bundle: ModelBundle) -> None:
    monitor = DriftMonitor(window_events=300)
    version = monitor.register(bundle)
    version.estimator.estimate = None  # not callable: the estimate fails
    closed = monitor.observe_windows(columns(bundle, rows_of(bundle, 300, seed=34)))

    assert [(w.report.events, w.estimate) for w in closed] == [(300, None)]
    assert version.estimate_failures == 1


# ---------------------------------------------------------------- the alert


def estimate(window: int, metric: str, value: float | None, events: int = 5_000) -> PerformanceEstimate:
    m = MetricEstimate(
        metric=metric,
        estimate=value,
        std=None if value is None else 0.01,
        lower=None if value is None else max(value - 0.03, 0),
        upper=None if value is None else value + 0.03,
        method="cbpe" if metric == "accuracy" else "dle",
        uncertainty="analytic",
    )
    task = "binary" if metric == "accuracy" else "regression"
    return PerformanceEstimate(
        model_name="m",
        model_version="1",
        task=task,
        window=window,
        events=events,
        band_z=3.0,
        metrics=[m],
        created_at=0,
    )


def test_the_estimate_watch_alerts_once_per_episode_and_asks_for_retraining() -> None:
    watch = EstimateWatch("accuracy", 0.7)
    fired = [watch.check(estimate(i, "accuracy", v)) for i, v in enumerate([0.8, 0.69, 0.6, None, 0.71, 0.5])]
    small = watch.check(estimate(9, "accuracy", 0.1, events=50))  # too few events to say

    assert [a and a.status for a in fired] == [None, "firing", None, None, "resolved", "firing"]
    assert small is None
    assert (fired[4].since_window, fired[4].estimate) == (1, 0.71) and "resolved" in fired[4].message
    alert = fired[1]
    request = from_estimate(alert)
    print(alert.message)
    assert (alert.window, alert.estimate, alert.threshold) == (1, 0.69, 0.7)
    assert request.trigger == "estimated" and request.model == "m:1" and request.details["accuracy"] == 0.69


def test_for_an_error_metric_the_threshold_is_a_ceiling_and_other_metrics_are_not_watched() -> None:
    watch = EstimateWatch("mae", 2.0)

    assert watch.check(estimate(0, "mae", 1.5)) is None
    assert "above 2.0" in watch.check(estimate(1, "mae", 2.5)).message
    assert EstimateWatch("accuracy", 0.7).check(estimate(0, "mae", 0.1)) is None


# ---------------------------------------------------------------- estimated against realized


def window_estimate(bundle: ModelBundle, rows: np.ndarray, window: int, first: int) -> PerformanceEstimate:
    """The estimate a drift window of ``rows`` at offsets ``first``.. gives, as the drift path sends it."""
    spans = [
        PartitionSpan(topic="features", partition=0, first_offset=first, last_offset=first + len(rows) - 1)
    ]
    estimator = PerformanceEstimator.from_bundle(bundle)
    e = estimator.estimate(
        bundle.predict(rows), rows, window=window, start_event_time=first, end_event_time=first
    )
    return e.model_copy(update={"spans": spans})


def test_labels_go_to_the_window_holding_their_offset_and_a_complete_window_settles(
    bundle: ModelBundle,
) -> None:
    frame = numeric_frame(2_000, n_features=5, seed=35)
    rows, y = bundle.spec.encode_frame(frame.drop(columns="y")), frame["y"].to_numpy(float)
    scores = bundle.predict(rows)
    ledger = EstimateLedger()
    early = [ledger.labelled("est:1", "features", 0, i, scores[i], y[i]) for i in range(0, 1_000, 2)]
    ledger.add(window_estimate(bundle, rows[:1_000], 0, 0))  # the early labels are matched now
    ledger.add(window_estimate(bundle, rows[1_000:], 1, 1_000))
    for i in [*range(1, 1_000, 2), *range(1_000, 1_500)]:
        assert ledger.labelled("est:1", "features", 0, i, scores[i], y[i])
    other = ledger.labelled("est:2", "features", 0, 5, scores[5], y[5])  # another version: no window

    checks = ledger.settle(newest_event_time=2_000, ttl_ms=600_000)
    assert not any(early) and not other
    assert [(c.window, c.labelled) for c in checks] == [(0, 1_000)]  # window 1 still waits for labels
    realized = binary_metrics(y[:1_000], scores[:1_000], bundle.metadata.threshold)
    by_metric = {c.metric: c for c in checks[0].checks}
    print(checks[0].message)
    assert by_metric["accuracy"].realized == pytest.approx(realized["accuracy"], abs=1e-9)
    assert by_metric["auc"].realized == pytest.approx(realized["auc"], abs=2e-3)  # 1,000 score bins
    assert set(by_metric) == {"accuracy", "precision", "recall", "f1", "auc"}

    state = ledger.state()
    restored = EstimateLedger()
    restored.restore(state)
    late = restored.settle(newest_event_time=1_000_000, ttl_ms=600_000)  # labels can no longer come
    assert [(c.window, c.labelled) for c in late] == [(1, 500)]
    assert restored.settle(newest_event_time=2_000_000, ttl_ms=600_000) == []
    assert restored.settled == 2 and len(ledger.early) == 1 and len(restored.early) == 0  # not checkpointed


def test_a_regression_window_is_checked_on_its_mae_and_rmse() -> None:
    rng = np.random.default_rng(36)
    frame = numeric_frame(6_000, n_features=4, seed=36)
    frame["y"] = frame["f00"] * 2 + rng.standard_normal(len(frame))
    bundle = train_bundle(frame, "y", task="regression", name="reg", num_trees=20)
    test = numeric_frame(1_000, n_features=4, seed=37)
    test["y"] = test["f00"] * 2 + rng.standard_normal(len(test))
    rows = bundle.spec.encode_frame(test.drop(columns="y"))
    scores = bundle.predict(rows)
    ledger = EstimateLedger()
    ledger.add(window_estimate(bundle, rows, 0, 0))
    for i, label in enumerate(test["y"]):
        ledger.labelled("reg:1", "features", 0, i, scores[i], label)

    (check,) = ledger.settle(0, 1)
    realized = regression_metrics(test["y"].to_numpy(), scores)
    by_metric = {c.metric: c for c in check.checks}
    print(check.message)
    assert set(by_metric) == {"mae", "rmse"}
    assert by_metric["mae"].realized == pytest.approx(realized["mae"], abs=1e-9)
    assert not check.disagree


def test_a_gap_outside_the_band_but_within_the_estimators_accuracy_is_not_called_a_disagreement() -> None:
    def mae_window(window: int, first: int) -> PerformanceEstimate:
        m = MetricEstimate(
            metric="mae",
            estimate=1.0,
            std=0.005,
            lower=0.985,
            upper=1.015,
            method="dle",
            uncertainty="holdout_chunks",
        )
        span = PartitionSpan(topic="features", partition=0, first_offset=first, last_offset=first + 9)
        return PerformanceEstimate(
            model_name="m",
            model_version="1",
            task="regression",
            window=window,
            spans=[span],
            events=10,
            band_z=3.0,
            metrics=[m],
            created_at=0,
        )

    ledger = EstimateLedger()
    ledger.add(mae_window(0, 0))
    ledger.add(mae_window(1, 10))
    for offset in range(20):  # scores 0: the realized MAE is the label, 1.05 then 1.2
        ledger.labelled("m:1", "features", 0, offset, 0.0, 1.05 if offset < 10 else 1.2)

    checks = ledger.settle(0, 1)

    assert [(c.window, round(c.checks[0].realized, 9), c.disagree) for c in checks] == [
        (0, 1.05, False),
        (1, 1.2, True),
    ]
    assert "mae outside the band but within the estimator's accuracy" in checks[0].message
