"""The deploy files checked by the tools of their ecosystems, without a Docker engine.

docker-compose.yml by Debian's docker-compose (``config`` validates and interpolates it as
``up`` reads it), the Dockerfile by hadolint, the alert rules by promtool (``check rules``,
``test rules`` over deploy/prometheus/tests/, ``check config``) and a fresh worker's
/metrics by ``promtool check metrics``. ``make deploy-tools`` installs the Debian tools; a
missing tool fails the test; ``make unit`` leaves out the tests that need Debian's tools (marked
``tools``). That the rules fire on a live worker is
tests/integration/test_prometheus.py; that every metric they name is on /metrics,
tests/integration/test_operators.py.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from prometheus_client import generate_latest

from scoring.model.bundle import ModelBundle
from streams.services.score.handler import ScoreHandler
from streams.services.score.telemetry import ScoreCounters
from streams.settings import Settings
from streams.web.metrics import worker_registry
from tests.deploy_files import (
    DEPLOY,
    DOCKERFILE,
    GRAFANA_DASHBOARD,
    ROOT,
    RULE_TESTS,
    RULES,
    compose_config,
    dockerfile_instructions,
    healthcheck_command,
    rules,
    run,
    tool,
)

DEFAULTS = {name: field.default for name, field in Settings.model_fields.items()}
LONG_RUNNING = {"kafka", "worker", "prometheus", "grafana"}
ONE_SHOT = {"train-demo-model", "producer"}

# alert -> the setting its threshold mirrors
THRESHOLDS = {
    "StreamscoreConsumerLagHigh": "alert_lag_records",
    "StreamscoreConsumerLagOld": "alert_lag_seconds",
    "StreamscoreDeadLetterRatioHigh": "alert_dead_letter_ratio",
    "StreamscoreKpiLow": "alert_kpi_min",
    "StreamscoreEstimatedKpiLow": "alert_kpi_min",
}


DEBIAN_TOOLS = pytest.mark.tools  # docker-compose or promtool, from `make deploy-tools`


@pytest.fixture(scope="module")
def compose() -> dict:
    return compose_config()


def _published(config: dict) -> dict[str, list[tuple[str, int, int]]]:
    """(host address, host port, container port) of every service's published ports."""
    out = {}
    for name, service in config["services"].items():
        ports = [re.fullmatch(r"([\d.]+):(\d+):(\d+)(?:/tcp)?", str(p)) for p in service.get("ports", [])]
        assert all(ports), f"{name}: a port without an explicit host address: {service['ports']}"
        out[name] = [(m.group(1), int(m.group(2)), int(m.group(3))) for m in ports]
    return out


def _volumes(service: dict) -> dict[str, str]:
    """container path -> source (a named volume or a host path) of a service."""
    return {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}


def _listeners(value: str) -> dict[str, str]:
    return dict(item.split("://", 1) for item in value.split(","))


# ---------------------------------------------------------------- docker-compose.yml


@DEBIAN_TOOLS
def test_every_published_port_is_on_loopback_unless_the_operator_opts_out(compose: dict) -> None:
    published = _published(compose)
    assert {name for name, ports in published.items() if ports} == {
        "kafka",
        "worker",
        "prometheus",
        "grafana",
    }
    assert {addr for ports in published.values() for addr, _, _ in ports} == {"127.0.0.1"}
    opted_out = _published(compose_config(STREAMSCORE_BIND="0.0.0.0"))
    assert {addr for ports in opted_out.values() for addr, _, _ in ports} == {"0.0.0.0"}


@DEBIAN_TOOLS
def test_kafka_serves_the_services_in_network_and_the_host_on_loopback(compose: dict) -> None:
    kafka = compose["services"]["kafka"]["environment"]
    listeners, advertised = (
        _listeners(kafka["KAFKA_LISTENERS"]),
        _listeners(kafka["KAFKA_ADVERTISED_LISTENERS"]),
    )
    assert set(advertised) == {"DOCKER", "HOST"} and kafka["KAFKA_INTER_BROKER_LISTENER_NAME"] == "DOCKER"
    # the services' bootstrap is the in-network listener
    for name in ("worker", "producer"):
        assert compose["services"][name]["environment"]["STREAMSCORE_KAFKA_BOOTSTRAP"] == advertised["DOCKER"]
    assert advertised["DOCKER"] == "kafka" + listeners["DOCKER"]
    # the host's port leads to the HOST listener, which advertises the address the host dialled
    [(addr, host_port, container_port)] = _published(compose)["kafka"]
    assert listeners["HOST"] == f":{container_port}"
    assert advertised["HOST"] == f"{addr}:{host_port}"
    # so the CLI on the host works with no setting at all
    assert DEFAULTS["kafka_bootstrap"] == advertised["HOST"]


@DEBIAN_TOOLS
def test_state_lives_on_named_volumes(compose: dict) -> None:
    services, named = compose["services"], set(compose["volumes"])
    data_dir = next(
        re.search(r"STREAMSCORE_DATA_DIR=(\S+)", args).group(1)
        for instr, args in dockerfile_instructions()
        if instr == "ENV" and "STREAMSCORE_DATA_DIR" in args
    )
    wanted = {
        "kafka": services["kafka"]["environment"]["KAFKA_LOG_DIRS"],
        "worker": data_dir,  # the registry, state.key if no secret is given, Faust's data
        "prometheus": "/prometheus",  # prom/prometheus's --storage.tsdb.path
        "grafana": "/var/lib/grafana",
    }
    for name, path in wanted.items():
        source = _volumes(services[name]).get(path)
        assert source in named, f"{name}: {path} is not on a named volume"


@DEBIAN_TOOLS
def test_the_worker_of_the_stack_takes_a_bearer_token_on_its_inference_endpoints(compose: dict) -> None:
    """Issue 29: the /v2 endpoints were open by default; the stack sets a token (overridable in .env)."""
    token = compose["services"]["worker"]["environment"].get("STREAMSCORE_INFER_TOKEN")
    assert token, "the stack's worker serves /v2 without a token"


@DEBIAN_TOOLS
def test_the_state_key_is_a_secret_from_outside_the_image(compose: dict) -> None:
    worker = compose["services"]["worker"]
    assert [s["source"] if isinstance(s, dict) else s for s in worker["secrets"]] == ["state_key"]
    assert worker["environment"]["STREAMSCORE_STATE_KEY_FILE"] == "/run/secrets/state_key"
    assert compose["secrets"]["state_key"]["file"] == str(ROOT / "deploy/secrets/state.key")
    for name, service in compose["services"].items():
        assert "STREAMSCORE_STATE_KEY" not in service.get("environment", {}), name
    # neither committed nor sent to the image build
    assert run("git", "check-ignore", "-q", "deploy/secrets/state.key").returncode == 0
    assert "deploy/secrets" in (ROOT / ".dockerignore").read_text().splitlines()
    assert not any(instr in ("COPY", "ADD") and "deploy" in args for instr, args in dockerfile_instructions())


@DEBIAN_TOOLS
def test_long_running_services_restart_and_one_shots_do_not(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == LONG_RUNNING | ONE_SHOT
    assert {name: services[name].get("restart") for name in LONG_RUNNING} == dict.fromkeys(
        LONG_RUNNING, "unless-stopped"
    )
    assert {name: services[name].get("restart") for name in ONE_SHOT} == dict.fromkeys(ONE_SHOT, "no")


@DEBIAN_TOOLS
def test_services_start_when_what_they_need_is_healthy(compose: dict) -> None:
    services = compose["services"]
    assert services["worker"]["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "train-demo-model": {"condition": "service_completed_successfully"},
    }
    assert services["producer"]["depends_on"] == {"worker": {"condition": "service_healthy"}}
    assert "kafka-topics.sh" in " ".join(services["kafka"]["healthcheck"]["test"])
    # the worker's is the image's HEALTHCHECK, on /ready
    assert services["worker"]["healthcheck"]["test"] == ["CMD", *healthcheck_command()]
    assert "/ready" in " ".join(healthcheck_command())
    for name in ONE_SHOT:  # the image's HEALTHCHECK means nothing for a one-shot command
        assert services[name]["healthcheck"]["test"] == ["NONE"], name


@DEBIAN_TOOLS
def test_one_image_is_built_once_and_reused(compose: dict) -> None:
    services = compose["services"]
    ours = {name for name, s in services.items() if s["image"].startswith("streamscore:")}
    assert ours == ONE_SHOT | {"worker"}
    assert len({services[name]["image"] for name in ours}) == 1
    builders = [name for name in ours if "build" in services[name]]
    assert builders == ["train-demo-model"]  # the first to start: the others depend on it
    assert services["train-demo-model"]["build"]["context"] == str(ROOT)
    assert all(services[name].get("pull_policy") == "never" for name in ours)


@DEBIAN_TOOLS
def test_prometheus_runs_its_default_command_on_the_mounted_config(compose: dict, tmp_path) -> None:
    prometheus = compose["services"]["prometheus"]
    assert "command" not in prometheus and "entrypoint" not in prometheus  # the image's flags stay
    mounts = _volumes(prometheus)
    assert mounts["/etc/prometheus/prometheus.yml"] == str(DEPLOY / "prometheus/prometheus.yml")
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        assert mounts[rule_file] == str(RULES), f"{rule_file} is not mounted"
    targets = [t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    assert targets == [f"worker:{DEFAULTS['web_port']}"]
    # promtool reads the config with its rule files where this checkout has them
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump({**config, "rule_files": [str(RULES)]}))
    done = run(tool("promtool"), "check", "config", str(local))
    assert done.returncode == 0, done.stdout + done.stderr


@DEBIAN_TOOLS
def test_grafana_mounts_its_provisioning_and_the_dashboard_it_names(compose: dict) -> None:
    grafana = compose["services"]["grafana"]
    mounts = _volumes(grafana)
    assert mounts["/etc/grafana/provisioning"] == str(DEPLOY / "grafana/provisioning")
    providers = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/streamscore.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    assert mounts[path] == str(GRAFANA_DASHBOARD.parent)
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/{GRAFANA_DASHBOARD.name}"


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


def test_each_panel_unit_fits_what_it_plots() -> None:
    """Seconds only where every query is a duration; the busy share (seconds per second) is a ratio."""
    duration = re.compile(r"histogram_quantile\(.*_seconds_bucket|_lag_seconds\b")
    units = {}
    for panel in json.loads(GRAFANA_DASHBOARD.read_text())["panels"]:
        unit, exprs = panel["fieldConfig"]["defaults"].get("unit"), [t["expr"] for t in panel["targets"]]
        units[panel["title"]] = unit
        if unit == "s":
            assert all(duration.search(e) for e in exprs), panel["title"]
        if any("busy_seconds_total" in e for e in exprs):
            assert (unit, panel["fieldConfig"]["defaults"].get("max")) == ("percentunit", 1), panel["title"]
    assert "percentunit" in units.values()


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_is_hadolint_clean() -> None:
    done = run(tool("hadolint"), "--no-color", "--failure-threshold", "info", str(DOCKERFILE))
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


def test_image_is_pinned_non_root_and_installs_the_lock_before_the_source() -> None:
    steps = dockerfile_instructions()
    [base] = [args for instr, args in steps if instr == "FROM"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    users = [args for instr, args in steps if instr == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    order = [f"{instr} {args}" for instr, args in steps]
    lock = order.index("RUN pip install --no-cache-dir -r requirements.txt")
    assert order.index("COPY requirements.txt ./") < lock < order.index("COPY streams streams")
    assert any(s.startswith("RUN pip install --no-cache-dir --no-deps .") for s in order[lock + 1 :])


# ---------------------------------------------------------------- alert rules


@DEBIAN_TOOLS
def test_alert_rules_pass_promtool_check() -> None:
    done = run(tool("promtool"), "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    found = int(re.search(r"SUCCESS: (\d+) rules found", done.stdout).group(1))
    assert found == len(rules()) == 11


@DEBIAN_TOOLS
def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    done = run(tool("promtool"), "test", "rules", *map(str, RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    groups = [group for path in RULE_TESTS for group in yaml.safe_load(path.read_text())["tests"]]
    cases = sum(len(group["alert_rule_test"]) for group in groups)
    print(
        f"promtool test rules: {len(rules())} rules, {cases} alert evaluations in {len(groups)} test groups"
    )


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    firing, quiet = set(), set()
    for path in RULE_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group["alert_rule_test"]:
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in rules()}
    assert (names - firing, names - quiet) == (set(), set())


def test_every_rule_is_complete_and_named_once() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    for rule in rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"], rule["alert"]
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


@DEBIAN_TOOLS
def test_a_fresh_workers_metrics_pass_promtool_check_metrics(agrawal_bundle: ModelBundle, tmp_path) -> None:
    text = generate_latest(
        worker_registry(ScoreCounters(), ScoreHandler(Settings(), agrawal_bundle)).registry
    )
    exposition = tmp_path / "metrics.txt"
    exposition.write_bytes(text)
    done = run("sh", "-c", f'"{tool("promtool")}" check metrics < "{exposition}"')
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr
