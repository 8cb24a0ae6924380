"""The drift agent on a real broker: a stationary stream stays quiet, a shifted one alerts.

One partition, so the order of events (and so every window) is the order produced:
offset ``i`` of the features topic is event ``i``.
"""

from __future__ import annotations

import re

import orjson
import pandas as pd
import pytest

from schemas.drift import DriftAlert, DriftReport
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import events_from_frame, numeric_frame
from scoring.offline.training import train_bundle
from tests.integration.kafka_tools import Record, WorkerProcess, produce, read_topic

pytestmark = pytest.mark.integration

SHIFTED = ["f03", "f07"]


@pytest.fixture(scope="module")
def numeric_bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    frame = numeric_frame(20_000, n_features=10, seed=21)
    return train_bundle(frame, "y", tmp_path_factory.mktemp("drift") / "num", name="num", num_trees=30)


def _type(record: Record) -> str:
    return orjson.loads(record.value)["type"]


def _is_report(record: Record) -> bool:
    return _type(record) == "drift_report"


def _run(
    bootstrap,
    topic_env,
    bundle: ModelBundle,
    tmp_path,
    workers,
    frame: pd.DataFrame,
    window: int,
    path="batch",
):
    env = {"STREAMSCORE_PARTITIONS": "1", "STREAMSCORE_DRIFT_WINDOW_EVENTS": str(window)}
    worker = WorkerProcess(
        {**topic_env, **env, "STREAMSCORE_DRIFT_PATH": path},
        bundle.path,
        tmp_path / "worker.log",
    )
    workers.append(worker)
    worker.wait_ready()
    events = list(events_from_frame(frame))
    produce(
        bootstrap,
        topic_env["STREAMSCORE_TOPIC_FEATURES"],
        [(e["entity_id"].encode(), orjson.dumps(e)) for e in events],
    )
    windows = len(events) // window
    records = read_topic(
        bootstrap, topic_env["STREAMSCORE_TOPIC_DRIFT"], windows, idle_s=3.0, counted=_is_report
    )
    reports = [DriftReport.model_validate_json(r.value) for r in records if _is_report(r)]
    # the topic also carries each window's performance estimate: tell the messages apart by type
    alerts = [DriftAlert.model_validate_json(r.value) for r in records if _type(r) == "drift_alert"]
    assert [r.window for r in reports] == list(range(windows))
    assert all(r.events == window for r in reports)
    return worker, reports, alerts


def test_a_stationary_stream_raises_no_alert(bootstrap, topic_env, numeric_bundle, tmp_path, workers):
    frame = numeric_frame(50_000, n_features=10, seed=22).drop(columns=["y"])
    worker, reports, alerts = _run(bootstrap, topic_env, numeric_bundle, tmp_path, workers, frame, 5000)
    assert alerts == []
    assert not any(r.drifted for r in reports)
    worst = max(f.psi for r in reports for f in r.features)
    print(f"stationary: {len(reports)} windows, no alert, largest feature PSI {worst:.4f}")
    drift = worker.get("/stats")["drift"]
    assert drift["reports"] == 10
    # the worker's drift and learn roles took the records its score role wrote as their columns
    # (tests/unit/test_monitor_handoff.py holds those equal to decoding the bytes)
    taken, decoded = drift["monitor_from_score"], drift["monitor_decoded"]
    print(f"monitoring records: {taken} taken as written, {decoded} decoded")
    assert taken > 0


@pytest.mark.parametrize("path", ["batch", "agent"], ids=["drift service", "faust agent"])
def test_a_shift_on_two_features_alerts_naming_exactly_them(
    path, bootstrap, topic_env, numeric_bundle, tmp_path, workers
):
    frame = numeric_frame(50_000, n_features=10, seed=23).drop(columns=["y"])
    frame.loc[25_000:, SHIFTED] += 1.0  # one standard deviation
    worker, reports, alerts = _run(bootstrap, topic_env, numeric_bundle, tmp_path, workers, frame, 4000, path)

    before = [r for r in reports if r.spans[0].last_offset < 25_000]
    first_after = next(r for r in reports if r.spans[0].first_offset >= 25_000)
    assert len(before) == 6 and first_after.window == 7
    assert not any(r.drifted for r in before)
    assert all(sorted(r.drifted_features) == SHIFTED for r in reports if r.window >= 7)
    # one alert for the episode: in window 6 (three quarters shifted) or 7 (all), not one per drifted window
    (alert,) = alerts
    assert alert.window in (6, 7) and alert.status == "firing", "an alert before the shift"
    assert sorted(f.feature for f in alert.features) == SHIFTED
    assert alert.events == 4000 and all(f.p_value < f.p_value_threshold for f in alert.features)
    shifts = {f.feature: f.mean_shift_sd for f in alert.features}
    print(f"shift: one alert, window {alert.window}: {alert.message}")
    low = 0.4 if alert.window == 6 else 0.8  # window 6 holds 1,000 unshifted events of 4,000
    assert all(low < s < 1.2 for s in shifts.values()), shifts

    metrics = worker.get_text("/metrics")
    drifted = re.search(r'streamscore_drift_drifted\{[^}]*feature="f03"[^}]*\} (\S+)', metrics)
    assert drifted is not None and float(drifted.group(1)) == 1
    assert re.search(r"streamscore_drift_alerts_total\{[^}]*\} (\d+)", metrics)
    requests = read_topic(bootstrap, topic_env["STREAMSCORE_TOPIC_RETRAIN"], len(alerts), timeout_s=30)
    assert {orjson.loads(r.value)["trigger"] for r in requests} == {"drift"}
    assert len(requests) == len(alerts)
