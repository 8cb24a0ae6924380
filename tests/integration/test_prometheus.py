"""The shipped alert rules on a real Prometheus scraping a live worker.

Debian's ``prometheus`` binary (``make deploy-tools``) runs on loopback with a 1 s scrape
and evaluation interval and ``deploy/prometheus/rules.yml`` as shipped, except one change
in a copy: StreamscoreWorkerDown's ``for: 1m`` becomes ``for: 3s`` so that the test does
not wait a minute (its ``for:`` is covered by the promtool cases in deploy/prometheus/tests/).
FeatureDrift and ConceptDrift have no ``for:`` and run unchanged. Alerts are read from
Prometheus' HTTP API, ``/api/v1/alerts``, as Alertmanager or an operator would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import orjson
import pytest
import yaml
from confluent_kafka import Producer

from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import agrawal_frame, events_from_frame
from scoring.offline.training import train_bundle
from streams.kafka.embedded.broker import free_port
from tests.conditions import budget, wait_for
from tests.deploy_files import RULES, grafana_exprs, healthcheck_command, tool
from tests.integration.kafka_tools import WorkerProcess

pytestmark = pytest.mark.integration

BASE_MS = 1_700_000_000_000
TEST_FOR = {"StreamscoreWorkerDown": "3s"}


class PrometheusServer:
    """``prometheus`` on 127.0.0.1 scraping one target every second, with the shipped rules."""

    def __init__(self, target: str, workdir: Path) -> None:
        workdir.mkdir()
        rules = yaml.safe_load(RULES.read_text())
        for rule in rules["groups"][0]["rules"]:
            if rule["alert"] in TEST_FOR:
                rule["for"] = TEST_FOR[rule["alert"]]
        (workdir / "rules.yml").write_text(yaml.safe_dump(rules))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(workdir / "rules.yml")],
            "scrape_configs": [{"job_name": "streamscore", "static_configs": [{"targets": [target]}]}],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self._log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [tool("prometheus"), f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.log_path = workdir / "prometheus.log"

    def api(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def wait(self, what: str, holds, timeout_s: float) -> float:
        """Polls until ``holds()`` is true (a port not listening yet is tried again); the seconds it took."""
        started = time.monotonic()
        alive = lambda: self.process.poll() is None  # noqa: E731
        log = lambda: self.log_path.read_text()[-3000:]  # noqa: E731
        wait_for(holds, timeout_s=timeout_s, what=what, interval_s=0.25, alive=alive, context=log)
        return time.monotonic() - started

    def firing(self) -> dict[str, dict]:
        return {a["labels"]["alertname"]: a for a in self.api("alerts")["alerts"] if a["state"] == "firing"}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)
        self._log.close()


@pytest.fixture(scope="module")
def loans_f0(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    frame = agrawal_frame(8000, seed=1, classification_function=0)
    return train_bundle(
        frame, "approved", tmp_path_factory.mktemp("f0") / "loans", name="loans", num_trees=30
    )


def _produce_shift(bootstrap: str, topic_env: dict, n: int, switch: int, delay: int = 200) -> None:
    """Loan events whose salaries rise 30% from ``switch`` on (drift), labelled by Agrawal's function 0
    before ``switch`` and function 7 after (a concept change); event i's label follows event i + delay."""
    before = agrawal_frame(n, seed=9, classification_function=0)
    after = agrawal_frame(n, seed=9, classification_function=7)  # the same applicants, relabelled
    labels = np.where(np.arange(n) < switch, before["approved"], after["approved"])
    frame = before.drop(columns=["approved"])
    frame.loc[switch:, "salary"] *= 1.3
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10})
    features, label_topic = topic_env["STREAMSCORE_TOPIC_FEATURES"], topic_env["STREAMSCORE_TOPIC_LABELS"]

    def label(i: int) -> None:
        body = {"event_id": f"pm-{i}", "label": float(labels[i]), "label_time": BASE_MS + i + delay}
        producer.produce(label_topic, orjson.dumps(body), f"pm-{i}".encode())

    for i, event in enumerate(events_from_frame(frame, prefix="pm", start_ms=BASE_MS)):
        producer.produce(features, orjson.dumps(event), event["entity_id"].encode())
        if i >= delay:
            label(i - delay)
        producer.poll(0)
    for i in range(n - delay, n):
        label(i)
    assert producer.flush(60) == 0


def _healthcheck(worker: WorkerProcess) -> int:
    """The image's HEALTHCHECK command, run here against the worker's port: its exit code."""
    program, *args = healthcheck_command()
    assert program == "python"
    env = {"STREAMSCORE_WEB_PORT": str(worker.port)}
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, timeout=30, check=False
    ).returncode


def _fired_on_the_first_change(prometheus: PrometheusServer, since: float) -> tuple[float, float, float]:
    """From Prometheus' own history: (critical concept-drift alerts first scraped, first scraped above 0,
    when StreamscoreConceptDrift first fired). Equal second and third: the first alert alone fired it."""
    series = 'sum(streamscore_concept_drift_alerts_total{status="firing", severity="critical"})'
    end = time.time() + 2  # a step at or after the last evaluation (samples are looked back, not forward)
    window = {"start": f"{since:.3f}", "end": f"{end:.3f}", "step": "1s"}
    [changes] = prometheus.api("query_range", query=series, **window)["result"]
    values = [(float(t), float(v)) for t, v in changes["values"]]
    firing = 'ALERTS{alertname="StreamscoreConceptDrift", alertstate="firing"}'
    [alert] = prometheus.api("query_range", query=f"max({firing})", **window)["result"]
    fired_at = float(alert["values"][0][0])
    at_fire = [v for t, v in values if t <= fired_at][-1]
    first_change = next(v for _, v in values if v > 0)
    return values[0][1], first_change, at_fire


def test_shipped_rules_fire_on_a_live_worker(bootstrap, topic_env, loans_f0, tmp_path, workers) -> None:
    env = {**topic_env, "STREAMSCORE_PARTITIONS": "1", "STREAMSCORE_DRIFT_WINDOW_EVENTS": "1000",
           "STREAMSCORE_METRICS_INTERVAL_S": "1", "STREAMSCORE_LAG_INTERVAL_S": "1"}  # fmt: skip
    worker = WorkerProcess(env, loans_f0.path, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready()
    assert _healthcheck(worker) == 0, "the image's HEALTHCHECK says the ready worker is unhealthy"
    prometheus = PrometheusServer(f"127.0.0.1:{worker.port}", tmp_path / "prometheus")
    try:
        concept = "streamscore_concept_drift_alerts_total"
        zeros = lambda: [s["value"][1] for s in prometheus.api("query", query=concept)["result"]]  # noqa: E731
        prometheus.wait(
            "a scrape of the concept-drift alert counters at 0", lambda: zeros() == ["0"] * 4, budget()
        )
        assert prometheus.firing() == {}, "an alert before any event"

        since, started = time.time(), time.monotonic()
        _produce_shift(bootstrap, topic_env, n=8000, switch=4000)
        fired: dict[str, float] = {}

        def both_fired() -> bool:
            for name in prometheus.firing():
                fired.setdefault(name, time.monotonic() - started)
            return {"StreamscoreFeatureDrift", "StreamscoreConceptDrift"} <= fired.keys()

        prometheus.wait("FeatureDrift and ConceptDrift firing", both_fired, budget(8000))
        drift = prometheus.firing()["StreamscoreFeatureDrift"]
        assert drift["labels"]["feature"] == "salary", drift
        first, first_change, at_fire = _fired_on_the_first_change(prometheus, since)
        print(
            "fired after the events started: " + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(fired.items()))
        )
        print(f"critical concept-drift alerts scraped: {first:g} at first, {first_change:g} at the first, "
              f"{at_fire:g} when ConceptDrift fired; {drift['annotations']['summary']}")  # fmt: skip
        assert (first, at_fire) == (0, first_change)

        rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        assert len(rules) == 11 and {r["health"] for r in rules} == {"ok"}, rules
        empty = [expr for expr in grafana_exprs() if not prometheus.api("query", query=expr)["result"]]
        print(f"{len(grafana_exprs())} Grafana queries parsed by Prometheus; without a series yet: {empty}")

        stopped = time.monotonic()
        worker.terminate()
        assert _healthcheck(worker) != 0, "the image's HEALTHCHECK says the stopped worker is healthy"
        prometheus.wait("WorkerDown firing", lambda: "StreamscoreWorkerDown" in prometheus.firing(), budget())
        down = time.monotonic() - stopped
        print(f"StreamscoreWorkerDown fired {down:.1f} s after SIGTERM (test copy: for 3s)")
    finally:
        prometheus.stop()
