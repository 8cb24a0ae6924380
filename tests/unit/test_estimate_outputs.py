"""Where estimates go without a broker: the drift step's messages, the learn path's checks, /metrics,
the dashboard and the model report."""

from __future__ import annotations

import math
import re

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from schemas import headers as h
from schemas.estimation import EstimateCheck, EstimatedKpiAlert, PerformanceEstimate
from schemas.feedback import JoinCounts, MetricsSnapshot
from schemas.lifecycle import RetrainRequest
from scoring.drift import DriftMonitor, MonitorColumns
from scoring.feedback.loop import Learner
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import numeric_frame
from scoring.offline.training import train_bundle
from scoring.report import ModelReport, ReportInput
from streams.services.drift.step import DriftStep
from streams.services.learn.estimates import EstimateChecks, estimate_line
from streams.services.shared.intake import Refusals
from streams.settings import Settings
from streams.web.estimate_board import EstimateBoard
from streams.web.estimates import EstimateGauges
from tests.unit.fake_kafka import FakeRecord

WINDOW = 1_000


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    return train_bundle(numeric_frame(8_000, n_features=5, seed=41), "y", name="est", num_trees=20)


def monitor_message(bundle: ModelBundle, rows: np.ndarray, first: int) -> bytes:
    offsets = list(range(first, first + len(rows)))
    return orjson.dumps(
        {
            "model_name": bundle.name,
            "model_version": bundle.version,
            "source_topic": "features",
            "partition": 0,
            "offsets": offsets,
            "event_ids": [f"e{o}" for o in offsets],
            "entity_ids": [f"u{o}" for o in offsets],
            "event_times": offsets,
            "scores": bundle.predict(rows),
            "feature_names": bundle.spec.names,
            "rows": rows,
            "schema_version": 1,
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def stream(bundle: ModelBundle, n: int, seed: int, squeeze: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Rows and labels; ``squeeze`` < 1 pulls the inputs towards 0, where this model decides worse."""
    frame = numeric_frame(n, n_features=5, seed=seed)
    features = frame.drop(columns="y") * squeeze
    return bundle.spec.encode_frame(features), frame["y"].to_numpy(float)


def drift_outputs(step: DriftStep, bundle: ModelBundle, rows: np.ndarray) -> list[tuple]:
    """What the drift step emits for ``rows`` in monitoring records of 500: (topic, key, value, headers)."""
    out: list[tuple] = []
    emit = lambda *message: out.append(message)  # noqa: E731
    for start in range(0, len(rows), 500):
        record = FakeRecord(
            "monitor", 0, start // 500, monitor_message(bundle, rows[start : start + 500], start)
        )
        step.handle(record, emit)
    return out


def test_the_drift_step_sends_each_windows_estimate_and_alerts_when_it_falls(bundle: ModelBundle) -> None:
    settings = Settings(alert_kpi_min=0.75)
    heard = []
    step = DriftStep(
        settings,
        DriftMonitor(window_events=WINDOW),
        Refusals(),
        on_estimate=lambda e, alert: heard.append((e.window, alert is not None)),
    )
    step.register(bundle)
    good, _ = stream(bundle, 2 * WINDOW, seed=42)
    bad, _ = stream(bundle, 2 * WINDOW, seed=43, squeeze=0.15)

    out = drift_outputs(step, bundle, np.vstack([good, bad]))

    kinds = [(topic, orjson.loads(body).get("type")) for topic, _, body, _ in out]
    drift, retrain = settings.topic_drift, settings.topic_retrain
    estimates = [
        PerformanceEstimate.model_validate_json(b) for t, _, b, _ in out if b"performance_estimate" in b
    ]
    alerts = [EstimatedKpiAlert.model_validate_json(b) for t, _, b, _ in out if b"estimated_kpi_alert" in b]
    requests = [RetrainRequest.model_validate_json(b) for t, _, b, _ in out if t == retrain]
    accuracy = [e.metric("accuracy").estimate for e in estimates]
    print(f"estimated accuracy per window {[round(a, 4) for a in accuracy]}; {alerts[0].message}")
    assert [e.window for e in estimates] == [0, 1, 2, 3]
    assert kinds.index((drift, "drift_report")) < kinds.index((drift, "performance_estimate"))
    assert accuracy[0] > 0.75 > accuracy[2]
    assert [a.window for a in alerts] == [2]  # once for the episode, not again in window 3
    assert [(r.trigger, r.model) for r in requests if r.trigger == "estimated"] == [("estimated", "est:1")]
    headers = dict(next(hs for _, _, b, hs in out if b"performance_estimate" in b))
    assert (
        headers[h.CE_TYPE] == h.ESTIMATE_CE_TYPE.encode()
        and headers[h.CE_ID] == f"est:1:{step.epoch}:0:estimate".encode()
    )
    assert heard == [(0, False), (1, False), (2, True), (3, False)]
    assert (step.counters.estimates, step.counters.estimate_alerts) == (4, 1)
    assert "est:1 window 3" in estimate_line(estimates[3]) and "accuracy" in estimate_line(estimates[3])


def test_the_learn_path_checks_each_window_once_its_labels_came(bundle: ModelBundle) -> None:
    step = DriftStep(Settings(), DriftMonitor(window_events=WINDOW), Refusals())
    step.register(bundle)
    rows, y = stream(bundle, 2 * WINDOW + 300, seed=44)
    sent = drift_outputs(step, bundle, rows)
    learner = Learner(bundle.spec, bundle.reference, "binary")
    checks = EstimateChecks()
    checks.follow(learner)
    for start in range(0, len(rows), 500):
        learner.observe(_columns(bundle, rows[start : start + 500], start))
    for i, (_, _, body, _) in enumerate(sent):  # every drift message: only the estimates are kept
        checks.on_drift(FakeRecord("drift", 0, i, body))
    checks.on_drift(FakeRecord("drift", 0, len(sent), b"not json"))  # counted, not raised
    for i in range(WINDOW + 500):  # all labels of window 0, half of window 1
        learner.label(f"e{i}", y[i], i)

    first = checks.settle(learner.snapshot([]), learner.join.newest_time, learner.join.ttl_ms)
    restored = EstimateChecks()
    restored.restore(orjson.loads(orjson.dumps(checks.state())))  # as a checkpoint carries it
    quiet = restored.settle(learner.snapshot([]), learner.join.newest_time, learner.join.ttl_ms)

    assert [(c.window, c.labelled) for c in first.estimate_checks] == [(0, WINDOW)]
    assert quiet.estimate_checks == []  # window 1 waits for the rest of its labels
    assert checks.counters == {"estimates": 2, "checks": 1, "disagree": 0, "unreadable": 1}
    print(first.estimate_checks[0].message)
    assert not first.estimate_checks[0].disagree


def _columns(bundle: ModelBundle, rows: np.ndarray, first: int) -> MonitorColumns:
    offsets = list(range(first, first + len(rows)))
    ids = [f"e{o}" for o in offsets]
    return MonitorColumns(
        bundle.name, bundle.version, "features", 0, offsets, ids, offsets, bundle.predict(rows), rows
    )


def _estimate(window: int, accuracy: float, at: int = 1_000) -> PerformanceEstimate:
    return PerformanceEstimate.model_validate(
        {
            "model_name": "loans",
            "model_version": "1",
            "task": "binary",
            "window": window,
            "events": 5000,
            "band_z": 3.0,
            "metrics": [
                {
                    "metric": "accuracy",
                    "estimate": accuracy,
                    "std": 0.01,
                    "lower": accuracy - 0.03,
                    "upper": accuracy + 0.03,
                    "method": "cbpe",
                    "uncertainty": "analytic",
                },
            ],
            "created_at": at,
        }
    )


def _check(window: int, estimate: float, realized: float, disagree: bool) -> EstimateCheck:
    return EstimateCheck.model_validate(
        {
            "model_name": "loans",
            "model_version": "1",
            "window": window,
            "events": 5000,
            "labelled": 5000,
            "checks": [
                {
                    "metric": "accuracy",
                    "estimate": estimate,
                    "realized": realized,
                    "difference": realized - estimate,
                    "std": 0.01,
                    "lower": estimate - 0.03,
                    "upper": estimate + 0.03,
                    "disagree": disagree,
                },
            ],
            "disagree": disagree,
            "message": f"loans:1 window {window}: "
            + ("estimate and labels disagree" if disagree else "agree"),
            "created_at": 2_000,
        }
    )


def _samples(text: str, name: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2)) for m in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M)}


def _snapshot(*checks: EstimateCheck) -> MetricsSnapshot:
    """A KPI snapshot carrying nothing but estimate checks."""
    labels = JoinCounts(matched=1, pending_events=0, pending_labels=0, expired_events=0, unmatched_labels=0)
    return MetricsSnapshot(
        task="binary",
        window=10,
        primary_metric="accuracy",
        champion="loans:1",
        challenger="river:default",
        labels=labels,
        kpis=[],
        estimate_checks=list(checks),
        created_at=1,
    )


def test_metrics_carry_the_estimate_and_its_band_from_registration_on() -> None:
    registry = CollectorRegistry()
    gauges = EstimateGauges(registry)
    gauges.watch("loans", "1", ["accuracy", "auc"])
    before = generate_latest(registry).decode()
    gauges.on_estimate(_estimate(0, 0.8), None)
    snapshot = _snapshot(_check(0, 0.8, 0.5, True))
    gauges.on_snapshot(snapshot)
    after = generate_latest(registry).decode()

    series = 'metric="accuracy",model_name="loans",model_version="1"'  # labels as the client sorts them
    assert math.isnan(_samples(before, "streamscore_estimated_kpi")[series])
    assert len(_samples(before, "streamscore_estimated_kpi_lower")) == 2  # accuracy and auc, from the start
    assert _samples(after, "streamscore_estimated_kpi")[series] == 0.8
    assert _samples(after, "streamscore_estimated_kpi_lower")[series] == pytest.approx(0.77)
    assert _samples(after, "streamscore_estimated_kpi_upper")[series] == pytest.approx(0.83)
    checks = _samples(after, "streamscore_estimate_checks_total")
    assert checks == {'disagree="true",model_name="loans",model_version="1"': 1.0}


def test_the_dashboard_puts_the_realized_kpi_beside_the_estimate_of_its_window() -> None:
    alerts = []
    board = EstimateBoard(points=3, on_alert=lambda kind, message, at: alerts.append(kind))
    alert = EstimatedKpiAlert(
        model_name="loans",
        model_version="1",
        window=3,
        events=5000,
        metric="accuracy",
        estimate=0.6,
        lower=0.57,
        upper=0.63,
        threshold=0.7,
        message="low",
        created_at=1,
    )
    for window, accuracy in enumerate([0.8, 0.81, 0.79, 0.6]):
        board.on_estimate(_estimate(window, accuracy), alert if window == 3 else None)
    board.on_snapshot(_snapshot(_check(2, 0.79, 0.78, False), _check(3, 0.6, 0.2, True)))

    windows = orjson.loads(orjson.dumps(board.data()))["windows"]
    assert [(w["window"], w["estimate"], w["realized"]) for w in windows] == [
        (1, 0.81, None),
        (2, 0.79, 0.78),
        (3, 0.6, 0.2),
    ]
    assert [w["disagree"] for w in windows] == [None, False, True]
    assert alerts == ["estimated_kpi", "estimate_check"]


def test_the_model_report_lists_each_checked_window_and_flags_a_disagreement(
    agrawal_bundle: ModelBundle,
) -> None:
    from scoring.offline.synthetic import agrawal_frame

    frame = agrawal_frame(200, seed=5, classification_function=2)
    checks = (_check(4, 0.8, 0.79, False), _check(5, 0.8, 0.3, True))
    data = ReportInput(
        frame.drop(columns="approved"), frame["approved"].to_numpy(float), "s", estimate_checks=checks
    )
    empty = ReportInput(frame.drop(columns="approved"), frame["approved"].to_numpy(float), "s")

    section = ModelReport(agrawal_bundle, data).estimates()

    assert "2 windows checked; in 1 estimate and labels disagree" in section
    assert (
        section.count('<tr class="flag">') == 1
        and "loans:1 window 5: estimate and labels disagree" in section
    )
    assert (
        "No drift window of this version has been checked yet"
        in ModelReport(agrawal_bundle, empty).estimates()
    )
