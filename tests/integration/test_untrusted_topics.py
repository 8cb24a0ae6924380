"""Issue 15 on live workers: no record on any topic stops the worker or blinds a role.

One test per numbered item of the issue. Each sends the record the issue found, then
checks what a user would: the worker is the same process, the bad record is counted
where it belongs (``streamscore_records_refused_total`` on /metrics, a dead letter with
its reason on ``labels.dlq`` / ``monitor.dlq``, an alert), and every role it concerns
still works (``side_topics.roles_work``: new events scored, their labels joined, a drift
window reported). Most items share one worker with every role; items 4 and 5 need a
worker of their own (a restart, a learner that fails).
"""

from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import psutil
import pytest

from schemas import headers as h
from schemas.checkpoint import StateAlert
from schemas.lifecycle import ModelAlert, ModelRef
from scoring.lifecycle import decisions as lifecycle
from scoring.model.features import FeatureKind
from tests.conditions import budget
from tests.integration.conftest import topics_for
from tests.integration.kafka_tools import WorkerProcess, produce, read_topic
from tests.integration.side_topics import (
    DRIFT_WINDOW,
    a_monitor_record,
    dead_letters,
    labelled_events,
    metric,
    reason_of,
    refused,
    roles_work,
    settled,
    side_env,
    wait_until,
)

pytestmark = pytest.mark.integration

FETCH_TIMEOUT_S = 10


class SilentServer:
    """A loopback socket that accepts connections and never answers (a URL that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        for conn in self.held:
            conn.close()
        self.sock.close()


@dataclass
class Shared:
    worker: WorkerProcess
    env: dict[str, str]
    pid: int
    root: Path
    silent: SilentServer

    def still_the_same_process(self) -> None:
        assert self.worker.alive() and self.worker.process.pid == self.pid, self.worker.log_tail()


@pytest.fixture(scope="module")
def shared(bootstrap, agrawal_bundle_dir, tmp_path_factory) -> Iterator[Shared]:
    """One worker with every role for the items that need no worker of their own."""
    root = tmp_path_factory.mktemp("untrusted")
    silent = SilentServer()
    env = side_env(
        topics_for(bootstrap, uuid.uuid4().hex[:10], str(root / "data")),
        STREAMSCORE_REGISTRY=str(root / "registry"),
        STREAMSCORE_MODEL_SOURCES=f"http://127.0.0.1:{silent.port}/",
        STREAMSCORE_MODEL_FETCH_TIMEOUT_S=str(FETCH_TIMEOUT_S),
    )
    worker = WorkerProcess(env, agrawal_bundle_dir, root / "worker.log")
    try:
        worker.wait_ready(90)
        print(
            f"shared worker pid {worker.process.pid}, warm-up: {roles_work(worker, bootstrap, env, 'warm')}"
        )
        yield Shared(worker, env, worker.process.pid, root, silent)
    finally:
        worker.kill()
        silent.close()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "streams", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )
    print(f"$ streamscore {' '.join(args)}  -> exit {done.returncode}\n{done.stdout}{done.stderr[-1500:]}")
    return done


def _with_literal(body: dict, field: str, literal: str) -> bytes:
    """``body`` as JSON with raw JSON ``literal`` as the value of ``field`` (what orjson cannot write)."""
    body = {**body, field: "__literal__"}
    return orjson.dumps(body).replace(b'"__literal__"', literal.encode())


def _mine(records, value: bytes):
    return [r for r in records if r.value == value]


# -- crashes


def test_1_event_time_beyond_int64_is_dead_lettered(shared, bootstrap):
    env, worker = shared.env, shared.worker
    event = orjson.loads(labelled_events(1, "huge-time", seed=1)[0][0][1])
    value = _with_literal(event, "event_time", "18446744073709551615")
    produce(bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], [(b"cust-0", value)])
    dead = _mine(dead_letters(bootstrap, env["STREAMSCORE_TOPIC_DLQ"], 1), value)
    progress = roles_work(worker, bootstrap, env, "after-1")
    print(f"item 1: dead letters {[reason_of(r) for r in dead]}; then {progress}")
    assert len(dead) == 1 and reason_of(dead[0])[0] == "validate"
    shared.still_the_same_process()


def test_2_label_time_1e30_is_refused_and_checkpoints_go_on(shared, bootstrap):
    env, worker = shared.env, shared.worker
    topic = env["STREAMSCORE_TOPIC_LABELS"]
    before = refused(worker, topic, "schema")
    value = b'{"event_id": "far-label", "label": 1.0, "label_time": 1' + b"0" * 30 + b"}"
    produce(bootstrap, topic, [(b"far-label", value)])
    dead = _mine(dead_letters(bootstrap, env["STREAMSCORE_TOPIC_LABELS_DLQ"], 1), value)
    progress = roles_work(worker, bootstrap, env, "after-2")
    counted = refused(worker, topic, "schema") - before
    print(f"item 2: refused {counted} (schema), dead letters {[reason_of(r) for r in dead]}; then {progress}")
    assert len(dead) == 1 and reason_of(dead[0])[0] == "schema" and counted == 1
    assert progress.snapshots >= 1, "checkpoints are still written"
    shared.still_the_same_process()


def test_3_monitor_rows_outside_the_model_are_refused(shared, bootstrap, agrawal_bundle):
    env, worker = shared.env, shared.worker
    topic = env["STREAMSCORE_TOPIC_MONITOR"]
    template = a_monitor_record(bootstrap, env)
    j = next(i for i, f in enumerate(agrawal_bundle.spec.features) if f.kind is FeatureKind.categorical)
    bad_code = _one_event(template, "bad-code")
    bad_code["rows"][0][j] = 99.0
    bad_time = _with_literal(_one_event(template, "bad-time"), "event_times", "[1e30]")
    before = {r: refused(worker, topic, r) for r in ("spec", "schema")}
    values = [orjson.dumps(bad_code), bad_time]
    produce(bootstrap, topic, [(None, v) for v in values])
    label = orjson.dumps({"event_id": "bad-code", "label": 1.0, "label_time": int(time.time() * 1000)})
    produce(bootstrap, env["STREAMSCORE_TOPIC_LABELS"], [(b"bad-code", label)])
    dead = dead_letters(bootstrap, env["STREAMSCORE_TOPIC_MONITOR_DLQ"], 2)
    progress = roles_work(worker, bootstrap, env, "after-3")
    counted = {r: refused(worker, topic, r) - before[r] for r in before}
    reasons = {v: [reason_of(r) for r in _mine(dead, v)] for v in values}
    print(f"item 3: refused {counted}; dead letters {list(reasons.values())}; then {progress}")
    assert [stage for stage, _ in reasons[values[0]]] and {s for s, _ in reasons[values[0]]} == {"spec"}
    assert [stage for stage, _ in reasons[values[1]]] and {s for s, _ in reasons[values[1]]} == {"schema"}
    assert counted["spec"] == len(reasons[values[0]]) and counted["schema"] == len(reasons[values[1]])
    shared.still_the_same_process()


def _one_event(template: dict, event_id: str) -> dict:
    """A monitoring record like ``template`` holding one event, ``event_id``, timed now."""
    record = copy.deepcopy(template)
    for column in ("offsets", "entity_ids", "scores", "rows"):
        record[column] = record[column][:1]
    record["event_ids"], record["event_times"] = [event_id], [int(time.time() * 1000)]
    return record


# -- silent damage


def test_6_an_event_a_day_ahead_does_not_expire_the_join(shared, bootstrap):
    env, worker = shared.env, shared.worker
    skew_ms, ttl_ms = 300_000, 600_000  # the defaults of max_clock_skew_s and label_ttl_seconds
    before = settled(worker)["learn"]
    waiting, _ = labelled_events(6000, "i6-wait", seed=6, spacing_ms=400_000 // 6000)  # the last 400 s
    late, late_labels = labelled_events(300, "i6-late", seed=16)
    future = orjson.loads(labelled_events(1, "i6-future", seed=26)[0][0][1])
    future["event_time"] += 86_400_000
    features = env["STREAMSCORE_TOPIC_FEATURES"]
    produce(bootstrap, features, waiting)
    produce(bootstrap, env["STREAMSCORE_TOPIC_LABELS"], late_labels)  # labels before their events
    produce(bootstrap, features, [(b"cust-0", orjson.dumps(future))])
    produce(bootstrap, features, late)
    sent = len(waiting) + 1 + len(late)

    def seen(learn: dict) -> int:  # each event observed adds one to exactly one of these
        return learn["pending_events"] + learn["expired_events"] + learn["matched"]

    wait_until(lambda: seen(worker.get("/stats")["learn"]) - seen(before) >= sent, 120, "the learner", worker)
    after = worker.get("/stats")["learn"]
    horizon = int(time.time() * 1000) + skew_ms - ttl_ms  # the oldest event time the clamp lets stay
    older = sum(orjson.loads(v)["event_time"] < horizon for _, v in waiting)
    expired = after["expired_events"] - before["expired_events"]
    joined_early = after["matched"] - before["matched"]
    progress = roles_work(worker, bootstrap, env, "after-6", n=500)
    print(
        f"item 6: {sent:,} events ({len(waiting):,} spread over 400 s, one a day ahead, 300 whose "
        f"labels came first): {expired:,} expired (at most {older:,} + {before['pending_events']} waiting "
        f"before are older than the clamped clock - TTL), {after['pending_events']:,} wait, "
        f"{joined_early} early labels joined; clamped {clamps(worker, env)}; then {progress}"
    )
    assert expired <= older + before["pending_events"], "events within the TTL of the clamped clock expired"
    assert after["pending_events"] >= len(waiting) + 1 - older
    assert joined_early == len(late), "the labels that came first joined their events"
    assert progress.joined == progress.events >= 500
    shared.still_the_same_process()


def clamps(worker: WorkerProcess, env: dict) -> int:
    return int(metric(worker, "streamscore_times_clamped_total", topic=env["STREAMSCORE_TOPIC_MONITOR"]))


def test_7_a_narrow_monitor_record_does_not_stop_the_drift_window(shared, bootstrap):
    env, worker = shared.env, shared.worker
    topic = env["STREAMSCORE_TOPIC_MONITOR"]
    template = a_monitor_record(bootstrap, env)
    narrow = _one_event(template, "narrow")
    narrow["feature_names"], narrow["rows"] = narrow["feature_names"][:1], [narrow["rows"][0][:1]]
    value = orjson.dumps(narrow)
    first = settled(worker)
    half, _ = labelled_events(DRIFT_WINDOW // 2, "i7-a", seed=7)
    produce(bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], half)
    wait_until(lambda: worker.get("/stats")["scored"] >= first["scored"] + len(half), 60, "scored", worker)
    open_ = settled(worker)["drift"]["open_window_events"]
    before_refused = refused(worker, topic, "spec")
    produce(bootstrap, topic, [(None, value)])
    rest, _ = labelled_events(DRIFT_WINDOW - open_ + 250, "i7-b", seed=17)
    produce(bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], rest)
    total = first["scored"] + len(half) + len(rest)
    wait_until(lambda: worker.get("/stats")["drift"]["events"] >= total, 120, "every event counted", worker)
    after = worker.get("/stats")["drift"]
    dead = _mine(dead_letters(bootstrap, env["STREAMSCORE_TOPIC_MONITOR_DLQ"], 1), value)
    reports = [
        orjson.loads(r.value)
        for r in read_topic(bootstrap, env["STREAMSCORE_TOPIC_DRIFT"], after["reports"], timeout_s=30)
        if r.headers.get(h.CE_TYPE) == h.DRIFT_REPORT_CE_TYPE.encode()
    ]
    print(
        f"item 7: the narrow record refused {refused(worker, topic, 'spec') - before_refused} time(s) "
        f"({[reason_of(r) for r in dead]}); windows closed {after['reports'] - first['drift']['reports']}, "
        f"the last of {reports[-1]['events']:,} events; {after['open_window_events']} events counted in "
        "the next window"
    )
    assert dead and {reason_of(r)[0] for r in dead} == {"spec"}
    assert after["reports"] == first["drift"]["reports"] + 1 and reports[-1]["events"] == DRIFT_WINDOW
    assert after["open_window_events"] == 250
    shared.still_the_same_process()


def test_8_offline_readers_skip_a_record_that_is_not_json(shared, bootstrap, agrawal_bundle_dir):
    env, worker = shared.env, shared.worker
    produce(bootstrap, env["STREAMSCORE_TOPIC_MONITOR"], [(None, b"not json")])
    report = _cli(env, "report", "--from-topics", "2000", "--model", str(agrawal_bundle_dir),
                  "--out", str(shared.root / "report.html"))  # fmt: skip
    retrain = _cli(env, "retrain", "--from-topics", "2000", "--trees", "5", "--version", "r8")
    assert report.returncode == 0 and retrain.returncode == 0
    for done in (report, retrain):
        assert "Traceback" not in done.stderr
        assert f"on {env['STREAMSCORE_TOPIC_MONITOR']}" in done.stdout, "the skipped records are said"
    assert (shared.root / "report.html").stat().st_size > 0
    progress = roles_work(worker, bootstrap, env, "after-8")
    print(f"item 8: then {progress}")
    shared.still_the_same_process()


# -- unbounded growth


def test_9_labels_with_megabyte_ids_are_refused_without_growing_the_worker(shared, bootstrap):
    env, worker = shared.env, shared.worker
    topic = env["STREAMSCORE_TOPIC_LABELS"]
    process = psutil.Process(shared.pid)
    settled(worker)
    rss_before, refused_before = process.memory_info().rss, refused(worker, topic, "schema")
    huge = [
        (
            f"huge-{i}".encode(),
            orjson.dumps(
                {"event_id": f"{i}-" + "i" * 1_000_000, "label": 1.0, "label_time": int(time.time() * 1000)}
            ),
        )
        for i in range(20)
    ]
    produce(bootstrap, topic, huge, {"message.max.bytes": 2_000_000})
    wait_until(lambda: refused(worker, topic, "schema") - refused_before >= 20, 60, "20 refusals", worker)
    # the consumer's buffers of the megabyte records drain once they are handled: wait for it, not a time
    grown = worker.wait(lambda: (process.memory_info().rss - rss_before) / 2**20, lambda mib: mib < 20,
                        "the worker's RSS back within 20 MiB of before", budget())  # fmt: skip
    dead = [
        r for r in dead_letters(bootstrap, env["STREAMSCORE_TOPIC_LABELS_DLQ"], 20) if r.key in dict(huge)
    ]
    cut = [int(r.headers[h.DLQ_ORIGINAL_SIZE]) for r in dead if h.DLQ_ORIGINAL_SIZE in r.headers]
    progress = roles_work(worker, bootstrap, env, "after-9")
    print(
        f"item 9: 20 labels of {len(huge[0][1]):,} bytes: "
        f"{refused(worker, topic, 'schema') - refused_before} refused, {len(dead)} dead letters "
        f"({len(cut)} cut to {max(len(r.value) for r in dead):,} bytes); "
        f"RSS {rss_before / 2**20:.0f} MiB -> {grown:+.1f} MiB; then {progress}"
    )
    assert len(dead) == 20 and len(cut) == 20 and {reason_of(r)[0] for r in dead} == {"schema"}
    assert grown < 20, f"the worker grew by {grown:.0f} MiB"
    shared.still_the_same_process()


# -- trust in model-updates


def test_11_a_junk_key_leaves_commands_without_a_name_working(shared, bootstrap, agrawal_bundle_dir, v2_dir):
    env, worker = shared.env, shared.worker
    topic = env["STREAMSCORE_TOPIC_MODEL_UPDATES"]
    assert _cli(env, "model", "register", str(v2_dir)).returncode == 0
    produce(bootstrap, topic, [(b"junk", b'{"anything": 1}')])
    deploy = _cli(env, "model", "deploy", "2")
    wait_until(lambda: worker.get("/stats")["model_version"] == "2", 30, "version 2 serving", worker)
    # with an empty registry the name comes from model-updates, where the junk key is
    no_registry = {**env, "STREAMSCORE_REGISTRY": str(shared.root / "empty-registry")}
    rollback = _cli(no_registry, "model", "rollback")
    wait_until(lambda: worker.get("/stats")["model_version"] == "1", 30, "version 1 serving", worker)
    control = worker.get("/stats")["control"]
    progress = roles_work(worker, bootstrap, env, "after-11")
    print(
        f"item 11: deploy exit {deploy.returncode}, rollback exit {rollback.returncode}; "
        f"control {control}; then {progress}"
    )
    assert deploy.returncode == 0 and rollback.returncode == 0
    assert control["ignored"] >= 1
    shared.still_the_same_process()


def _update(name: str, version: str, uri: str) -> bytes:
    ref = ModelRef(name=name, version=version, uri=uri)
    return lifecycle.deploy(None, ref, reason="a record written by hand").model_dump_json().encode()


def _model_alerts(bootstrap: str, env: dict, count: int, wanted) -> list[ModelAlert]:
    records = read_topic(
        bootstrap, env["STREAMSCORE_TOPIC_ALERTS"], count, timeout_s=60,
        counted=lambda r: b'"model_alert"' in r.value and wanted(ModelAlert.model_validate_json(r.value)),
    )  # fmt: skip
    alerts = [ModelAlert.model_validate_json(r.value) for r in records if b'"model_alert"' in r.value]
    return [a for a in alerts if wanted(a)]


def test_10_a_hanging_source_delays_only_its_own_update(shared, bootstrap, v2_dir):
    env, worker = shared.env, shared.worker
    topic = env["STREAMSCORE_TOPIC_MODEL_UPDATES"]
    assert _cli(env, "model", "register", str(v2_dir)).returncode == 0
    assert worker.get("/stats")["model_version"] == "1"
    hanging = _update("loans", "3", f"http://127.0.0.1:{shared.silent.port}/loans-3")
    sent_hanging = time.time()
    produce(bootstrap, topic, [(b"loans", hanging)])
    time.sleep(3)
    started = time.monotonic()
    deploy = _cli(env, "model", "deploy", "2")  # its check of the live champion waits for the timeout too
    cli_s = time.monotonic() - started
    applied_s = wait_until(lambda: worker.get("/stats")["model_version"] == "2", 60, "version 2", worker)
    refusal = _model_alerts(bootstrap, env, 1, lambda a: a.version == "3")[0]

    outside = shared.root / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "a-file").write_text("not a bundle")
    shutil.copytree(v2_dir, outside / "a-directory", dirs_exist_ok=True)
    for path in ("a-file", "a-directory", "missing"):
        produce(bootstrap, topic, [(b"loans", _update("loans", "9", str(outside / path)))])
    outsiders = _model_alerts(bootstrap, env, 3, lambda a: a.version == "9")
    progress = roles_work(worker, bootstrap, env, "after-10")
    print(
        f"item 10: a deploy started 3 s after a hanging update: the CLI took {cli_s:.1f} s (exit "
        f"{deploy.returncode}), the worker served it {applied_s:.1f} s after; the hanging update refused "
        f"{refusal.created_at / 1000 - sent_hanging:.1f} s after it was sent: {refusal.check}: "
        f"{refusal.reason}; outside the registry: "
        f"{[a.reason for a in outsiders]}; then {progress}"
    )
    assert deploy.returncode == 0 and worker.get("/stats")["model_version"] == "2"
    assert refusal.outcome == "refused" and refusal.check == "load"
    assert refusal.created_at / 1000 - sent_hanging >= FETCH_TIMEOUT_S
    assert len(outsiders) == 3 and len({a.reason for a in outsiders}) == 1
    assert all(a.outcome == "refused" and a.check == "source" for a in outsiders)
    assert outsiders[0].reason.startswith("loans 9: not in the model registry")
    shared.still_the_same_process()


# -- workers of their own


def _start(env: dict, bundle_dir: Path, log: Path, workers: list) -> WorkerProcess:
    worker = WorkerProcess(env, bundle_dir, log)
    workers.append(worker)
    worker.wait_ready(90)
    return worker


def test_4_an_unreadable_checkpoint_head_means_a_fresh_start_and_an_alert(
    bootstrap, topic_env, agrawal_bundle_dir, tmp_path, workers
):
    env = side_env(topic_env)
    first = _start(env, agrawal_bundle_dir, tmp_path / "first.log", workers)
    before = roles_work(first, bootstrap, env, "i4-a")
    assert first.terminate() == 0
    head = f"{env['STREAMSCORE_APP_ID']}/learn/p0/head".encode()  # the shard of partition 0, the only one
    produce(bootstrap, env["STREAMSCORE_TOPIC_CHECKPOINTS"], [(head, b"not json")])
    second = _start(env, agrawal_bundle_dir, tmp_path / "second.log", workers)
    pid = second.process.pid
    # idle_s: a second state alert would show
    records = read_topic(bootstrap, env["STREAMSCORE_TOPIC_ALERTS"], 1, timeout_s=30, idle_s=2.0,
                         counted=lambda r: b'"state_alert"' in r.value)  # fmt: skip
    alerts = [StateAlert.model_validate_json(r.value) for r in records if b'"state_alert"' in r.value]
    restored = second.get("/stats")["learn"]["restored"]
    progress = roles_work(second, bootstrap, env, "i4-b")
    print(f"item 4: before the stop {before}; after: restored={restored}, alerts "
          f"{[(a.problem, a.action) for a in alerts]}; then {progress}")  # fmt: skip
    assert len(alerts) == 1 and "head" in alerts[0].problem and restored == 0
    assert second.alive() and second.process.pid == pid, second.log_tail()


def test_5_a_learn_role_failing_on_every_label_leaves_the_other_roles_working(
    bootstrap, topic_env, agrawal_bundle_dir, tmp_path, workers
):
    # river's bare LogisticRegression takes numbers only: it raises on every event with a category
    env = side_env(topic_env, STREAMSCORE_CHALLENGER="river.linear_model.LogisticRegression")
    worker = _start(env, agrawal_bundle_dir, tmp_path / "worker.log", workers)
    pid = worker.process.pid
    labels_topic = env["STREAMSCORE_TOPIC_LABELS"]
    features, labels = labelled_events(DRIFT_WINDOW, "i5", seed=5)
    produce(bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], features)
    wait_until(lambda: worker.get("/stats")["scored"] >= len(features), 60, "events scored", worker)
    produce(bootstrap, labels_topic, labels)

    def restarts() -> float:
        return metric(worker, "streamscore_role_restarts_total", role="learn")

    wait_until(lambda: refused(worker, labels_topic, "failed") >= len(labels) or restarts() > 0, 120,
               "the learner's failures to show", worker)  # fmt: skip
    more, _ = labelled_events(1000, "i5-more", seed=15)
    produce(bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], more)
    wait_until(lambda: worker.get("/stats")["scored"] >= len(features) + len(more), 60, "1,000 more", worker)
    stats, health = worker.get("/stats"), worker.get("/health")
    dead = dead_letters(bootstrap, env["STREAMSCORE_TOPIC_LABELS_DLQ"], len(labels))
    failed = refused(worker, labels_topic, "failed")
    print(
        f"item 5: {len(labels):,} labels: {failed:,} refused as failed, {len(dead):,} on labels.dlq "
        f"({reason_of(dead[0]) if dead else None}); learn restarts {restarts():.0f}, health "
        f"{health['status']} {health['roles'].get('learn')}; scored {stats['scored']:,}, drift windows "
        f"{stats['drift']['reports']}, labels joined {stats['learn']['matched']:,}"
    )
    assert stats["scored"] == len(features) + len(more) and stats["drift"]["reports"] >= 1
    assert failed == len(dead) == len(labels) and {reason_of(r)[0] for r in dead} == {"failed"}
    assert health["status"] == "ok", "the learn role dead-letters what it fails on instead of restarting"
    assert worker.alive() and worker.process.pid == pid, worker.log_tail()
