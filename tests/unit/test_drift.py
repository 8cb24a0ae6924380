"""Drift statistics and windows, without Kafka."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from scoring.drift import DriftMonitor, DriftThresholds, MonitorColumns, alert_for
from scoring.drift.stats import KsSample, chi_square_test, ks_test, ks_test_sorted, psi
from scoring.model.bundle import ModelBundle
from scoring.model.features import FeatureKind
from scoring.model.reference import bin_counts, bin_counts_sorted
from scoring.offline.synthetic import numeric_frame
from scoring.offline.training import train_bundle


@pytest.fixture(scope="module")
def numeric_bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    frame = numeric_frame(20_000, n_features=10, seed=11)
    return train_bundle(frame, "y", tmp_path_factory.mktemp("drift") / "num", name="num", num_trees=20)


def columns_for(
    bundle: ModelBundle, matrix: np.ndarray, first_offset: int = 0, start_ms: int = 0
) -> MonitorColumns:
    n = len(matrix)
    offsets = list(range(first_offset, first_offset + n))
    return MonitorColumns(
        model_name=bundle.name,
        model_version=bundle.version,
        source_topic="features",
        partition=0,
        offsets=offsets,
        event_ids=[f"e{o}" for o in offsets],
        event_times=[start_ms + o for o in offsets],
        scores=bundle.predict(matrix),
        rows=matrix,
    )


def feed(monitor: DriftMonitor, bundle: ModelBundle, matrix: np.ndarray, chunk: int = 700) -> list:
    reports = []
    for start in range(0, len(matrix), chunk):
        reports += monitor.observe(columns_for(bundle, matrix[start : start + chunk], first_offset=start))
    return reports


# ---------------------------------------------------------------- statistics


def test_psi_equals_the_hand_computation() -> None:
    reference, window = [50, 30, 20], [30, 30, 40]
    by_hand = (0.3 - 0.5) * math.log(0.3 / 0.5) + 0 + (0.4 - 0.2) * math.log(0.4 / 0.2)
    assert psi(reference, window) == pytest.approx(by_hand, abs=1e-12)
    assert psi(reference, reference) == 0.0


def test_psi_floors_an_empty_bin_instead_of_going_infinite() -> None:
    by_hand = (1e-4 - 0.5) * math.log(1e-4 / 0.5) + (1.0 - 0.5) * math.log(1.0 / 0.5)
    assert psi([10, 10], [0, 20]) == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.parametrize(("n", "m"), [(300, 500), (800, 1250), (2000, 5000), (2000, 20_000)])
def test_ks_agrees_with_scipy_on_raw_samples(n: int, m: int) -> None:
    """Small samples: scipy's default (exact p-value); large: scipy's asymptotic p-value."""
    rng = np.random.default_rng(n + m)
    a, b = rng.normal(size=n), rng.normal(0.05, 1.1, size=m)
    ks = ks_test(a, b)
    expected = stats.ks_2samp(a, b) if n * m <= 1_000_000 else stats.ks_2samp(a, b, method="asymp")
    assert ks.statistic == pytest.approx(expected.statistic, abs=1e-9)
    assert ks.p_value == pytest.approx(expected.pvalue, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 2500),
    m=st.integers(1, 12_000),
    grid=st.sampled_from([0, 1, 10]),  # 0: continuous values; 1, 10: rounded, so values repeat
    seed=st.integers(0, 2**32 - 1),
)
def test_ks_and_bins_on_sorted_samples_equal_the_general_path(n: int, m: int, grid: int, seed: int) -> None:
    """The window's KS and bins from sorted values are the general path's, bit for bit, ties included."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(0.1, 1.2, size=m)
    if grid:
        a, b = np.round(a * grid) / grid, np.round(b * grid) / grid
    reference = KsSample.of(a)
    assert reference is not None
    assert ks_test_sorted(reference, np.sort(b)) == ks_test(a, b)
    edges = np.unique(np.quantile(a, np.linspace(0, 1, 11)[1:-1]))
    assert bin_counts_sorted(np.sort(b), edges).tolist() == bin_counts(b, edges).tolist()


def test_a_reference_sample_with_nan_takes_the_general_path() -> None:
    assert KsSample.of(np.array([0.3, np.nan, 0.1])) is None


def test_chi_square_agrees_with_scipy() -> None:
    ref, win = np.array([120, 80, 0, 40]), np.array([60, 70, 0, 10])
    chi = chi_square_test(ref, win)
    scipy_chi = stats.chi2_contingency(np.array([[120, 80, 40], [60, 70, 10]]), correction=False)
    assert chi.statistic == pytest.approx(scipy_chi.statistic, abs=1e-9)
    assert chi.p_value == pytest.approx(scipy_chi.pvalue, abs=1e-9)


# ---------------------------------------------------------------- a window against the reference


def test_window_statistics_equal_scipy_on_the_windows_values(numeric_bundle: ModelBundle) -> None:
    """Values that went through the window (in chunks, with missing cells) give scipy's KS."""
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((3000, 10)) + np.r_[0.3, np.zeros(9)]
    matrix[rng.random(3000) < 0.1, 0] = np.nan
    monitor = DriftMonitor(window_events=3000)
    monitor.register(numeric_bundle)
    (report,) = feed(monitor, numeric_bundle, matrix)
    ref = numeric_bundle.reference.numeric["f00"]
    f00 = report.features[0]
    present = matrix[:, 0][~np.isnan(matrix[:, 0])]
    expected = stats.ks_2samp(ref.sample, present, method="asymp")
    assert f00.ks_statistic == pytest.approx(expected.statistic, abs=1e-9)
    assert f00.ks_p_value == pytest.approx(expected.pvalue, abs=1e-9)
    assert f00.count == present.size
    assert f00.missing_rate == pytest.approx(1 - present.size / 3000)
    assert f00.missing_rate_change == pytest.approx(f00.missing_rate - ref.missing / ref.total)
    bins = np.bincount(np.searchsorted(ref.edges, present), minlength=len(ref.edges) + 1)
    assert f00.psi == pytest.approx(psi(ref.counts, bins), abs=1e-12)
    scores = numeric_bundle.predict(matrix)
    score_ks = stats.ks_2samp(numeric_bundle.reference.score.sample, scores, method="asymp")
    assert report.prediction.ks_statistic == pytest.approx(score_ks.statistic, abs=1e-9)


def test_categorical_window_chi_square_equals_scipy(agrawal_bundle: ModelBundle) -> None:
    spec = agrawal_bundle.spec
    j = next(i for i, f in enumerate(spec.features) if f.kind is FeatureKind.categorical)
    feature = spec.features[j]
    rng = np.random.default_rng(8)
    matrix = np.zeros((2000, len(spec.features)))
    k = len(feature.categories)
    # skewed toward the first category, and 5% categories training never saw (code k)
    codes = rng.choice(k + 1, size=2000, p=np.r_[0.4, np.full(k - 1, 0.55 / (k - 1)), 0.05])
    matrix[:, j] = codes
    monitor = DriftMonitor(window_events=2000)
    monitor.register(agrawal_bundle)
    (report,) = feed(monitor, agrawal_bundle, matrix)
    result = report.features[j]
    ref = agrawal_bundle.reference.categorical[feature.name]
    table = np.array(
        [[ref.frequencies[c] for c in feature.categories] + [0], np.bincount(codes, minlength=k + 1)],
        dtype=float,
    )
    expected = stats.chi2_contingency(table[:, table.sum(axis=0) > 0], correction=False)
    assert result.chi2_statistic == pytest.approx(expected.statistic, abs=1e-9)
    assert result.chi2_p_value == pytest.approx(expected.pvalue, abs=1e-9)
    assert result.drifted and feature.name in report.drifted_features


# ---------------------------------------------------------------- windows


def test_windows_close_on_event_count_exactly(numeric_bundle: ModelBundle) -> None:
    matrix = np.random.default_rng(0).standard_normal((10_500, 10))
    monitor = DriftMonitor(window_events=2500, window_s=3600)
    monitor.register(numeric_bundle)
    reports = feed(monitor, numeric_bundle, matrix, chunk=777)
    assert [r.events for r in reports] == [2500] * 4
    assert [(r.spans[0].first_offset, r.spans[0].last_offset) for r in reports] == [
        (0, 2499),
        (2500, 4999),
        (5000, 7499),
        (7500, 9999),
    ]
    assert all(r.closed_by == "events" for r in reports)
    assert monitor.open_events() == 500


def test_windows_close_on_event_time(numeric_bundle: ModelBundle) -> None:
    """Events 1 ms apart, windows of 1 s of event time: 1000 events each."""
    matrix = np.random.default_rng(1).standard_normal((3500, 10))
    monitor = DriftMonitor(window_events=100_000, window_s=1.0)
    monitor.register(numeric_bundle)
    reports = feed(monitor, numeric_bundle, matrix, chunk=640)
    assert [r.events for r in reports] == [1000, 1000, 1000]
    assert [r.start_event_time for r in reports] == [0, 1000, 2000]
    assert all(r.closed_by == "time" for r in reports)


def test_events_of_an_unregistered_version_are_counted_not_windowed(numeric_bundle: ModelBundle) -> None:
    monitor = DriftMonitor(window_events=10)
    columns = columns_for(numeric_bundle, np.zeros((25, 10)))
    assert monitor.observe(columns) == []
    assert monitor.unknown_version_events == 25


# ---------------------------------------------------------------- what an operator sees


def test_stationary_stream_raises_no_alert(numeric_bundle: ModelBundle) -> None:
    stream = numeric_frame(50_000, n_features=10, seed=12).drop(columns=["y"]).to_numpy()
    monitor = DriftMonitor(window_events=5000)
    monitor.register(numeric_bundle)
    reports = feed(monitor, numeric_bundle, stream)
    assert len(reports) == 10
    assert [alert_for(r) for r in reports] == [None] * 10
    assert max(f.psi for r in reports for f in r.features) < 0.05


def test_a_shift_on_two_features_alerts_on_exactly_those(numeric_bundle: ModelBundle) -> None:
    stream = numeric_frame(50_000, n_features=10, seed=13).drop(columns=["y"])
    shifted = stream.copy()
    shifted.loc[25_000:, ["f03", "f07"]] += 1.0  # one standard deviation
    monitor = DriftMonitor(DriftThresholds(), window_events=4000)
    monitor.register(numeric_bundle)
    reports = feed(monitor, numeric_bundle, pd.DataFrame(shifted).to_numpy())
    before = [r for r in reports if r.spans[0].last_offset < 25_000]
    after = [r for r in reports if r.spans[0].first_offset >= 25_000]
    assert before and all(alert_for(r) is None for r in before)
    first_after = alert_for(after[0])
    assert first_after is not None
    assert sorted(f.feature for f in first_after.features) == ["f03", "f07"]
    assert all(0.8 < f.mean_shift_sd < 1.2 for f in first_after.features)
    assert "f03" in first_after.message and "f07" in first_after.message


def test_adwin_on_the_score_stream_names_where_it_changed(numeric_bundle: ModelBundle) -> None:
    rng = np.random.default_rng(2)
    stream = rng.standard_normal((8000, 10))
    stream[4000:, 0] += 3.0  # f00 drives the score
    monitor = DriftMonitor(window_events=8000)
    monitor.register(numeric_bundle)
    (report,) = feed(monitor, numeric_bundle, stream, chunk=500)
    adwin = [c for c in report.changes if c.detector == "adwin"]
    assert adwin, "ADWIN saw no change in the score stream"
    first = adwin[0]
    assert 4000 <= first.offset < 4600
    assert first.event_id == f"e{first.offset}" and first.event_time == first.offset
    assert first.stream == "score" and first.position == first.offset + 1
