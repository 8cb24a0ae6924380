"""/metrics of a worker that has seen no event yet: the series an alert or a rate waits for are at 0."""

from __future__ import annotations

import dataclasses

import pytest
from prometheus_client import generate_latest

from schemas.feedback import JoinCounts, MetricsSnapshot
from scoring.lifecycle.decisions import ChallengerMode, Serving
from scoring.model.bundle import ModelBundle
from streams.services.score.handler import BatchStats, ScoreHandler
from streams.services.score.telemetry import ScoreCounters
from streams.settings import Role, Settings
from streams.web.dashboard import histogram_quantile
from streams.web.metrics import WorkerMetrics, worker_registry


def _fresh(
    bundle: ModelBundle, roles: frozenset[Role] = frozenset(Role)
) -> tuple[WorkerMetrics, ScoreHandler]:
    handler = ScoreHandler(Settings(), bundle)
    return worker_registry(ScoreCounters(), handler, roles), handler


def _version(bundle: ModelBundle, version: str) -> ModelBundle:
    return dataclasses.replace(bundle, metadata=bundle.metadata.model_copy(update={"version": version}))


def _sample(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_fresh_worker_exports_every_known_counter_at_zero(agrawal_bundle: ModelBundle) -> None:
    metrics, _ = _fresh(agrawal_bundle)
    model = {"model_name": agrawal_bundle.name, "model_version": agrawal_bundle.version}

    for stage in ("decode", "validate", "score"):
        assert _sample(metrics, "streamscore_dead_letters_total", stage=stage) == 0
    assert _sample(metrics, "streamscore_drift_alerts_total", **model) == 0
    assert _sample(metrics, "streamscore_drift_windows_total", **model) == 0
    for detector in ("cusum", "adwin", "page_hinkley"):
        assert _sample(metrics, "streamscore_concept_drift_changes_total",
                       model_version=agrawal_bundle.version, detector=detector) == 0  # fmt: skip
        assert _sample(metrics, "streamscore_drift_detector_changes_total",
                       **model, detector=detector, stream="score") == 0  # fmt: skip
    for status in ("firing", "resolved"):  # what StreamscoreConceptDrift's increase() needs
        for severity in ("warning", "critical"):
            labels = {"model_version": agrawal_bundle.version, "status": status, "severity": severity}
            assert _sample(metrics, "streamscore_concept_drift_alerts_total", **labels) == 0
    for state in JoinCounts.model_fields:
        assert _sample(metrics, "streamscore_label_join", state=state) == 0
    assert _sample(metrics, "streamscore_challenger_share", model_name="", model_version="", mode="none") == 0


def test_statistics_without_a_value_yet_are_not_invented(agrawal_bundle: ModelBundle) -> None:
    text = generate_latest(_fresh(agrawal_bundle)[0].registry).decode()
    # a PSI or a KPI of 0 would be a claim (a KPI at 0 would even fire StreamscoreKpiLow)
    for family in ("streamscore_drift_psi", "streamscore_kpi_rolling", "streamscore_prediction_drift_psi",
                   "streamscore_drift_drifted", "streamscore_prediction_drift_drifted"):  # fmt: skip
        assert f"{family}{{" not in text, family


def test_a_score_only_worker_exports_no_drift_or_learner_series(agrawal_bundle: ModelBundle) -> None:
    metrics, _ = _fresh(agrawal_bundle, frozenset({Role.score}))
    text = generate_latest(metrics.registry).decode()
    assert _sample(metrics, "streamscore_dead_letters_total", stage="validate") == 0
    for family in ("streamscore_drift_alerts_total{", "streamscore_concept_drift_changes_total{",
                   "streamscore_concept_drift_alerts_total{", "streamscore_label_join{"):  # fmt: skip
        assert family not in text, family


def test_a_new_model_gets_its_series_at_zero_and_the_old_keep_their_counts(
    agrawal_bundle: ModelBundle,
) -> None:
    metrics, handler = _fresh(agrawal_bundle)
    v1 = agrawal_bundle.version
    metrics.kpis.concept_changes.labels(v1, "adwin").inc()

    serving = Serving(_version(agrawal_bundle, "v2"), _version(agrawal_bundle, "v3"), ChallengerMode.shadow)
    handler.serve(serving)
    metrics.serve(serving)

    concept = "streamscore_concept_drift_changes_total"
    assert _sample(metrics, concept, model_version=v1, detector="adwin") == 1
    for version in ("v2", "v3"):
        assert _sample(metrics, concept, model_version=version, detector="adwin") == 0
        assert _sample(metrics, "streamscore_drift_alerts_total",
                       model_name=agrawal_bundle.name, model_version=version) == 0  # fmt: skip
    share = {"model_name": agrawal_bundle.name, "model_version": "v3", "mode": "shadow"}
    assert _sample(metrics, "streamscore_challenger_share", **share) == 0
    assert (
        _sample(metrics, "streamscore_challenger_share", model_name="", model_version="", mode="none") is None
    )


def test_the_first_concept_change_moves_a_series_that_was_scraped_at_zero(
    agrawal_bundle: ModelBundle,
) -> None:
    metrics, _ = _fresh(agrawal_bundle)
    labels = {"model_version": agrawal_bundle.version, "detector": "page_hinkley"}
    before = _sample(metrics, "streamscore_concept_drift_changes_total", **labels)
    change = {"detector": "page_hinkley", "stream": "error", "model_version": agrawal_bundle.version,
              "source_topic": "features", "partition": 0, "offset": 5, "event_id": "e-5", "event_time": 0,
              "position": 9}  # fmt: skip
    metrics.kpis.record(_snapshot_with(change))
    assert (before, _sample(metrics, "streamscore_concept_drift_changes_total", **labels)) == (0, 1)


def _snapshot_with(change: dict) -> MetricsSnapshot:
    return MetricsSnapshot.model_validate(
        {
            "task": "binary",
            "window": 1000,
            "primary_metric": "accuracy",
            "champion": "loans:1",
            "challenger": "river:default",
            "kpis": [],
            "created_at": 0,
            "changes": [change],
            "labels": {
                "matched": 1,
                "pending_events": 0,
                "pending_labels": 0,
                "expired_events": 0,
                "unmatched_labels": 0,
            },
        }
    )


DAY = 86_400.0


@pytest.mark.parametrize(
    ("age_s", "between"),
    [(2.0, (1.0, 2.5)), (7_200.0, (3_600.0, 21_600.0)), (90 * DAY, (30 * DAY, 365 * DAY))],
)
def test_event_time_lag_p99_is_not_pinned_at_a_minute(
    agrawal_bundle: ModelBundle, age_s: float, between: tuple[float, float]
) -> None:
    """An hour-old or replayed event's age shows as such, where it used to read as the 60 s top bucket."""
    counters = ScoreCounters()
    metrics = worker_registry(counters, ScoreHandler(Settings(), agrawal_bundle))
    now_ms = 1_800_000_000_000
    ages_ms = [int(age_s * 1000)] * 100
    times = [now_ms - a for a in ages_ms]
    counters.record(
        BatchStats(100, 100, latencies_ms=[5] * 100, event_times_ms=times, scored_at_ms=now_ms), 0.01
    )
    buckets = [
        (float(s.labels["le"]), s.value)
        for family in metrics.registry.collect()
        if family.name == "streamscore_event_time_lag_seconds"
        for s in family.samples
        if s.name.endswith("_bucket")
    ]
    p99 = histogram_quantile(0.99, buckets)
    assert between[0] <= p99 <= between[1]
