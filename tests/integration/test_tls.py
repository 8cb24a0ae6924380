"""Every client of the service through a real TLS handshake, and the refusals a user would meet.

The brokers are reachable only through stunnel (``tests/integration/tls.py``): the worker,
the CLI commands and the test's own clients are given stunnel's ports, never a broker's
plaintext one. ``tls``: the client checks the broker's certificate; ``mtls``: the broker
also requires the client's, whose key is encrypted (``STREAMSCORE_KAFKA_SSL_KEY_PASSWORD``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pytest
from confluent_kafka.admin import AdminClient

from schemas.feedback import MetricsSnapshot
from scoring.offline.synthetic import agrawal_frame
from tests.conditions import budget
from tests.integration.kafka_tools import (
    Record,
    WorkerProcess,
    distinct_event_ids,
    feature_events,
    names_env,
    produce,
    read_topic,
    wait_scored,
)
from tests.integration.tls import KEY_PASSWORD, MODES, TlsCluster

pytestmark = pytest.mark.integration

N = 10_000
SEED = 17


def _cli(
    env: dict[str, str], *args: str, timeout_s: float = 180
) -> tuple[subprocess.CompletedProcess, float]:
    """``streamscore ARGS`` as a subprocess; returns what it did and how long it took."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streams", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        env={**os.environ, "COLUMNS": "200", **env},  # rich tables at full width
    )
    took = time.monotonic() - started
    print(
        f"$ streamscore {' '.join(args)}  ({took:.1f} s, exit {done.returncode})\n{done.stdout}{done.stderr}"
    )
    return done, took


def _ok(env: dict[str, str], *args: str) -> str:
    done, _ = _cli(env, *args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert KEY_PASSWORD not in done.stdout + done.stderr
    return done.stdout


def _labels(prefix: str) -> list[tuple[bytes, bytes]]:
    """The label of each event ``streamscore produce --synthetic N --seed SEED`` writes (its event
    times are now + i ms), a second later."""
    labels, now = enumerate(agrawal_frame(N, seed=SEED)["approved"]), int(time.time() * 1000)
    bodies = [
        {"event_id": f"{prefix}-{i}", "label": float(y), "label_time": now + i + 1000} for i, y in labels
    ]
    return [(body["event_id"].encode(), orjson.dumps(body)) for body in bodies]


@dataclass
class Served:
    """A worker with every role (batch paths) that scored N events produced by the CLI, labels sent."""

    mode: str
    env: dict[str, str]
    client: dict[str, str]
    worker: WorkerProcess
    produced_in_s: float

    def read(self, topic: str, count: int, **kwargs) -> list[Record]:
        return read_topic(
            self.client["bootstrap.servers"], self.env[topic], count, client=self.client, **kwargs
        )


@pytest.fixture(scope="module", params=MODES)
def served(
    request, tls_cluster: TlsCluster, agrawal_bundle_dir, v2_dir, tmp_path_factory
) -> Iterator[Served]:
    mode = request.param
    folder = tmp_path_factory.mktemp(f"served-{mode}")
    env = {
        **tls_cluster.env(mode),
        **names_env(uuid.uuid4().hex[:10], folder),
        "STREAMSCORE_REGISTRY": str(folder / "registry"),
        "STREAMSCORE_DRIFT_WINDOW_EVENTS": "5000",
        "STREAMSCORE_METRICS_INTERVAL_S": "1",
    }
    for bundle in (agrawal_bundle_dir, v2_dir):
        _ok(env, "model", "register", str(bundle))
    worker = WorkerProcess(env, agrawal_bundle_dir, folder / "worker.log")
    try:
        worker.wait_ready()
        started = time.monotonic()
        out = _ok(env, "produce", "--synthetic", str(N), "--seed", str(SEED), "--prefix", f"tls{mode}")
        assert f"produced {N} events" in out
        produced_in_s = time.monotonic() - started
        client = tls_cluster.client(mode)
        produce(
            client["bootstrap.servers"], env["STREAMSCORE_TOPIC_LABELS"], _labels(f"tls{mode}"), client=client
        )
        yield Served(mode, env, client, worker, produced_in_s)
    finally:
        worker.kill()
    assert KEY_PASSWORD not in worker.log_path.read_text(errors="replace"), "the key password is in the log"


def test_every_event_is_scored_over_tls(served: Served) -> None:
    scored = wait_scored(served.worker, N)
    predictions = served.read("STREAMSCORE_TOPIC_PREDICTIONS", N, counted=distinct_event_ids())
    ids = {orjson.loads(r.value)["event_id"] for r in predictions}
    print(f"{served.mode}: produced {N:,} events by the CLI in {served.produced_in_s:.1f} s; "
          f"/stats scored {scored:,}; {len(ids):,} distinct predictions read back over TLS")  # fmt: skip
    assert ids == {f"tls{served.mode}-{i}" for i in range(N)}
    assert scored == N
    # the broker advertises stunnel's port: every client stays on TLS after the bootstrap
    advertised = AdminClient(served.client).list_topics(timeout=10).brokers.values()
    assert {f"{b.host}:{b.port}" for b in advertised} == {served.client["bootstrap.servers"]}


def test_labels_are_joined_and_the_kpis_reach_the_metrics_topic(served: Served) -> None:
    def all_joined(record: Record) -> bool:
        return MetricsSnapshot.model_validate_json(record.value).labels.matched == N

    records = served.read("STREAMSCORE_TOPIC_METRICS", 1, timeout_s=120, counted=all_joined)
    final = MetricsSnapshot.model_validate_json(records[-1].value)
    row = final.overall(final.champion)
    print(f"{served.mode}: {len(records)} KPI snapshots on the metrics topic; the last: {final.labels}; "
          f"{final.champion} KPIs over {row.count:,} labelled events")  # fmt: skip
    assert final.labels.matched == N and row is not None and row.count == N


def test_drift_windows_close_and_lag_comes_from_the_consumers_statistics(served: Served) -> None:
    wait_scored(served.worker, N)
    reports = [
        orjson.loads(r.value)
        for r in served.read("STREAMSCORE_TOPIC_DRIFT", 2, timeout_s=60, counted=_is_report)
        if _is_report(r)
    ]
    group = served.env["STREAMSCORE_GROUP_ID"]
    worker = served.worker
    lag = worker.wait(
        lambda: _metric(worker.get_text("/metrics"), "streamscore_consumergroup_lag", group),
        lambda lag: lag == 0,
        "the score group's lag on /metrics to fall to 0",
        budget(),
    )
    print(f"{served.mode}: drift windows of {[r['events'] for r in reports]} events; "
          f"score group lag on /metrics: {lag}")  # fmt: skip
    assert sum(r["events"] for r in reports) == N
    assert lag == 0


def test_status_reads_the_groups_over_tls(served: Served) -> None:
    wait_scored(served.worker, N)
    group = served.env["STREAMSCORE_GROUP_ID"]
    out = _ok(served.env, "status", "--group-id", group, "--interval", "0.2")
    rows = [
        line
        for line in out.splitlines()
        if group in line and served.env["STREAMSCORE_TOPIC_FEATURES"] in line
    ]
    assert len(rows) == 4, "a row per partition of the features topic"
    assert re.search(r"total lag \d+", out) is not None


def test_a_deploy_through_the_cli_reaches_the_worker(served: Served) -> None:
    out = _ok(served.env, "model", "deploy", "2", "--reason", "tls test")
    served.worker.wait_stats(lambda s: s["model_version"] == "2", "version 2 served", budget())
    assert "champion loans 2" in out


# under mutual TLS only: its settings are the TLS ones plus a client certificate
@pytest.mark.parametrize("served", ["mtls"], indirect=True)
def test_replay_report_and_retrain_read_the_topics_over_tls(
    served: Served, agrawal_bundle_dir, tmp_path
) -> None:
    wait_scored(served.worker, N)
    out_topic = f"{served.env['STREAMSCORE_TOPIC_PREDICTIONS']}-replay"
    replay = ["replay", "--model", str(agrawal_bundle_dir), "--out-topic", out_topic]
    out = _ok(served.env, *replay, "--from-offset", "0", "--to-offset", "99")
    replayed = int(re.search(r"replayed ([\d,]+) records", out).group(1).replace(",", ""))
    assert replayed == 400  # offsets 0..99 of each of the 4 partitions
    assert len(read_topic(served.client["bootstrap.servers"], out_topic, 400, client=served.client)) == 400

    page = tmp_path / "report.html"
    out = _ok(
        served.env, "report", "--model", str(agrawal_bundle_dir), "--from-topics", "2000", "--out", str(page)
    )
    assert "report on 2,000 labelled rows" in out and page.stat().st_size > 10_000

    out = _ok(served.env, "retrain", "--from-topics", "5000", "--trees", "20", "--version", "3")
    assert "registered loans version 3" in out


def _is_report(record: Record) -> bool:
    return orjson.loads(record.value)["type"] == "drift_report"


def _metric(text: str, name: str, group: str) -> float | None:
    values = [
        float(m.group(1))
        for m in re.finditer(
            rf'^{name}\{{[^}}]*consumergroup="{re.escape(group)}"[^}}]*\}} (\S+)$', text, re.M
        )
    ]
    return sum(values) if values else None


def test_the_faust_agent_paths_score_and_watch_drift_over_mutual_tls(
    tls_cluster: TlsCluster, agrawal_bundle_dir, tmp_path, workers
) -> None:
    client = tls_cluster.client("mtls")
    env = {
        **tls_cluster.env("mtls"),
        **names_env(uuid.uuid4().hex[:10], tmp_path),
        "STREAMSCORE_SCORE_PATH": "agent",
        "STREAMSCORE_DRIFT_PATH": "agent",
        "STREAMSCORE_ROLES": "score,drift",
        "STREAMSCORE_DRIFT_WINDOW_EVENTS": "5000",
        "STREAMSCORE_LAG_INTERVAL_S": "1",
    }
    worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "agent.log")
    workers.append(worker)
    worker.wait_ready()
    bootstrap = client["bootstrap.servers"]
    produce(bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], feature_events(N, SEED, "agent"), client=client)

    scored = wait_scored(worker, N)
    predictions = read_topic(
        bootstrap, env["STREAMSCORE_TOPIC_PREDICTIONS"], N, counted=distinct_event_ids(), client=client
    )
    reports = read_topic(bootstrap, env["STREAMSCORE_TOPIC_DRIFT"], 2, counted=_is_report, client=client)
    faust_group = env["STREAMSCORE_APP_ID"] + "-drift-score"
    lag = worker.wait(
        lambda: _metric(worker.get_text("/metrics"), "streamscore_consumergroup_lag", faust_group),
        lambda lag: lag is not None,
        "the Faust group's lag sampled on /metrics",
        budget(),
    )
    ids = {orjson.loads(r.value)["event_id"] for r in predictions}
    windows = sum(_is_report(r) for r in reports)
    print(f"agent paths over mutual TLS: /stats scored {scored:,}; {len(ids):,} distinct predictions; "
          f"{windows} drift windows; Faust group lag sampled over TLS: {lag}")  # fmt: skip
    assert scored >= N
    assert ids == {f"agent-{i}" for i in range(N)}
    assert windows == 2
    assert lag is not None
    assert KEY_PASSWORD not in worker.log_path.read_text(errors="replace")


# -- refusals: each one line on stderr naming the problem and the file, exit 1, without waiting out a timeout


@dataclass(frozen=True)
class Refusal:
    env: dict[str, str]
    named: str  # the file (or setting) the line must name
    problem: str  # and a phrase of what it says is wrong


def _refusals(cluster: TlsCluster) -> dict[str, Refusal]:
    pki, tls, mtls = cluster.pki, cluster.env("tls"), cluster.env("mtls")
    gone = pki.ca.cert.parent / "gone.key"
    cert, key = "STREAMSCORE_KAFKA_SSL_CERTFILE", "STREAMSCORE_KAFKA_SSL_KEYFILE"
    return {
        "wrong CA": Refusal(
            {**tls, "STREAMSCORE_KAFKA_SSL_CAFILE": str(pki.other_ca.cert)},
            str(pki.other_ca.cert),
            "is not signed by the CA in",
        ),
        "expired server certificate": Refusal(
            {**tls, "STREAMSCORE_KAFKA_BOOTSTRAP": cluster.bootstrap("expired")},
            str(pki.ca.cert),
            "has expired",
        ),
        "no client certificate": Refusal(
            {**tls, "STREAMSCORE_KAFKA_BOOTSTRAP": cluster.bootstrap("mtls")},
            cert,
            "requires a client certificate",
        ),
        "client certificate of another CA": Refusal(
            {**mtls, cert: str(pki.stranger.cert), key: str(pki.stranger.key)},
            str(pki.stranger.cert),
            "refused the client certificate",
        ),
        "key file that holds no key": Refusal(
            {**mtls, key: str(pki.not_a_key)}, str(pki.not_a_key), "not a PEM private key"
        ),
        "key file missing": Refusal({**mtls, key: str(gone)}, str(gone), "does not exist"),
        "wrong key password": Refusal(
            {**mtls, "STREAMSCORE_KAFKA_SSL_KEY_PASSWORD": WRONG_PASSWORD},
            str(pki.client.key),
            "wrong password",
        ),
    }


WRONG_PASSWORD = "not-the-pass-93c1"
REFUSALS = [
    "wrong CA",
    "expired server certificate",
    "no client certificate",
    "client certificate of another CA",
    "key file that holds no key",
    "key file missing",
    "wrong key password",
]


@pytest.mark.parametrize("command", ["status", "worker"])
@pytest.mark.parametrize("case", REFUSALS)
def test_a_tls_problem_is_one_line_naming_the_file(
    case: str, command: str, tls_cluster: TlsCluster, agrawal_bundle_dir, tmp_path
) -> None:
    refusal = _refusals(tls_cluster)[case]
    env = {**refusal.env, **names_env(uuid.uuid4().hex[:10], tmp_path)}
    args = ["status"] if command == "status" else ["worker", "--model", str(agrawal_bundle_dir)]
    done, took = _cli(env, *args, timeout_s=budget())
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    print(f"{case} / {command}: exit {done.returncode} after {took:.1f} s")
    assert done.returncode == 1
    # the check names what it found, not a timeout it ran into (no wall-clock bound: a busy machine
    # takes its time to start the command, and the subprocess's own timeout catches a hang)
    assert "timed out" not in done.stderr and "waited" not in done.stderr, done.stderr
    assert len(lines) == 1 and lines[0].startswith("streamscore: error: TLS: "), done.stderr
    assert refusal.named in lines[0] and refusal.problem in lines[0]
    assert "Traceback" not in done.stdout + done.stderr
    for secret in (KEY_PASSWORD, WRONG_PASSWORD):
        assert secret not in done.stdout + done.stderr
