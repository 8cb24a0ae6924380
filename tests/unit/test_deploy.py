"""deploy/: the alert rules, the Grafana dashboard and their wiring into docker-compose.yml.

Docker is not on the test machines, so what can be checked without it is: the files parse,
every path the compose file mounts exists, the rules' thresholds are the settings' defaults.
That every metric they name is on a worker's /metrics is checked on a live worker
(tests/integration/test_operators.py).
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from streams.settings import Settings
from tests.deploy_files import (
    COMPOSE,
    DEPLOY,
    GRAFANA_DASHBOARD,
    ROOT,
    grafana_exprs,
    referenced_metrics,
    rules,
)

DEFAULTS = {name: field.default for name, field in Settings.model_fields.items()}

# alert -> the setting its threshold mirrors
THRESHOLDS = {
    "StreamscoreConsumerLagHigh": "alert_lag_records",
    "StreamscoreConsumerLagOld": "alert_lag_seconds",
    "StreamscoreDeadLetterRatioHigh": "alert_dead_letter_ratio",
    "StreamscoreFeatureDrift": "drift_psi_threshold",
    "StreamscorePredictionDrift": "drift_psi_threshold",
    "StreamscoreKpiLow": "alert_kpi_min",
    "StreamscoreEstimatedKpiLow": "alert_kpi_min",
}


def test_every_rule_is_complete_and_named_once() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    for rule in rules():
        assert rule["expr"].strip() and rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"], rule["alert"]
    # what the issue asks to alert on
    expected = {"WorkerDown", "ConsumerLagHigh", "ConsumerLagGrowing", "DeadLetterRatioHigh", "NoPredictions",
                "FeatureDrift", "ConceptDrift", "KpiLow"}  # fmt: skip
    assert {f"Streamscore{name}" for name in expected} <= set(names)


@pytest.mark.parametrize(("alert", "setting"), sorted(THRESHOLDS.items()))
def test_rule_thresholds_are_the_settings_defaults(alert: str, setting: str) -> None:
    expr = next(rule["expr"] for rule in rules() if rule["alert"] == alert)
    threshold = float(re.search(r"[<>]=?\s*([\d.]+)\s*$", expr.strip()).group(1))
    assert threshold == DEFAULTS[setting]
    if alert in ("StreamscoreKpiLow", "StreamscoreEstimatedKpiLow"):
        assert f'metric="{DEFAULTS["alert_kpi_metric"]}"' in expr


def test_every_expression_has_balanced_brackets_and_names_a_metric() -> None:
    for expr in [rule["expr"] for rule in rules()] + grafana_exprs():
        for open_, close in ("()", "[]", "{}"):
            assert expr.count(open_) == expr.count(close), expr
        assert "streamscore_" in expr or expr.startswith("up{"), expr
    assert len(referenced_metrics()) >= 15


def test_grafana_dashboard_uses_the_provisioned_datasource() -> None:
    dashboard = json.loads(GRAFANA_DASHBOARD.read_text())
    datasources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasources["datasources"][0]["uid"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid and panel["targets"], panel["title"]
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for topic in ("throughput", "latency", "lag", "drift", "kpi", "model"):
        assert topic in titles


def test_compose_runs_prometheus_and_grafana_on_files_that_exist() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert services["prometheus"]["image"].startswith("prom/prometheus")
    assert services["grafana"]["image"].startswith("grafana/grafana")
    mounts = {}
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source, target = volume.split(":")[:2]
            assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
            mounts[target] = ROOT / source
    config = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    for rule_file in config["rule_files"]:
        assert rule_file in mounts, f"{rule_file} is not mounted into the prometheus container"
    targets = [t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    assert f"worker:{DEFAULTS['web_port']}" in targets and "worker" in services
    providers = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/streamscore.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    assert mounts[path] == GRAFANA_DASHBOARD.parent
    assert mounts["/etc/grafana/provisioning"] == DEPLOY / "grafana/provisioning"
