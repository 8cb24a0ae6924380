"""The dashboard's sampling without Kafka: percentiles, rates, version timeline, alerts."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.drift import DriftReport
from schemas.feedback import MetricsSnapshot
from scoring.model.bundle import ModelBundle
from streams.services.loop.stats import LoopStats
from streams.services.loop.stats import PartitionLag as LoopLag
from streams.services.score.handler import BatchStats, ScoreHandler
from streams.services.score.telemetry import LATENCY_BUCKETS, Histogram, ScoreCounters
from streams.settings import Settings
from streams.web.dashboard import Dashboard, bucket_delta, histogram_quantile, page, rate
from streams.web.metrics import LagCollector

INF = math.inf


def test_histogram_quantile_by_hand() -> None:
    # 10 observations: 4 in (0, 1], 4 in (1, 2], 2 in (2, 4]
    buckets = [(1.0, 4), (2.0, 8), (4.0, 10), (INF, 10)]
    assert histogram_quantile(0.2, buckets) == pytest.approx(0.5)  # rank 2 of 4 in the first bucket, from 0
    assert histogram_quantile(0.5, buckets) == pytest.approx(1.25)  # rank 5: 1 of 4 into (1, 2]
    assert histogram_quantile(0.9, buckets) == pytest.approx(3.0)  # rank 9: 1 of 2 into (2, 4]
    assert histogram_quantile(1.0, buckets) == pytest.approx(4.0)


def test_histogram_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    assert histogram_quantile(0.99, [(1.0, 1), (2.0, 1), (INF, 100)]) == 2.0


def test_histogram_quantile_of_nothing_is_none_and_q_is_checked() -> None:
    assert histogram_quantile(0.5, [(1.0, 0), (INF, 0)]) is None
    with pytest.raises(ValueError):
        histogram_quantile(0.0, [(1.0, 1), (INF, 1)])


@given(st.lists(st.floats(0.0001, 100.0), min_size=1, max_size=300), st.sampled_from([0.5, 0.95, 0.99]))
def test_histogram_quantile_falls_in_the_bucket_of_the_exact_quantile(values: list[float], q: float) -> None:
    histogram = Histogram(LATENCY_BUCKETS)
    histogram.observe_many(np.array(values))
    buckets = [(float(b), c) for b, c in histogram.cumulative()]
    exact = float(np.quantile(values, q, method="inverted_cdf"))  # the rank-th smallest observation

    estimate = histogram_quantile(q, buckets)

    bounds = (0.0, *LATENCY_BUCKETS)
    i = int(np.searchsorted(LATENCY_BUCKETS, exact, side="left"))
    if i == len(LATENCY_BUCKETS):  # past the last bound: reported as that bound
        assert estimate == LATENCY_BUCKETS[-1]
    else:
        assert bounds[i] <= estimate <= bounds[i + 1]


def test_bucket_delta_is_the_histogram_of_what_came_between_two_reads() -> None:
    both, second = Histogram(LATENCY_BUCKETS), Histogram(LATENCY_BUCKETS)
    both.observe_many(np.array([0.001, 0.02, 7.0]))
    before = both.cumulative()
    later = np.array([0.3, 0.3, 45.0, 90.0])
    both.observe_many(later)
    second.observe_many(later)

    assert bucket_delta(both.cumulative(), before) == [(float(b), c) for b, c in second.cumulative()]
    assert bucket_delta(before, None)[-1] == (INF, 3)


def test_rate() -> None:
    assert rate(1500, 500, 2.0) == 500.0
    assert rate(10, 0, 0.0) == 0.0


class _Lag(LagCollector):
    """Lag as a service loop's consumer statistics report it."""

    def __init__(self) -> None:
        super().__init__()
        self.stats = LoopStats()
        self.watch("g", self.stats)

    def set(self, lag: int, seconds: float | None) -> None:
        now = time.time()
        self.stats.lag = {("features", 0): LoopLag("features", 0, lag, lag, 0, now)}
        self.stats.last_record_ms = {("features", 0): int((now - (seconds or 0.0)) * 1000)}


def _stats(n: int, latency_ms: int, dead: int = 0) -> BatchStats:
    return BatchStats(
        consumed=n + dead,
        scored=n,
        dead_letters={"validate": dead} if dead else {},
        latencies_ms=[latency_ms] * n,
        event_times_ms=[0] * n,
        scored_at_ms=0,
    )


@pytest.fixture
def board(agrawal_bundle: ModelBundle) -> tuple[Dashboard, ScoreCounters, ScoreHandler, _Lag]:
    counters, lag = ScoreCounters(), _Lag()
    handler = ScoreHandler(Settings(), agrawal_bundle)
    return Dashboard(Settings(dashboard_points=5), counters, handler, lag), counters, handler, lag


def test_rates_and_percentiles_cover_only_the_last_interval(board) -> None:
    dashboard, counters, _, _ = board
    t0 = time.time()
    counters.record(_stats(1000, latency_ms=3), 0.01)
    dashboard.sample(t0)
    counters.record(_stats(2000, latency_ms=700, dead=50), 0.01)  # slower events, then nothing

    later = dashboard.sample(t0 + 2.0)
    idle = dashboard.sample(t0 + 3.0)

    assert later.predictions_per_s == 1000.0
    assert later.events_per_s == 1025.0
    assert later.dead_letters_per_s == 25.0
    assert 0.5 < later.p50 <= 1.0  # the 700 ms events alone, not the 3 ms ones before
    assert idle.predictions_per_s == 0.0 and idle.p99 is None
    assert later.lag is None, "no lag sampled yet"


def test_ring_buffer_keeps_the_last_points_and_data_is_plain_json(board) -> None:
    dashboard, counters, _, _ = board
    for i in range(8):
        counters.record(_stats(10 * (i + 1), latency_ms=5), 0.01)
        dashboard.sample(1000.0 + i)

    data = orjson.loads(orjson.dumps(dashboard.data()))  # raises on NaN or anything not JSON

    assert data["series"]["at"] == [1003.0, 1004.0, 1005.0, 1006.0, 1007.0]
    assert data["series"]["predictions_per_s"] == [40.0, 50.0, 60.0, 70.0, 80.0]
    assert data["totals"]["scored"] == sum(10 * (i + 1) for i in range(8))
    assert data["kpis"] is None


def test_version_timeline_appends_when_the_handler_swaps(board, agrawal_bundle: ModelBundle) -> None:
    dashboard, _, handler, _ = board
    first_loaded = handler.loaded_at
    dashboard.sample()
    metadata = agrawal_bundle.metadata.model_copy(update={"version": "v2-test"})
    handler.swap(dataclasses.replace(agrawal_bundle, metadata=metadata))
    dashboard.sample()
    dashboard.sample()

    versions = dashboard.data()["versions"]
    assert [v["version"] for v in versions] == [agrawal_bundle.version, "v2-test"]
    assert versions[0]["loaded_at"] == first_loaded < versions[1]["loaded_at"] == handler.loaded_at
    assert dashboard.data()["model"]["version"] == "v2-test"


def test_lag_alerts_once_while_above_the_threshold_and_clears(board) -> None:
    dashboard, _, _, lag = board
    limit = dashboard.settings.alert_lag_records
    for value in (limit - 1, limit + 1, limit + 500, 0):
        lag.set(value, 1.0)
        dashboard.sample()
        if value == limit + 500:
            assert "lag" in dashboard.data()["firing"]
    data = dashboard.data()
    assert [a["kind"] for a in data["alerts"]] == ["lag"]
    assert data["firing"] == {}
    assert data["series"]["lag"][-4:] == [limit - 1, limit + 1, limit + 500, 0]


def test_dead_letter_ratio_alert(board) -> None:
    dashboard, counters, _, _ = board
    dashboard.sample(1000.0)
    counters.record(_stats(100, latency_ms=5, dead=20), 0.01)  # 20 of 120 consumed: 17 %
    dashboard.sample(1001.0)
    assert "dead_letters" in dashboard.data()["firing"]


def _report(drifted: bool) -> DriftReport:
    feature = {
        "feature": "salary",
        "kind": "numeric",
        "count": 100,
        "psi": 0.8 if drifted else 0.01,
        "missing_rate": 0.0,
        "reference_missing_rate": 0.0,
        "missing_rate_change": 0.0,
        "drifted": drifted,
        "reasons": ["PSI 0.80 >= 0.2"] if drifted else [],
    }
    return DriftReport.model_validate(
        {
            "model_name": "loans",
            "model_version": "1",
            "window": 3,
            "events": 100,
            "closed_by": "events",
            "start_event_time": 0,
            "end_event_time": 1,
            "spans": [],
            "features": [feature],
            "prediction": {
                "psi": 0.05,
                "ks_statistic": 0.1,
                "ks_p_value": 0.5,
                "mean": 0.4,
                "reference_mean": 0.4,
                "drifted": False,
            },
            "thresholds": {"psi": 0.2, "p_value": 0.01, "p_value_per_test": 0.005, "tests": 2},
            "drifted_features": ["salary"] if drifted else [],
            "drifted": drifted,
            "created_at": 1_700_000_000_000,
        }
    )


def test_drift_reports_give_the_latest_psi_per_feature_and_alerts_only_when_drifted(board) -> None:
    dashboard, *_ = board
    dashboard.on_drift_report(_report(drifted=False))
    assert dashboard.data()["alerts"] == []
    dashboard.on_drift_report(_report(drifted=True))

    data = dashboard.data()
    assert data["drift"]["features"] == [{"feature": "salary", "psi": 0.8, "drifted": True}]
    assert data["drift"]["threshold"] == 0.2
    assert [a["kind"] for a in data["alerts"]] == ["drift"]
    assert "salary" in data["alerts"][0]["message"]


def _snapshot(accuracy: float, changes: list[dict]) -> MetricsSnapshot:
    def row(model: str, value: float) -> dict:
        return {
            "model": model,
            "segment_feature": "all",
            "segment_value": "all",
            "count": 500,
            "rolling": {"accuracy": value, "auc": None},
            "cumulative": {"accuracy": value},
            "gap_to_overall": None,
            "flagged": False,
        }

    return MetricsSnapshot.model_validate(
        {
            "task": "binary",
            "window": 1000,
            "primary_metric": "accuracy",
            "champion": "loans:1",
            "challenger": "river:logreg",
            "labels": {
                "matched": 500,
                "pending_events": 0,
                "pending_labels": 0,
                "expired_events": 0,
                "unmatched_labels": 0,
            },
            "kpis": [row("loans:1", accuracy), row("river:logreg", 0.8)],
            "changes": changes,
            "created_at": 1_700_000_001_000,
        }
    )


def test_kpi_snapshots_fill_champion_and_challenger_and_alert_on_concept_drift_and_low_kpi(board) -> None:
    dashboard, *_ = board
    change = {
        "detector": "adwin",
        "stream": "error",
        "model_version": "1",
        "source_topic": "features",
        "partition": 2,
        "offset": 77,
        "event_id": "e-77",
        "event_time": 0,
        "position": 400,
    }
    dashboard.on_snapshot(_snapshot(0.9, []))
    dashboard.on_snapshot(_snapshot(0.5, [change]))

    data = dashboard.data()
    assert [m["model"] for m in data["kpis"]["models"]] == ["loans:1", "river:logreg"]
    assert data["kpi_history"][-1] == {"at": 1_700_000_001.0, "champion": 0.5, "challenger": 0.8}
    kinds = [a["kind"] for a in data["alerts"]]
    assert sorted(kinds) == ["concept_drift", "kpi"]
    concept = next(a for a in data["alerts"] if a["kind"] == "concept_drift")
    assert "e-77" in concept["message"] and "@77" in concept["message"]
    assert "kpi" in data["firing"]


def test_page_is_self_contained() -> None:
    html = page()
    assert '"/data"' in html  # polled on the same origin
    for external in ("http://", "https://", "<link", "src="):
        assert external not in html.replace("http://www.w3.org/2000/svg", ""), external


def test_model_info_on_metrics_follows_the_served_bundle(agrawal_bundle: ModelBundle) -> None:
    from prometheus_client import generate_latest

    from streams.web.metrics import worker_registry

    handler = ScoreHandler(Settings(), agrawal_bundle)
    registry = worker_registry(ScoreCounters(), handler).registry

    text = generate_latest(registry).decode()

    # the load time is its own gauge, not a label: a reload of the same version keeps one series
    name, version = agrawal_bundle.name, agrawal_bundle.version
    info = f'streamscore_model_info{{model_name="{name}",model_version="{version}"}} 1.0'
    assert info in text
    assert registry.get_sample_value(
        "streamscore_model_loaded_timestamp_seconds",
        {"model_name": agrawal_bundle.name, "model_version": agrawal_bundle.version},
    ) == pytest.approx(handler.loaded_at)
    metadata = agrawal_bundle.metadata.model_copy(update={"version": "v9"})
    handler.swap(dataclasses.replace(agrawal_bundle, metadata=metadata))
    infos = [
        ln
        for ln in generate_latest(registry).decode().splitlines()
        if ln.startswith("streamscore_model_info{")
    ]
    assert infos == [f'streamscore_model_info{{model_name="{agrawal_bundle.name}",model_version="v9"}} 1.0']


def test_concept_drift_changes_of_a_snapshot_are_counted_on_metrics(agrawal_bundle: ModelBundle) -> None:
    from streams.web.metrics import worker_registry

    metrics = worker_registry(ScoreCounters(), ScoreHandler(Settings(), agrawal_bundle))
    change = {"detector": "page_hinkley", "stream": "error", "model_version": "1", "source_topic": "features",
              "partition": 0, "offset": 5, "event_id": "e-5", "event_time": 0, "position": 9}  # fmt: skip
    metrics.kpis.record(_snapshot(0.9, [change, change]))
    metrics.kpis.record(_snapshot(0.9, []))

    labels = {"model_version": "1", "detector": "page_hinkley"}
    assert metrics.registry.get_sample_value("streamscore_concept_drift_changes_total", labels) == 2
