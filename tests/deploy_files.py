"""The Prometheus and Grafana files under ``deploy/``, read as the tests check them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
GRAFANA_DASHBOARD = DEPLOY / "grafana" / "dashboards" / "streamscore.json"
COMPOSE = ROOT / "docker-compose.yml"

_METRIC = re.compile(r"\bstreamscore_[A-Za-z0-9_]+")


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def grafana_exprs() -> list[str]:
    dashboard = json.loads(GRAFANA_DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def referenced_metrics() -> set[str]:
    """Every streamscore sample name the rules and the Grafana dashboard query (``up`` is Prometheus')."""
    exprs = [rule["expr"] for rule in rules()] + grafana_exprs()
    return {name for expr in exprs for name in _METRIC.findall(expr)}
