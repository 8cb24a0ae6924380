"""2,000 hypothesis-drawn payloads on each side topic (labels, monitor, model-updates, checkpoints) through
one live worker with every role.

Every payload is good or bad by construction (``side_fuzz``, ``side_fuzz_state``). The worker must be the same
process at the end, use every good record (labels joined, monitoring rows counted in the
drift windows and the learner's join, model updates applied or superseded) and count every
bad one where it belongs (refusals per topic and reason on /metrics and dead letters on
labels.dlq / monitor.dlq; one alert per model-updates record).

The worker reads ``checkpoints`` only when its learn role starts: the 2,000 checkpoint
payloads go to its topic while it runs (under prefixes of their own, so it goes on
checkpointing its own), then each is read back from the broker and put through the
learn role's restore (``CheckpointStore.restore_from``, ``Shard.resume``) in this
process: a good one restores the learner exactly, a bad one means a fresh start with the
problem named (what the worker turns into a StateAlert), and nothing raises.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter, defaultdict

import orjson
import pytest

from schemas.lifecycle import ModelAlert
from schemas.monitor import decode_monitor
from scoring.feedback.join_segments import JoinSegments
from streams.kafka.readers import read_latest
from streams.services.learn.shard import Shard, learner_for
from streams.services.shared.checkpoints import CheckpointStore, bound
from streams.settings import Settings
from tests.integration import side_fuzz as fz
from tests.integration import side_fuzz_state as fs
from tests.integration.kafka_tools import WorkerProcess, produce, read_topic
from tests.integration.side_topics import (
    a_monitor_record,
    dead_letters,
    labelled_events,
    reason_of,
    refused,
    roles_work,
    settled,
    side_env,
    wait_until,
)

pytestmark = pytest.mark.integration

N = 2000
KEY = bytes(range(32))


def _cli(env: dict, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streams", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr


def _settings(env: dict) -> Settings:
    return Settings(**{k[len("STREAMSCORE_") :].lower(): v for k, v in env.items()})


def test_two_thousand_payloads_per_side_topic_through_a_live_worker(
    bootstrap, topic_env, agrawal_bundle, agrawal_bundle_dir, v2_dir, tmp_path, workers
):
    started = time.monotonic()
    env = side_env(
        topic_env, STREAMSCORE_REGISTRY=str(tmp_path / "registry"), STREAMSCORE_STATE_KEY=KEY.hex()
    )
    for bundle_dir in (agrawal_bundle_dir, v2_dir):
        _cli(env, "model", "register", str(bundle_dir))
    worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready(90)
    pid = worker.process.pid

    events, _ = labelled_events(N, "fz-ev", seed=41)
    produce(bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], events)
    wait_until(lambda: worker.get("/stats")["learn"]["pending_events"] >= N, 120, "events waiting", worker)
    template = a_monitor_record(bootstrap, env)
    event_ids = [f"fz-ev-{i}" for i in range(N)]
    plans = _render(env, template, agrawal_bundle, event_ids)
    print(f"drew and rendered {4 * N:,} payloads in {time.monotonic() - started:.0f} s since the start")
    for topic, plan in plans.items():
        print(f"  {topic}: " + ", ".join(f"{k} {c}" for k, c in plan["kinds"].most_common()))

    before = settled(worker)
    since = int(time.time() * 1000)  # alerts of the fuzz were made after this
    labels, monitor = env["STREAMSCORE_TOPIC_LABELS"], env["STREAMSCORE_TOPIC_MONITOR"]
    produce(bootstrap, labels, plans["labels"]["records"])
    produce(bootstrap, monitor, plans["monitor"]["records"])
    produce(bootstrap, env["STREAMSCORE_TOPIC_MODEL_UPDATES"], plans["updates"]["records"])
    produce(bootstrap, env["STREAMSCORE_TOPIC_CHECKPOINTS"], plans["checkpoints"]["records"])

    bad_labels = plans["labels"]["expect"]["bad"]
    joined = len(set(plans["labels"]["good_ids"]))
    rows, bad_monitor = plans["monitor"]["rows"], plans["monitor"]["expect"]
    wanted = {
        "labels refused": lambda s: refused(worker, labels) == bad_labels,
        "monitor refused (schema)": lambda s: refused(worker, monitor, "schema") == bad_monitor["schema"],
        "monitor refused (spec)": lambda s: refused(worker, monitor, "spec") == bad_monitor["spec"],
        "labels joined": lambda s: s["learn"]["matched"] - before["learn"]["matched"] == joined,
        "rows in drift windows": lambda s: s["drift"]["events"] - before["drift"]["events"] == rows,
        "rows in the join": lambda s: _observed(s) - _observed(before) == rows,
    }
    stats: dict = {}

    def all_done() -> bool:
        nonlocal stats
        stats = worker.get("/stats")
        return all(check(stats) for check in wanted.values())

    try:
        wait_until(all_done, 150, "every payload used or counted", worker)
    finally:
        print("  " + "; ".join(f"{name}: {check(stats)}" for name, check in wanted.items()))
    alerts = _model_alerts(bootstrap, env, N, pid, since)
    dlq_labels = dead_letters(bootstrap, env["STREAMSCORE_TOPIC_LABELS_DLQ"], bad_labels)
    dlq_monitor = dead_letters(
        bootstrap, env["STREAMSCORE_TOPIC_MONITOR_DLQ"], sum(plans["monitor"]["expect"].values())
    )
    restores, wrong = _restore_all(env, agrawal_bundle, plans["checkpoints"])
    progress = roles_work(worker, bootstrap, env, "after-fuzz")
    print(f"labels: {bad_labels:,} refused of {N:,} ({len(dlq_labels):,} on labels.dlq), {joined:,} joined")
    print(
        f"monitor: refused {dict(plans['monitor']['expect'])} ({len(dlq_monitor):,} on monitor.dlq), "
        f"{rows:,} rows counted in windows and the join"
    )
    print(
        f"model-updates: alerts {_classes(alerts)}, expected {plans['updates']['expect']}; "
        f"control {worker.get('/stats')['control'] | {'timeline': '...'}}"
    )
    expected = plans["checkpoints"]["expect"]
    print(f"checkpoints: {restores}, expected {expected}; not as expected: {wrong[:5]}")
    print(
        f"then {progress}; worker pid {pid} alive={worker.alive()}; {time.monotonic() - started:.0f} s in all"
    )

    assert worker.alive() and worker.process.pid == pid, worker.log_tail()
    assert len(dlq_labels) == bad_labels and {reason_of(r)[0] for r in dlq_labels} == {"schema"}
    assert Counter(reason_of(r)[0] for r in dlq_monitor) == plans["monitor"]["expect"]
    assert refused(worker, labels, "failed") == 0 and refused(worker, monitor, "failed") == 0
    assert _classes(alerts) == plans["updates"]["expect"]
    assert restores == plans["checkpoints"]["expect"]
    assert progress.joined == progress.events and progress.windows >= 1


def _observed(stats: dict) -> int:
    learn = stats["learn"]
    return learn["pending_events"] + learn["expired_events"] + learn["matched"]


def _render(env: dict, template: dict, bundle, event_ids: list[str]) -> dict[str, dict]:
    spec = bundle.spec
    plans: dict[str, dict] = {}
    used: list[str] = []
    records, expect, kinds, good_ids = [], Counter(), Counter(), []
    for kind, params in fz.draw(fz.LABEL_KINDS, fz.LABEL_PARAMS, N, seed=1):
        key, value, verdict = fz.render_label(kind, params, event_ids, used)
        records.append((key, value))
        kinds[kind] += 1
        expect["bad" if verdict == "bad" else "good"] += 1
        if verdict != "bad":
            good_ids.append(verdict)
    plans["labels"] = {"records": records, "expect": expect, "kinds": kinds, "good_ids": good_ids}

    records, expect, kinds, rows = [], Counter(), Counter(), 0
    for index, (kind, params) in enumerate(fz.draw(fz.MONITOR_KINDS, fz.MONITOR_PARAMS, N, seed=2)):
        value, verdict, k = fz.render_monitor(kind, params, template, spec, index)
        records.append((None, value))
        kinds[kind] += 1
        rows += k
        if verdict != "good":
            expect[verdict] += 1
    plans["monitor"] = {"records": records, "expect": expect, "kinds": kinds, "rows": rows}

    registry = env["STREAMSCORE_REGISTRY"]
    records, expect, kinds = [], Counter(), Counter()
    for kind, params in fz.draw(fs.UPDATE_KINDS, fs.UPDATE_PARAMS, N, seed=3):
        key, value, verdict = fs.render_update(kind, params, registry)
        records.append((key, value))
        kinds[kind] += 1
        expect[verdict] += 1
    plans["updates"] = {"records": records, "expect": expect, "kinds": kinds}

    base = _base_checkpoint(env, bundle, template)
    settings = _settings(env)

    def signed_for(record_key: str) -> bytes:  # what a checkpoint record's signature binds (issue 29)
        return bound(settings, settings.topic_checkpoints, record_key)

    records, expect, kinds, cases = [], Counter(), Counter(), {}
    for index, (kind, params) in enumerate(fz.draw(fs.CHECKPOINT_KINDS, fs.CHECKPOINT_PARAMS, N, seed=4)):
        prefix = f"fz{index}/learn"
        case, outcome = fs.render_checkpoint(kind, params, base["records"], prefix, KEY, signed_for)
        records += case
        kinds[kind] += 1
        expect[outcome] += 1
        cases[prefix] = (kind, outcome)
    plans["checkpoints"] = {
        "records": records,
        "expect": expect,
        "kinds": kinds,
        "base": base,
        "cases": cases,
    }
    return plans


def _base_checkpoint(env: dict, bundle, template: dict) -> dict:
    """A learner shard's checkpoint (two generations, segments of 8 events) as the latest record per key."""
    settings = _settings(env)
    shard = Shard(0, learner_for(settings, bundle), CheckpointStore(settings, "base/learn", KEY))
    shard.segments = JoinSegments(size=8)
    latest: dict[str, bytes] = {}

    def emit(topic: str, key: bytes, value: bytes | None, headers, partition=None) -> None:
        if value is None:
            latest.pop(key.decode(), None)
        else:
            latest[key.decode()] = value

    for part in range(2):
        body = fz.monitor_body(template, [f"ck-{part}-{j}" for j in range(30)])
        columns = decode_monitor(orjson.dumps(body))
        shard.learner.observe(columns)
        for event_id in columns.event_ids[::3]:
            shard.learner.label(event_id, 1.0, columns.event_times[0])
        plan, _ = shard.checkpoint(emit)
        shard.segments.done(plan)
    return {"records": latest, "counts": shard.learner.join.counts()}


def _restore_all(env: dict, bundle, plan: dict) -> tuple[Counter, list]:
    """Each case's records as read back from the broker, through the learn role's restore of a shard."""
    settings = _settings(env)
    latest, _ = read_latest(settings, settings.topic_checkpoints, 2.0, prefix="fz")
    groups: dict[str, dict[str, bytes]] = defaultdict(dict)
    for key, value in latest.items():
        groups["/".join(key.split("/")[:2])][key] = value
    outcomes: Counter = Counter()
    wrong = []
    for prefix, (kind, expected) in plan["cases"].items():
        shard = Shard(0, learner_for(settings, bundle), CheckpointStore(settings, prefix, KEY))
        if shard.resume(shard.store.restore_from(groups.get(prefix, {})), learner_for(settings, bundle)):
            outcome = (
                "restored" if shard.learner.join.counts() == plan["base"]["counts"] else "restored wrong"
            )
        else:
            outcome = "refused" if shard.store.restore_problem else "fresh"
        outcomes[outcome] += 1
        if outcome != expected:
            wrong.append((prefix, kind, expected, outcome, shard.store.restore_problem))
    return outcomes, wrong


def _model_alerts(bootstrap: str, env: dict, count: int, pid: int, since: int) -> list[ModelAlert]:
    """The worker's model alerts made since ``since``, once ``count`` arrived (or a minute passed)."""

    def ours(value: bytes) -> ModelAlert | None:
        if b'"model_alert"' not in value:
            return None
        alert = ModelAlert.model_validate_json(value)
        return alert if alert.worker.endswith(f":{pid}") and alert.created_at >= since else None

    records = read_topic(
        bootstrap,
        env["STREAMSCORE_TOPIC_ALERTS"],
        count,
        timeout_s=60,
        idle_s=1.0,
        counted=lambda r: ours(r.value) is not None,
    )
    return [a for a in map(ours, (r.value for r in records)) if a is not None]


def _alert_class(alert: ModelAlert) -> str:
    if alert.outcome == "applied" or alert.check == "order":
        return "applied"
    if "was ignored" in alert.reason:
        return "ignored"
    return f"refused:{alert.check}"


def _classes(alerts: list[ModelAlert]) -> Counter:
    return Counter(_alert_class(a) for a in alerts)
