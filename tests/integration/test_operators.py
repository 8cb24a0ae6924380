"""What an operator reads: /metrics counters and lag, and `streamscore status`, on a real broker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import orjson
import pytest

from scoring.offline.synthetic import agrawal_frame, events_from_frame
from tests.conditions import budget
from tests.deploy_files import referenced_metrics
from tests.integration.kafka_tools import WorkerProcess, committed_total, loan_stream, produce

pytestmark = pytest.mark.integration


def _metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total, found = 0.0, False
    for line in text.splitlines():
        match = re.match(rf"{name}(\{{[^}}]*\}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total, found = total + float(match.group(2)), True
    assert found, f"no {name} {labels} in /metrics"
    return total


def _status_total_lag(topic_env: dict, group: str) -> int:
    cli = [sys.executable, "-m", "streams", "status", "--group-id", group, "--interval", "0.2"]
    done = subprocess.run(
        cli, capture_output=True, text=True, timeout=budget(), check=False, env={**os.environ, **topic_env}
    )
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    return int(re.search(r"total lag ([\d,]+)", done.stdout).group(1).replace(",", ""))


def test_metrics_and_status_show_the_lag_and_its_fall_to_zero(
    bootstrap, topic_env, agrawal_bundle_dir, tmp_path, workers
):
    env = {**topic_env, "STREAMSCORE_ROLES": "score", "STREAMSCORE_LAG_INTERVAL_S": "1"}
    worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready()
    frame = agrawal_frame(31_000, seed=71, classification_function=2).drop(columns=["approved"])
    payloads = [(e["entity_id"].encode(), orjson.dumps(e)) for e in events_from_frame(frame, prefix="op")]
    features, group = topic_env["STREAMSCORE_TOPIC_FEATURES"], topic_env["STREAMSCORE_GROUP_ID"]

    produce(bootstrap, features, payloads[:1000])
    # the first 1,000 scored and committed: what the group owes from here on is what comes next
    worker.wait(lambda: committed_total(bootstrap, group, features), lambda c: c == 1000,
                "the first 1,000 events committed", budget(1000))  # fmt: skip

    worker.process.send_signal(signal.SIGSTOP)  # a stalled worker: the next events wait
    try:
        produce(bootstrap, features, payloads[1000:])
        stalled = _status_total_lag(topic_env, group)
    finally:
        worker.process.send_signal(signal.SIGCONT)
    assert stalled == 30_000

    scraped = ""

    def lag_and_predictions() -> tuple[float | None, float]:
        nonlocal scraped
        scraped = worker.get_text("/metrics")
        lag = None
        if "streamscore_consumergroup_lag{" in scraped:
            lag = _metric(scraped, "streamscore_consumergroup_lag", consumergroup=group)
        return lag, _metric(scraped, "streamscore_predictions_total")

    what = "(lag, predictions) on /metrics to reach (0, 31,000)"
    lag, _ = worker.wait(lag_and_predictions, lambda seen: seen == (0, len(payloads)), what, budget(31_000))
    print(f"lag with the worker stopped: {stalled:,}; after it resumed: {lag}")
    assert _metric(scraped, "streamscore_events_consumed_total") == len(payloads)
    assert _metric(scraped, "streamscore_predictions_total") == len(payloads)
    assert _metric(scraped, "streamscore_consumergroup_lag_seconds", consumergroup=group) == 0
    assert _metric(scraped, "streamscore_event_latency_seconds_count") == len(payloads)
    stalled_events = _metric(scraped, "streamscore_event_latency_seconds_bucket", le="1.0")
    assert stalled_events < len(payloads), "the stall shows in the latency histogram"
    assert _status_total_lag(topic_env, group) == 0


def test_every_metric_the_alert_rules_and_grafana_query_is_on_metrics(
    bootstrap, topic_env, agrawal_bundle, agrawal_bundle_dir, tmp_path, workers
):
    env = {
        **topic_env,
        "STREAMSCORE_LAG_INTERVAL_S": "1",
        "STREAMSCORE_DRIFT_WINDOW_EVENTS": "1000",
        "STREAMSCORE_PARTITIONS": "1",  # windows in the order produced: the last is all shifted salaries
        "STREAMSCORE_METRICS_INTERVAL_S": "1",
    }
    worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready()
    payloads, labels = loan_stream(4000, 40, prefix="rules")
    produce(bootstrap, topic_env["STREAMSCORE_TOPIC_FEATURES"], payloads)
    produce(bootstrap, topic_env["STREAMSCORE_TOPIC_LABELS"], labels)

    wanted = ("streamscore_drift_psi{", "streamscore_kpi_rolling{", "streamscore_consumergroup_lag{")

    def missing_and_windows() -> tuple[list[str], float | None]:
        text = worker.get_text("/metrics")
        windows = "streamscore_drift_windows_total"
        return [w for w in wanted if w not in text], _metric(text, windows) if windows in text else None

    worker.wait(missing_and_windows, lambda seen: seen == ([], 4),
                "every series wanted on /metrics and 4 drift windows", budget(8000))  # fmt: skip
    scraped = worker.get_text("/metrics")
    samples = {m.group(1) for m in re.finditer(r"^([A-Za-z_:][\w:]*)[{ ]", scraped, re.MULTILINE)}
    declared = dict(re.findall(r"^# TYPE (\S+) (\S+)$", scraped, re.MULTILINE))
    referenced = referenced_metrics()
    # no concept-drift change need happen in a short run: its counter is there all the same, at 0
    without_samples = sorted(referenced - samples)
    print(f"{len(referenced)} metrics named by rules.yml and streamscore.json; {len(samples)} on /metrics; "
          f"named but without samples yet: {without_samples}")  # fmt: skip
    assert without_samples == [], worker.log_tail()
    family = "streamscore_concept_drift_changes"
    assert "counter" in (declared.get(family), declared.get(family + "_total")), "declared as a counter"
    assert _metric(scraped, "streamscore_predictions_total") == 4000
    # the last window is of shifted salaries: the FeatureDrift rule's condition holds on what was scraped
    salary_psi = _metric(scraped, "streamscore_drift_psi", feature="salary")
    salary_drifted = _metric(scraped, "streamscore_drift_drifted", feature="salary")
    print(f"salary PSI of the last window {salary_psi:.3f}, flagged {salary_drifted:g} (FeatureDrift: 1)")
    assert salary_drifted == 1
    info = re.search(r"^streamscore_model_info\{([^}]*)\} 1\.0$", scraped, re.MULTILINE)
    assert info and f'model_version="{agrawal_bundle.version}"' in info.group(1), "model info on /metrics"
