"""A multiclass model's drift and estimated KPIs from a running worker, before any label (issue 28, C).

One worker with the score and drift roles serves a 3-class model with string classes (billing,
fraud, support) on the embedded broker: 20 windows of 2,000 tickets, the second half with every
ticket's ``messages`` held at 3 (a covariate shift: the tickets change, the rule routing them does
not). No label is produced at all. The drift report of window 10, where the shift starts, names
``messages`` and flags the predicted-class distribution; the estimated accuracy falls in the shifted
windows and crosses the alert threshold there; on the stationary half the estimated accuracy holds
the realized one (computed here from the labels the test keeps to itself) within its band in at
least 9 of 10 windows.
"""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from schemas.drift import PREDICTED_CLASS, DriftAlert, DriftReport
from schemas.estimation import EstimatedKpiAlert, PerformanceEstimate
from scoring.drift.classes import ClassBaseline, compare_classes
from scoring.estimation import PerformanceEstimator
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import MULTICLASS_TARGET, events_from_frame, multiclass_frame
from scoring.offline.training import train_bundle
from streams.kafka.producer import event_payloads
from tests.integration.kafka_tools import WorkerProcess, produce, read_topic

pytestmark = pytest.mark.integration

WINDOW = 2_000
WINDOWS = 20  # the shift from window 10 on
INPUTS = ["messages", "x0", "channel"]
CLASSES = ["billing", "fraud", "support"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    folder = tmp_path_factory.mktemp("mcdrift")
    frame = multiclass_frame(10_000, seed=3)[[*INPUTS, MULTICLASS_TARGET]]
    train_bundle(frame, MULTICLASS_TARGET, folder / "queues", task="multiclass", name="queues", num_trees=60)
    return ModelBundle.load(folder / "queues")


def test_a_shift_is_named_and_the_estimated_accuracy_falls_before_any_label(
    bootstrap, topic_env, tmp_path, workers, model: ModelBundle
) -> None:
    half = WINDOWS // 2 * WINDOW
    steady = multiclass_frame(half, seed=61)
    shifted = multiclass_frame(half, seed=62, fixed={"messages": 3})
    tickets = pd.concat([steady, shifted], ignore_index=True)
    labels = tickets.pop(MULTICLASS_TARGET)  # kept here: no label goes to the worker
    env = {
        **topic_env,
        "STREAMSCORE_ROLES": "score,drift",
        "STREAMSCORE_PARTITIONS": "1",  # offset i of features is ticket i: the spans say which tickets
        "STREAMSCORE_DRIFT_WINDOW_EVENTS": str(WINDOW),
        "STREAMSCORE_ALERT_KPI_MIN": "0.65",
        "STREAMSCORE_REGISTRY": str(tmp_path / "registry"),
    }
    worker = WorkerProcess(env, model.path, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready()

    produce(
        bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], list(event_payloads(events_from_frame(tickets[INPUTS])))
    )
    worker.wait_stats(lambda s: s["drift"]["estimates"] >= WINDOWS, "20 windows estimated", 300)
    records = read_topic(bootstrap, env["STREAMSCORE_TOPIC_DRIFT"], 2 * WINDOWS, idle_s=1.0)
    messages = [orjson.loads(r.value) for r in records]
    reports = {m["window"]: DriftReport.model_validate(m) for m in messages if m["type"] == "drift_report"}
    estimates = {
        m["window"]: PerformanceEstimate.model_validate(m)
        for m in messages
        if m["type"] == "performance_estimate"
    }
    alerts = [DriftAlert.model_validate(m) for m in messages if m["type"] == "drift_alert"]
    kpi_alerts = [EstimatedKpiAlert.model_validate(m) for m in messages if m["type"] == "estimated_kpi_alert"]
    stats = worker.get("/stats")
    assert sorted(reports)[:WINDOWS] == list(range(WINDOWS)) and sorted(estimates)[:WINDOWS] == list(
        range(WINDOWS)
    )
    assert stats["drift"]["unreadable"] == 0 and stats["drift"]["windows_without_estimate"] == 0
    assert "learn" not in stats, "no learn role: the estimates owe nothing to labels"
    exposition = worker.get_text("/metrics")
    assert 'streamscore_drift_chi2_p_value{feature="(predicted class)"' in exposition
    assert 'streamscore_drift_ks_p_value{feature="(probability fraud)"' in exposition

    # the window the shift starts in names it, and its predicted classes moved
    first = reports[WINDOWS // 2]
    print("window 10:", first.drifted_features, first.classes.predicted.counts, first.classes.drifted_tests())
    assert first.schema_version == 3 and "messages" in first.drifted_features
    assert first.classes is not None and first.classes.predicted.drifted
    assert list(first.classes.predicted.counts) == CLASSES
    assert not any(reports[w].drifted_features for w in range(WINDOWS // 2)), "no feature drifts before it"
    assert any(
        a.window == WINDOWS // 2 and PREDICTED_CLASS in [f.feature for f in a.features] for a in alerts
    )

    # the estimated accuracy: within its band of the realized one on the stationary half
    y = np.array([model.class_index(v) for v in labels])
    predicted = model.predict(model.spec.encode_frame(tickets[INPUTS])).argmax(axis=1)
    inside, rows = 0, []
    for w in range(WINDOWS // 2):
        estimate = estimates[w]
        [span] = estimate.spans
        realized = float(
            np.mean(
                predicted[span.first_offset : span.last_offset + 1]
                == y[span.first_offset : span.last_offset + 1]
            )
        )
        accuracy = estimate.metric("accuracy")
        assert span.last_offset - span.first_offset + 1 == WINDOW and accuracy is not None
        inside += accuracy.lower <= realized <= accuracy.upper
        rows.append(
            f"window {w}: estimated {accuracy.estimate:.4f} [{accuracy.lower:.4f}, {accuracy.upper:.4f}], "
            f"realized {realized:.4f}"
        )
    print("\n".join(rows))
    assert inside >= 9, rows

    # ... and falling in the shifted windows, before any label: the alert fires there
    steady_estimates = [estimates[w].metric("accuracy").estimate for w in range(WINDOWS // 2)]
    shifted_estimates = [estimates[w].metric("accuracy").estimate for w in range(WINDOWS // 2, WINDOWS)]
    print(
        f"estimated accuracy: stationary {np.mean(steady_estimates):.4f}, "
        f"shifted {np.mean(shifted_estimates):.4f}"
    )
    assert max(shifted_estimates) < min(steady_estimates)
    assert np.mean(shifted_estimates) < np.mean(steady_estimates) - 0.03
    firing = [a for a in kpi_alerts if a.status == "firing"]
    assert firing and firing[0].metric == "accuracy" and firing[0].window >= WINDOWS // 2


def test_merged_windows_carry_the_class_statistics_and_estimate_of_their_events(
    bootstrap, topic_env, tmp_path, workers, model: ModelBundle
) -> None:
    """Per-partition windows merged (``STREAMSCORE_DRIFT_WINDOWS=partitions``): each report's class
    statistics and estimate are those of its events, recomputed here from the features topic."""
    partitions, windows = 4, 4
    tickets = multiclass_frame(windows * WINDOW + 400, seed=63)[INPUTS]
    env = {
        **topic_env,
        "STREAMSCORE_ROLES": "score,drift",
        "STREAMSCORE_PARTITIONS": str(partitions),
        "STREAMSCORE_DRIFT_WINDOWS": "partitions",
        "STREAMSCORE_DRIFT_WINDOW_EVENTS": str(WINDOW),
        "STREAMSCORE_REGISTRY": str(tmp_path / "registry"),
    }
    worker = WorkerProcess(env, model.path, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready(timeout_s=120)

    produce(bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], list(event_payloads(events_from_frame(tickets))))
    stats = worker.wait_stats(lambda s: s["drift"]["estimates"] >= 2, "2 merged windows estimated", 300)
    records = read_topic(bootstrap, env["STREAMSCORE_TOPIC_DRIFT"], 4, idle_s=1.0)
    messages = [orjson.loads(r.value) for r in records]
    reports = [DriftReport.model_validate(m) for m in messages if m["type"] == "drift_report"]
    estimates = {
        m["window"]: PerformanceEstimate.model_validate(m)
        for m in messages
        if m["type"] == "performance_estimate"
    }
    features = read_topic(bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], len(tickets))
    by_offset = {(r.partition, r.offset): orjson.loads(r.value)["features"] for r in features}
    baseline = ClassBaseline.of(model.reference, model.class_names)
    estimator = PerformanceEstimator.from_bundle(model)
    assert stats["drift"]["unreadable"] == 0 and baseline is not None and estimator is not None
    assert len(reports) >= 2

    for report in reports:
        # a merged window: each partition's events in offset order, the partitions one after the other
        events = [
            by_offset[(s.partition, offset)]
            for s in sorted(report.spans, key=lambda s: s.partition)
            for offset in range(s.first_offset, s.last_offset + 1)
        ]
        assert len(events) == report.events == WINDOW
        rows = model.spec.encode_frame(pd.DataFrame(events)[INPUTS])
        p = model.predict(rows)
        expected = compare_classes(baseline, p)
        got = report.classes
        assert report.schema_version == 3 and got is not None
        assert got.predicted.counts == expected.predicted.counts
        assert got.predicted.chi2_statistic == pytest.approx(expected.predicted.chi2_statistic, rel=1e-9)
        for mine, theirs in zip(got.probabilities, expected.probabilities, strict=True):
            assert (mine.psi, mine.ks_statistic) == pytest.approx((theirs.psi, theirs.ks_statistic), rel=1e-9)
        offline = estimator.estimate(p.max(axis=1), rows, p)
        merged = estimates[report.window]
        assert [m.metric for m in merged.metrics] == ["accuracy", "f1_macro", "auc_macro_ovr"]
        assert [m.estimate for m in merged.metrics] == pytest.approx(
            [m.estimate for m in offline.metrics], rel=1e-9
        )
