"""Model lifecycle on the real broker: deploy and rollback under load, the gate, startup, shadow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest

from schemas.lifecycle import ModelAlert, ModelRef
from scoring.lifecycle import decisions as lifecycle
from scoring.model.bundle import MODEL_FILE, ModelBundle
from scoring.offline.synthetic import agrawal_frame, events_from_frame, numeric_frame
from scoring.offline.training import train_bundle
from streams.kafka.producer import event_payloads, produce_payloads
from streams.services.shared.model_updates import publish_update
from streams.settings import Settings
from tests.integration.kafka_tools import Record, WorkerProcess, produce, read_monitor, read_topic
from tests.unit.test_lifecycle import _rewrite_manifest

pytestmark = pytest.mark.integration


def refused_model_alert(record: Record) -> bool:
    """A model alert refusing an update (a worker's start and applied updates are model alerts too)."""
    value = record.value or b""
    return b"model_alert" in value and ModelAlert.model_validate_json(value).outcome == "refused"


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "streams", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )
    print(f"$ streamscore {' '.join(args)}\n{done.stdout}{done.stderr[-2000:]}")
    return done


def _wait(predicate, timeout_s: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _stream_labelled(bootstrap: str, env: dict, data, prefix: str) -> list[dict]:
    """Produce the events of an Agrawal frame, then a label for each; returns the events.

    A label is timed a second after its event: one that reaches the learner before its
    event waits under the join's TTL, which counts event time.
    """
    events = list(events_from_frame(data.drop(columns=["approved"]), prefix=prefix))
    produce(bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], list(event_payloads(events)))
    labels = [
        (
            e["event_id"].encode(),
            orjson.dumps(
                {"event_id": e["event_id"], "label": float(y), "label_time": e["event_time"] + 1000}
            ),
        )
        for e, y in zip(events, data["approved"], strict=True)
    ]
    produce(bootstrap, env["STREAMSCORE_TOPIC_LABELS"], labels)
    return events


@pytest.fixture(scope="module")
def moved_concept_dir(tmp_path_factory) -> Path:
    """Version 3: trained after the labelling concept moved (Agrawal function 2 -> 5)."""
    out = tmp_path_factory.mktemp("v3") / "loans-3"
    frame = agrawal_frame(20_000, seed=31, classification_function=5)
    train_bundle(frame, "approved", out, name="loans", version="3", num_trees=150)
    return out


def _serve_with_shadow(env: dict, champion_dir: Path, shadow_dir: Path, tmp_path, workers) -> WorkerProcess:
    """A ready worker serving its command-line champion with ``shadow_dir`` registered and in shadow."""
    assert _cli(env, "model", "register", str(shadow_dir)).returncode == 0
    worker = WorkerProcess(env, champion_dir, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready()
    assert _cli(env, "model", "challenger", "3", "--shadow").returncode == 0
    _wait(lambda: "challenger" in worker.get("/stats"), what="the shadow challenger")
    return worker


@pytest.fixture
def lifecycle_env(topic_env, tmp_path) -> dict[str, str]:
    return {**topic_env, "STREAMSCORE_REGISTRY": str(tmp_path / "registry"), "STREAMSCORE_ROLES": "score"}


def test_deploy_and_rollback_while_streaming_lose_nothing_and_swap_between_batches(
    bootstrap, lifecycle_env, agrawal_bundle, agrawal_bundle_dir, v2_dir, tmp_path, workers
):
    env = {**lifecycle_env, "STREAMSCORE_BATCH_SIZE": "500"}
    assert _cli(env, "model", "register", str(agrawal_bundle_dir)).returncode == 0
    assert _cli(env, "model", "register", str(v2_dir)).returncode == 0
    worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready()
    assert worker.get("/stats")["model_version"] == "1"

    frame = agrawal_frame(100_000, seed=21, classification_function=2).drop(columns=["approved"])
    rows = list(events_from_frame(frame, prefix="swap"))
    settings = Settings(**{k[len("STREAMSCORE_") :].lower(): v for k, v in env.items()})
    # the stream runs until both swaps have landed and 10,000 more events are scored, however
    # slow the machine: event i carries row i % 100,000 of the frame
    stop, events = threading.Event(), []

    def stream():
        for i in range(10 * len(rows)):
            if stop.is_set():
                return
            row = rows[i % len(rows)]
            events.append({**row, "event_id": f"swap-{i}", "entity_id": f"cust-{i % 1000}"})
            yield events[-1]

    producer = threading.Thread(
        target=produce_payloads, args=(settings, event_payloads(stream())), kwargs={"rate": 7000}
    )
    producer.start()
    _wait(lambda: worker.get("/stats")["scored"] >= 15_000, what="15,000 scored")
    assert _cli(env, "model", "deploy", "2", "--reason", "test").returncode == 0
    _wait(lambda: worker.get("/stats")["model_version"] == "2", what="v2 serving")
    at_deploy = worker.get("/stats")["scored"]
    assert _cli(env, "model", "rollback").returncode == 0
    _wait(lambda: worker.get("/stats")["model_version"] == "1", what="v1 serving again")
    at_rollback = worker.get("/stats")["scored"]
    _wait(
        lambda: worker.get("/stats")["scored"] >= at_rollback + 10_000,
        what="10,000 scored after the rollback",
    )
    stop.set()
    producer.join()
    print(f"{len(events):,} events; v2 serving from about event {at_deploy:,}; v1 from {at_rollback:,}")
    assert at_rollback < len(events), "both swaps must land mid-stream"

    records = read_topic(bootstrap, env["STREAMSCORE_TOPIC_PREDICTIONS"], len(events), idle_s=2.0)
    bodies = [orjson.loads(r.value) for r in records]
    ids = Counter(b["event_id"] for b in bodies)
    assert len(ids) == len(events) and sum(ids.values()) == len(events), "lost or scored twice"

    # every prediction names the version that made it: its score is that version's own
    matrix = agrawal_bundle.spec.encode_frame(frame)
    expected = {"1": agrawal_bundle.predict(matrix), "2": ModelBundle.load(v2_dir).predict(matrix)}
    index = np.asarray([int(b["event_id"].rsplit("-", 1)[1]) % len(rows) for b in bodies])
    scores = np.asarray([b["score"] for b in bodies])
    named = np.asarray([b["model_version"] for b in bodies])
    for version in ("1", "2"):
        mine = named == version
        np.testing.assert_allclose(scores[mine], expected[version][index[mine]], rtol=0, atol=1e-12)
    by_version = Counter(named.tolist())
    print(f"predictions by version: {dict(by_version)}")
    assert by_version["2"] > 0 and by_version["1"] > by_version["2"] / 10

    # versions change only between batches: along each partition's offsets, runs 1 -> 2 -> 1
    for partition in sorted({b["partition"] for b in bodies}):
        ordered = sorted((b["offset"], b["model_version"]) for b in bodies if b["partition"] == partition)
        runs = [v for i, (_, v) in enumerate(ordered) if i == 0 or ordered[i - 1][1] != v]
        assert runs == ["1", "2", "1"], f"partition {partition}: version runs {runs}"
    # all predictions scored in one batch (one scored_at per handle call) name one version
    per_batch: dict[tuple[int, int], set[str]] = {}
    for b in bodies:
        per_batch.setdefault((b["scored_at"], b["partition"]), set()).add(b["model_version"])
    mixed = sum(len(v) > 1 for v in per_batch.values())
    assert mixed <= 2, f"{mixed} (scored_at, partition) groups mix versions"  # two swaps, same ms at most
    control = worker.get("/stats")["control"]
    assert (control["applied"], control["refused"]) == (2, 0)


def _copy_into_registry(bundle_dir: Path, registry: Path, version: str) -> Path:
    """A bundle placed in the registry by hand (as corruption at rest would), bypassing registration."""
    target = registry / "loans" / version
    shutil.copytree(bundle_dir, target)
    return target


def test_bad_bundles_are_refused_with_an_alert_and_the_old_model_keeps_serving(
    bootstrap, lifecycle_env, agrawal_bundle_dir, v2_dir, tmp_path, workers
):
    env = lifecycle_env
    registry = Path(env["STREAMSCORE_REGISTRY"])
    v1 = ModelRef(name="loans", version="1", uri=str(agrawal_bundle_dir))
    bad_manifest = _copy_into_registry(v2_dir, registry, "bad-manifest")
    (bad_manifest / MODEL_FILE).write_text((bad_manifest / MODEL_FILE).read_text() + "\n")
    no_load = _copy_into_registry(v2_dir, registry, "no-load")
    (no_load / MODEL_FILE).write_text("tree\nversion=v4\nnot a model\n")
    _rewrite_manifest(no_load)
    other = train_bundle(numeric_frame(500, n_features=4, seed=2), "y", tmp_path / "nums", name="loans")
    other_features = _copy_into_registry(other.path, registry, "other-features")

    worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready()
    settings = Settings(**{k[len("STREAMSCORE_") :].lower(): v for k, v in env.items()})
    current = lifecycle.deploy(None, v1)
    publish_update(settings, current)
    # the command line refuses a bad bundle before publishing anything
    done = _cli(env, "model", "deploy", "other-features")
    assert done.returncode == 1 and "features" in done.stderr
    # a worker checks again whatever reaches the topic
    for name, path in (
        ("bad-manifest", bad_manifest),
        ("no-load", no_load),
        ("other-features", other_features),
    ):
        publish_update(
            settings, lifecycle.deploy(current, ModelRef(name="loans", version=name, uri=str(path)))
        )

    alerts_topic = env["STREAMSCORE_TOPIC_ALERTS"]
    records = read_topic(bootstrap, alerts_topic, 3, idle_s=1.0, counted=refused_model_alert)
    alerts = [ModelAlert.model_validate_json(r.value) for r in records]
    for a in alerts:
        print(f"{a.outcome} {a.version}: {a.check}: {a.reason[:100]}")
    refused = {a.version: a.check for a in alerts if a.outcome == "refused"}
    assert refused == {"bad-manifest": "manifest", "no-load": "load", "other-features": "features"}
    assert all(a.serving == "loans:1" for a in alerts)

    # still serving version 1: new events are scored by it
    frame = agrawal_frame(1000, seed=23, classification_function=2).drop(columns=["approved"])
    produce(
        bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], list(event_payloads(events_from_frame(frame, "after")))
    )
    predictions = read_topic(bootstrap, env["STREAMSCORE_TOPIC_PREDICTIONS"], 1000)
    assert {orjson.loads(r.value)["model_version"] for r in predictions} == {"1"}
    assert worker.alive()


def test_a_restarted_worker_serves_the_recorded_live_version(
    bootstrap, lifecycle_env, agrawal_bundle_dir, v2_dir, tmp_path, workers
):
    env = lifecycle_env
    assert _cli(env, "model", "register", str(v2_dir)).returncode == 0
    assert _cli(env, "model", "deploy", "2").returncode == 0
    worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "worker.log")  # the command line says v1
    workers.append(worker)
    worker.wait_ready()
    assert worker.get("/stats")["model_version"] == "2"
    listed = _cli(env, "model", "list")
    assert listed.returncode == 0 and "champion" in listed.stdout


def test_shadow_publishes_only_the_champion_and_compare_promotes_a_better_challenger(
    bootstrap, lifecycle_env, agrawal_bundle, agrawal_bundle_dir, moved_concept_dir, tmp_path, workers
):
    env = lifecycle_env
    worker = _serve_with_shadow(env, agrawal_bundle_dir, moved_concept_dir, tmp_path, workers)
    metrics = worker.get_text("/metrics")
    assert (
        'streamscore_challenger_share{mode="shadow",model_name="loans",model_version="3"} 0.0' in metrics
        or ('streamscore_challenger_share{model_name="loans",model_version="3",mode="shadow"} 0.0' in metrics)
    )

    data = agrawal_frame(5000, seed=37, classification_function=5)
    _stream_labelled(bootstrap, env, data, "shadow")

    predictions = read_topic(bootstrap, env["STREAMSCORE_TOPIC_PREDICTIONS"], 5000, idle_s=1.0)
    assert len(predictions) == 5000
    assert {orjson.loads(r.value)["model_version"] for r in predictions} == {"1"}
    monitor = read_monitor(bootstrap, env["STREAMSCORE_TOPIC_MONITOR"], 5000)
    shadow_rows = sum(len(m["shadow_scores"]) for m in monitor if m.get("shadow_model_version") == "3")
    assert shadow_rows == sum(len(m["event_ids"]) for m in monitor) == 5000

    done = _cli(env, "model", "compare", "--promote")
    assert done.returncode == 0, done.stderr
    assert "McNemar" in done.stdout and "5,000 / 5,000" in done.stdout
    matrix = agrawal_bundle.spec.encode_frame(data.drop(columns=["approved"]))
    y = data["approved"].to_numpy()
    accuracy = {
        "1": np.mean((agrawal_bundle.predict(matrix) >= 0.5) == y),
        "3": np.mean((ModelBundle.load(moved_concept_dir).predict(matrix) >= 0.5) == y),
    }
    print(f"offline accuracy on the 5,000 events: {accuracy}")
    assert f"accuracy   {accuracy['1']:10.4f} {accuracy['3']:10.4f}" in done.stdout
    assert "winner at alpha 0.01: challenger" in done.stdout and "promoted 3" in done.stdout
    _wait(lambda: worker.get("/stats")["model_version"] == "3", what="the promoted version serving")
    assert "challenger" not in worker.get("/stats")


def test_a_kpi_below_threshold_requests_retraining_and_retrain_deploys_a_better_version(
    bootstrap, lifecycle_env, agrawal_bundle_dir, tmp_path, workers
):
    env = {
        **lifecycle_env,
        "STREAMSCORE_ROLES": "learn,score",
        "STREAMSCORE_RETRAIN_KPI_THRESHOLD": "0.8",
        "STREAMSCORE_KPI_WINDOW": "1000",
        "STREAMSCORE_METRICS_EVERY_LABELS": "1000",
    }
    worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready()

    def stream(n: int, seed: int, prefix: str) -> list[dict]:
        """Events whose labels follow Agrawal function 5, which version 1 (function 2) never saw."""
        data = agrawal_frame(n, seed=seed, classification_function=5)
        events = _stream_labelled(bootstrap, env, data, prefix)
        return [{**e, "label": float(y)} for e, y in zip(events, data["approved"], strict=True)]

    stream(8000, 41, "old")
    requests = read_topic(bootstrap, env["STREAMSCORE_TOPIC_RETRAIN"], 1, timeout_s=120)
    request = orjson.loads(requests[0].value)
    print(f"retrain request: {request['trigger']}: {request['reason']}")
    assert request["trigger"] == "kpi" and request["model"] == "loans:1"

    done = _cli(env, "retrain", "--from-topics", "8000", "--trees", "100", "--deploy")
    assert done.returncode == 0, done.stderr
    assert "registered loans version 2" in done.stdout and "deployed 2" in done.stdout
    _wait(lambda: worker.get("/stats")["model_version"] == "2", what="the retrained version serving")

    fresh = stream(4000, 43, "new")
    predictions = read_topic(bootstrap, env["STREAMSCORE_TOPIC_PREDICTIONS"], 12_000, idle_s=1.0)
    served = {}
    for r in predictions:
        body = orjson.loads(r.value)
        served[body["event_id"]] = body
    truth = {e["event_id"]: e["label"] for e in fresh}
    new = [served[i] for i in truth]
    assert {p["model_version"] for p in new} == {"2"}
    accuracy = np.mean([(p["score"] >= 0.5) == (truth[p["event_id"]] >= 0.5) for p in new])
    old = [p for p in served.values() if p["event_id"].startswith("old")]
    print(f"version 2 accuracy on 4,000 fresh events: {accuracy:.4f}; version 1 served {len(old):,} before")
    assert accuracy > 0.9


def test_the_river_challenger_is_published_as_a_version_and_serves_in_shadow(
    bootstrap, lifecycle_env, agrawal_bundle_dir, tmp_path, workers
):
    env = {**lifecycle_env, "STREAMSCORE_ROLES": "learn,score", "STREAMSCORE_METRICS_EVERY_LABELS": "1000"}
    worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready()
    data = agrawal_frame(6000, seed=47, classification_function=2)
    _stream_labelled(bootstrap, env, data, "learn")
    _wait(lambda: worker.get("/stats")["learn"]["snapshots"] >= 5, what="five metrics snapshots")

    done = _cli(env, "model", "publish-challenger", "--shadow")
    assert done.returncode == 0, done.stderr
    assert "registered the River challenger as loans version 2" in done.stdout
    _wait(lambda: worker.get("/stats").get("challenger", {}).get("model_version") == "2", what="shadow v2")
    published = ModelBundle.load(Path(env["STREAMSCORE_REGISTRY"]) / "loans" / "2")
    assert published.metadata.model_kind == "linear"

    more = agrawal_frame(2000, seed=53, classification_function=2).drop(columns=["approved"])
    produce(
        bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], list(event_payloads(events_from_frame(more, "after")))
    )
    read_topic(bootstrap, env["STREAMSCORE_TOPIC_PREDICTIONS"], 8000)  # all scored: monitor is written too
    shadowed = read_monitor(
        bootstrap,
        env["STREAMSCORE_TOPIC_MONITOR"],
        2000,
        where=lambda b: b.get("shadow_model_version") == "2",
    )
    rows, scores = [], []
    for body in shadowed:
        if body.get("shadow_model_version") == "2":
            rows += body["rows"]
            scores += body["shadow_scores"]
    matrix = np.asarray([[np.nan if v is None else v for v in row] for row in rows], dtype=float)
    assert len(scores) == 2000
    np.testing.assert_allclose(scores, published.predict(matrix), rtol=0, atol=1e-12)
    print(f"River challenger v2 scored {len(scores):,} events in shadow, each as its registered bundle does")


def test_auto_promote_promotes_a_shadow_challenger_that_wins_on_labelled_events(
    bootstrap, lifecycle_env, agrawal_bundle_dir, moved_concept_dir, tmp_path, workers
):
    env = {
        **lifecycle_env,
        "STREAMSCORE_ROLES": "learn,score",
        "STREAMSCORE_AUTO_PROMOTE": "true",
        "STREAMSCORE_PROMOTE_MIN_PAIRS": "500",
        "STREAMSCORE_METRICS_EVERY_LABELS": "500",
    }
    worker = _serve_with_shadow(env, agrawal_bundle_dir, moved_concept_dir, tmp_path, workers)

    data = agrawal_frame(3000, seed=59, classification_function=5)
    _stream_labelled(bootstrap, env, data, "auto")
    _wait(lambda: worker.get("/stats")["model_version"] == "3", timeout_s=90, what="automatic promotion")
    updates = [
        orjson.loads(r.value) for r in read_topic(bootstrap, env["STREAMSCORE_TOPIC_MODEL_UPDATES"], 3)
    ]
    promotion = next(u for u in updates if u["action"] == "promote")
    print(f"promoted automatically: {promotion['reason']}")
    assert promotion["champion"]["version"] == "3" and promotion["challenger"] is None


def _post(worker: WorkerProcess, path: str, body: object, token: str | None) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{worker.port}{path}",
        data=body if isinstance(body, bytes) else json.dumps(body).encode(),
        method="POST",
    )
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        body = error.read()
        return error.code, json.loads(body) if body.startswith(b"{") else {"text": body.decode()}


def _nested(depth: int) -> bytes:
    """A command whose name is ``depth`` arrays deep (deeper than Python's json can even write)."""
    return b'{"action": "deploy", "version": "2", "name": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


def test_control_endpoint_needs_the_bearer_token_and_is_off_without_one(
    lifecycle_env, agrawal_bundle_dir, v2_dir, tmp_path, workers
):
    token = "s3cr3t-" + tmp_path.name[-8:]
    assert _cli(lifecycle_env, "model", "register", str(v2_dir)).returncode == 0
    closed = WorkerProcess(lifecycle_env, agrawal_bundle_dir, tmp_path / "closed.log")
    guarded = WorkerProcess({**lifecycle_env, "STREAMSCORE_CONTROL_TOKEN": token}, agrawal_bundle_dir,
                            tmp_path / "guarded.log")  # fmt: skip
    workers += [closed, guarded]
    closed.wait_ready()
    guarded.wait_ready()
    assert _post(closed, "/control/model", {"action": "deploy", "version": "2"}, token)[0] == 404
    assert _post(guarded, "/control/model", {"action": "deploy", "version": "2"}, None)[0] == 401
    assert _post(guarded, "/control/model", {"action": "deploy", "version": "2"}, "wrong")[0] == 401
    assert guarded.get("/stats")["model_version"] == "1"
    malformed = {
        "nested": _nested(5000),
        "integer name": {"action": "deploy", "version": "2", "name": 7},
        "integer version": {"action": "deploy", "version": 2},
        "unknown action": {"action": "explode"},
        "share above 1": {"action": "challenger", "version": "2", "share": 3},
        "not an object": ["deploy", "2"],
    }
    for what, body in malformed.items():
        status, answer = _post(guarded, "/control/model", body, token)
        print(f"/control/model with {what}: {status} {answer['error'][:80]}")
        assert status == 400 and answer["error"].startswith("bad request"), what
    status, body = _post(guarded, "/control/model", {"action": "deploy", "version": "2"}, token)
    assert status == 200 and body["champion"]["version"] == "2"
    for worker in (closed, guarded):  # both follow the topic
        _wait(lambda w=worker: w.get("/stats")["model_version"] == "2", what="v2 on every worker")
    assert _post(guarded, "/control/model", {"action": "rollback"}, token)[0] == 200
    _wait(lambda: closed.get("/stats")["model_version"] == "1", what="rolled back")
    assert token not in (tmp_path / "guarded.log").read_text()


def test_a_deploy_switches_the_drift_reference_with_the_model(
    bootstrap, lifecycle_env, agrawal_bundle_dir, v2_dir, tmp_path, workers
):
    env = {**lifecycle_env, "STREAMSCORE_ROLES": "drift,score", "STREAMSCORE_DRIFT_WINDOW_EVENTS": "1000"}
    assert _cli(env, "model", "register", str(v2_dir)).returncode == 0
    worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready()
    assert _cli(env, "model", "deploy", "2").returncode == 0
    _wait(lambda: worker.get("/stats")["model_version"] == "2", what="v2 serving")
    frame = agrawal_frame(4000, seed=61, classification_function=2).drop(columns=["approved"])
    produce(
        bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], list(event_payloads(events_from_frame(frame, "ref")))
    )
    records = read_topic(
        bootstrap, env["STREAMSCORE_TOPIC_DRIFT"], 3, counted=lambda r: b'"drift_report"' in (r.value or b"")
    )
    versions = Counter(orjson.loads(r.value)["model_version"] for r in records)
    print(f"drift reports by model version after the deploy: {dict(versions)}")
    assert versions["2"] >= 3 and set(versions) == {"2"}
    assert worker.get("/stats")["drift"]["unknown_version_events"] == 0
