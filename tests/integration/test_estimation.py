"""Performance estimation on a live worker: estimates per drift window before labels, checked after.

One partition, so offset ``i`` of the features topic is event ``i`` and every window's
span names its events; realized KPIs are computed here from the labels and the model's
scores of those events, independently of the worker. The data hold the estimator's
assumption where the test says so (P(y | x) fixed: ``scoring.offline.synthetic.logistic_frame``,
``noisy_regression_frame``) and break it where it says so (labels flipped).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import orjson
import pandas as pd
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas.estimation import EstimateCheck, EstimatedKpiAlert, PerformanceEstimate
from scoring.metrics.holdout import binary_metrics, regression_metrics
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import EVENT_TIME_0, events_from_frame, logistic_frame, noisy_regression_frame
from scoring.offline.training import train_bundle
from tests.integration.kafka_tools import WorkerProcess, produce

pytestmark = pytest.mark.integration

WINDOW = 5_000
HALF = 2 * WINDOW  # each half of a stream is two windows


@pytest.fixture(scope="module")
def binary_bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    out = tmp_path_factory.mktemp("estimation") / "shift"
    return train_bundle(logistic_frame(50_000, seed=1), "y", out, name="shift", num_trees=100)


def read_values(
    bootstrap: str, topic: str, done: Callable[[list[dict]], bool], timeout_s: float = 60
) -> list[dict]:
    """JSON values of ``topic`` from the start until ``done(values)`` (partitions assigned: no group join)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"est-{time.monotonic_ns()}"})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    values: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not done(values) and time.monotonic() < deadline:
            values += [orjson.loads(m.value()) for m in consumer.consume(1000, 0.2) if m.error() is None]
    finally:
        consumer.close()
    assert done(values), f"{topic}: condition not met within {timeout_s} s ({len(values)} values)"
    return values


def of_type(values: list[dict], kind: str) -> list[dict]:
    return [v for v in values if v.get("type") == kind]


def run_stream(bootstrap, topic_env, bundle: ModelBundle, frame: pd.DataFrame, tmp_path, workers, **env):
    """A worker with every role; the features produced; the four windows' estimates read back."""
    settings = {
        "STREAMSCORE_PARTITIONS": "1",
        "STREAMSCORE_DRIFT_WINDOW_EVENTS": str(WINDOW),
        "STREAMSCORE_METRICS_INTERVAL_S": "1",
        **env,
    }
    worker = WorkerProcess({**topic_env, **settings}, bundle.path, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready()
    events = list(events_from_frame(frame.drop(columns="y"), prefix="est"))
    produce(
        bootstrap,
        topic_env["STREAMSCORE_TOPIC_FEATURES"],
        [(e["entity_id"].encode(), orjson.dumps(e)) for e in events],
    )
    drift = read_values(
        bootstrap,
        topic_env["STREAMSCORE_TOPIC_DRIFT"],
        lambda v: len(of_type(v, "performance_estimate")) == 4,
    )
    estimates = [PerformanceEstimate.model_validate(v) for v in of_type(drift, "performance_estimate")]
    assert [e.window for e in estimates] == [0, 1, 2, 3]
    for e in estimates:  # offset i is event i: each window names its events
        (span,) = e.spans
        assert (e.start_event_time, e.end_event_time) == (
            EVENT_TIME_0 + span.first_offset,
            EVENT_TIME_0 + span.last_offset,
        )
    return worker, estimates, drift


def realized_per_window(
    bundle: ModelBundle, frame: pd.DataFrame, estimates, labels: np.ndarray
) -> list[dict]:
    rows = bundle.spec.encode_frame(frame.drop(columns="y"))
    scores = bundle.predict(rows)
    out = []
    for e in estimates:
        span = e.spans[0]
        part = slice(span.first_offset, span.last_offset + 1)
        if bundle.task.value == "binary":
            out.append(binary_metrics(labels[part], scores[part], bundle.metadata.threshold))
        else:
            out.append(regression_metrics(labels[part], scores[part]))
    return out


def send_labels(bootstrap: str, topic_env: dict, labels: np.ndarray) -> None:
    payloads = [
        (
            f"est-{i}".encode(),
            orjson.dumps({"event_id": f"est-{i}", "label": float(y), "label_time": EVENT_TIME_0 + i + 1}),
        )
        for i, y in enumerate(labels)
    ]
    produce(bootstrap, topic_env["STREAMSCORE_TOPIC_LABELS"], payloads)


def read_checks(bootstrap: str, topic_env: dict, windows: int) -> list[EstimateCheck]:
    """The learn path's check of every window, from the snapshots on ``metrics``."""

    def checks(values: list[dict]) -> list[dict]:
        return [c for v in of_type(values, "metrics_snapshot") for c in v.get("estimate_checks", [])]

    values = read_values(
        bootstrap, topic_env["STREAMSCORE_TOPIC_METRICS"], lambda v: len(checks(v)) >= windows, 90
    )
    return sorted((EstimateCheck.model_validate(c) for c in checks(values)), key=lambda c: c.window)


def metric_value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        match = re.match(rf"{name}\{{([^}}]*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            return float(match.group(2))
    raise AssertionError(f"no {name} {labels} on /metrics")


def test_covariate_shift_the_estimate_falls_before_labels_alerts_and_matches_the_realized(
    bootstrap, topic_env, binary_bundle: ModelBundle, tmp_path, workers
):
    frame = pd.concat(
        [logistic_frame(HALF, seed=101), logistic_frame(HALF, seed=103, scale=0.3)], ignore_index=True
    )
    worker, estimates, drift = run_stream(
        bootstrap, topic_env, binary_bundle, frame, tmp_path, workers, STREAMSCORE_ALERT_KPI_MIN="0.75"
    )
    # before any label is sent: the estimate has fallen, the alert and the retrain request are out
    accuracy = [e.metric("accuracy").estimate for e in estimates]
    alerts = [EstimatedKpiAlert.model_validate(v) for v in of_type(drift, "estimated_kpi_alert")]
    requests = read_values(
        bootstrap,
        topic_env["STREAMSCORE_TOPIC_RETRAIN"],
        lambda v: any(r["trigger"] == "estimated" for r in v),
        30,
    )
    scraped = worker.get_text("/metrics")
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams",
            "status",
            "--group-id",
            topic_env["STREAMSCORE_GROUP_ID"],
            "--interval",
            "0.2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **topic_env},
    )
    line = next((x for x in status.stdout.splitlines() if x.startswith("shift:1 window 3")), "")
    print(f"\nestimated accuracy per window {[round(a, 4) for a in accuracy]}")
    print(f"alerts: {[a.message for a in alerts]}")
    print(f"status: {line}")
    assert min(accuracy[:2]) > max(accuracy[2:]) + 0.05
    assert [a.window for a in alerts] == [2] and alerts[0].estimate < 0.75
    assert [r["model"] for r in requests if r["trigger"] == "estimated"] == ["shift:1"]
    assert (
        metric_value(scraped, "streamscore_estimated_kpi", metric="accuracy", model_name="shift")
        == accuracy[3]
    )
    assert metric_value(scraped, "streamscore_estimated_kpi_alerts_total", model_name="shift") == 1
    assert status.returncode == 0, status.stderr
    assert f"accuracy {accuracy[3]:.4f}" in line

    labels = frame["y"].to_numpy(float)
    realized = realized_per_window(binary_bundle, frame, estimates, labels)
    for e, r in zip(estimates, realized, strict=True):
        print(
            f"window {e.window}: accuracy estimated {e.metric('accuracy').estimate:.4f} "
            f"realized {r['accuracy']:.4f}; auc estimated {e.metric('auc').estimate:.4f} "
            f"realized {r['auc']:.4f}"
        )
    for e, r in zip(estimates, realized, strict=True):
        assert abs(e.metric("accuracy").estimate - r["accuracy"]) < 0.02
        assert abs(e.metric("auc").estimate - r["auc"]) < 0.02

    send_labels(bootstrap, topic_env, labels)
    checks = read_checks(bootstrap, topic_env, 4)
    print("learn path: " + "; ".join(c.message for c in checks))
    assert [(c.window, c.labelled) for c in checks] == [(w, WINDOW) for w in range(4)]
    for c, r in zip(checks, realized, strict=True):
        by_metric = {m.metric: m for m in c.checks}
        assert by_metric["accuracy"].realized == pytest.approx(r["accuracy"], abs=1e-9)
        assert by_metric["auc"].realized == pytest.approx(r["auc"], abs=2e-3)  # from 1,000 score bins
        assert not c.disagree


def test_regression_the_estimated_mae_follows_the_realized_within_ten_percent(
    bootstrap, topic_env, tmp_path, workers
):
    out = tmp_path / "reg-bundle"
    bundle = train_bundle(
        noisy_regression_frame(30_000, seed=1), "y", out, task="regression", name="reg", num_trees=100
    )
    frame = pd.concat(
        [noisy_regression_frame(HALF, seed=301), noisy_regression_frame(HALF, seed=302, shift=1.0)],
        ignore_index=True,
    )
    _, estimates, drift = run_stream(
        bootstrap,
        topic_env,
        bundle,
        frame,
        tmp_path,
        workers,
        STREAMSCORE_ALERT_KPI_METRIC="mae",
        STREAMSCORE_ALERT_KPI_MIN="0.8",
    )
    labels = frame["y"].to_numpy(float)
    realized = realized_per_window(bundle, frame, estimates, labels)
    mae = [e.metric("mae").estimate for e in estimates]
    alerts = [EstimatedKpiAlert.model_validate(v) for v in of_type(drift, "estimated_kpi_alert")]
    for e, r in zip(estimates, realized, strict=True):
        print(
            f"window {e.window}: MAE estimated {e.metric('mae').estimate:.4f} realized {r['mae']:.4f} "
            f"({r['mae'] / e.metric('mae').estimate - 1:+.1%}); "
            f"RMSE estimated {e.metric('rmse').estimate:.4f} realized {r['rmse']:.4f}"
        )
    print(f"alerts: {[a.message for a in alerts]}")
    for e, r in zip(estimates, realized, strict=True):
        assert abs(r["mae"] / e.metric("mae").estimate - 1) < 0.10
    assert min(mae[2:]) > 1.2 * max(mae[:2]), "the shift into noisier inputs shows before labels"
    assert [a.window for a in alerts] == [2]  # MAE is an error metric: the threshold is a ceiling

    send_labels(bootstrap, topic_env, labels)
    checks = read_checks(bootstrap, topic_env, 4)
    print("learn path: " + "; ".join(c.message for c in checks))
    for c, r in zip(checks, realized, strict=True):
        assert {m.metric: m.realized for m in c.checks}["mae"] == pytest.approx(r["mae"], abs=1e-9)
        assert not c.disagree


def test_concept_drift_the_estimate_stays_the_realized_falls_and_the_report_says_they_disagree(
    bootstrap, topic_env, binary_bundle: ModelBundle, tmp_path, workers
):
    frame = pd.concat([logistic_frame(HALF, seed=201), logistic_frame(HALF, seed=202)], ignore_index=True)
    labels = frame["y"].to_numpy(float)
    labels[HALF:] = 1 - labels[HALF:]  # the same inputs now mean the other label
    _, estimates, _ = run_stream(bootstrap, topic_env, binary_bundle, frame, tmp_path, workers)
    accuracy = [e.metric("accuracy").estimate for e in estimates]
    realized = realized_per_window(binary_bundle, frame, estimates, labels)

    send_labels(bootstrap, topic_env, labels)
    checks = read_checks(bootstrap, topic_env, 4)
    page = tmp_path / "report.html"
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams",
            "report",
            "--model",
            str(binary_bundle.path),
            "--from-topics",
            "20000",
            "--out",
            str(page),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **topic_env},
    )
    assert report.returncode == 0, report.stderr
    section = re.search(r'<section id="estimates">(.*?)</section>', page.read_text(), re.S).group(1)
    print(
        f"\nestimated accuracy {[round(a, 4) for a in accuracy]}; "
        f"realized {[round(r['accuracy'], 4) for r in realized]}"
    )
    print("learn path: " + "; ".join(c.message for c in checks))
    print("report: " + re.sub(r"<[^>]+>", " ", section)[:300])
    assert max(accuracy) - min(accuracy) < 0.02, "the inputs did not change: neither does the estimate"
    assert max(r["accuracy"] for r in realized[2:]) < min(r["accuracy"] for r in realized[:2]) - 0.3
    assert [c.disagree for c in checks] == [False, False, True, True]
    assert "4 windows checked; in 2 estimate and labels disagree" in section
    assert "shift:1 window 3: estimate and labels disagree" in section
