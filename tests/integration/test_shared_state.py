"""Issue 29 on live workers: state shared between workers is untrusted input too.

One test per numbered item of the issue (the sixth, the inference endpoint's memory, is in
``test_inference_limits.py``). Each writes what the issue found to the topics of state
(``drift-partials``, ``checkpoints``) of a worker with every role, two partitions and
``STREAMSCORE_DRIFT_WINDOWS=partitions``, then checks what a user would: the record is
refused and counted by reason on ``/metrics``, the drift role did not restart and still
reports, nothing impossible reached a report, an alert or a retrain request. Items 1, 3
and 4 share one worker; 2 and 5 restart theirs.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import psutil
import pytest
from confluent_kafka import Producer

from schemas import headers as h
from schemas.drift import DetectorChange, DriftReport, PartitionSpan
from scoring import checkpoint
from scoring.drift import WindowPartial
from scoring.offline.synthetic import agrawal_frame
from streams.kafka.readers import read_latest
from streams.services.learn.merge import PartialsFollower, decode_partial, partial_key
from streams.services.shared.intake import Refusals
from streams.settings import Settings
from tests.integration.conftest import topics_for
from tests.integration.kafka_tools import WorkerProcess, feature_events, produce, read_topic
from tests.integration.side_topics import labelled_events, metric, wait_until

pytestmark = pytest.mark.integration

PARTITIONS, WINDOW = 2, 1_000
QUOTA = WINDOW // PARTITIONS
KEY = bytes(range(32))
DAY_MS = 86_400_000


def state_env(topic_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **topic_env,
        "STREAMSCORE_ROLES": "drift,learn,score",
        "STREAMSCORE_PARTITIONS": str(PARTITIONS),
        "STREAMSCORE_DRIFT_WINDOWS": "partitions",
        "STREAMSCORE_DRIFT_WINDOW_EVENTS": str(WINDOW),
        "STREAMSCORE_STATE_KEY": KEY.hex(),
        "STREAMSCORE_METRICS_INTERVAL_S": "1",
        "STREAMSCORE_DRIFT_VERSION_WAIT_S": "3",
        **extra,
    }


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(**{k[len("STREAMSCORE_") :].lower(): v for k, v in env.items()})


def refused(worker: WorkerProcess, topic: str, reason: str) -> int:
    return int(metric(worker, "streamscore_records_refused_total", topic=topic, reason=reason))


def restarts(worker: WorkerProcess, role: str) -> int:
    return int(metric(worker, "streamscore_role_restarts_total", role=role))


def produce_state(bootstrap: str, topic: str, records: list[tuple[bytes, bytes | None, list | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "message.max.bytes": 2_000_000})
    for key, value, headers in records:
        producer.produce(topic, value, key, headers=headers)
        producer.poll(0)
    assert producer.flush(30) == 0


def signed_chunk(env: dict[str, str], partial: WindowPartial, key: str) -> tuple[bytes, bytes, list]:
    """``partial`` as a worker of this deployment writes it under ``key``: signed for it, one chunk."""
    bound = checkpoint.binding(env["STREAMSCORE_TOPIC_DRIFT_PARTIALS"], key, env["STREAMSCORE_APP_ID"])
    return key.encode(), checkpoint.sign(partial.to_bytes(), KEY, bound), [("streamscore-chunk", b"0/1")]


def key_of(partial: WindowPartial) -> str:
    return f"{partial.model_name}:{partial.model_version}/w{partial.window}/p{partial.partition}"


def drift_reports(bootstrap: str, env: dict[str, str], count: int, timeout_s: float = 60) -> list:
    """(CloudEvents id, report) of the drift reports on ``drift``, once ``count`` are there."""

    def is_report(record) -> bool:
        return record.headers.get(h.CE_TYPE) == h.DRIFT_REPORT_CE_TYPE.encode()

    records = read_topic(bootstrap, env["STREAMSCORE_TOPIC_DRIFT"], count, timeout_s, 1.0, counted=is_report)
    return [
        (r.headers[h.CE_ID].decode(), DriftReport.model_validate_json(r.value))
        for r in records
        if is_report(r)
    ]


def more_windows(worker: WorkerProcess, bootstrap: str, env: dict[str, str], prefix: str, n: int = 1) -> dict:
    """Send events until ``n`` more windows are merged and reported; the drift figures then.

    The events of ``n - 1`` windows go at once (a partition's open window is less than a window, so
    no partition can close more than ``n`` of them); then 300 at a time, each batch once the drift
    role has read the last (its figures stop moving), so no partition runs a window ahead.
    """

    def figures() -> tuple:
        drift = worker.get("/stats")["drift"]
        return drift["reports"], drift["open_window_events"], drift["waiting_windows"]

    before = worker.get("/stats")["drift"]["reports"]
    features = env["STREAMSCORE_TOPIC_FEATURES"]
    if n > 1:
        produce(bootstrap, features, feature_events((n - 1) * WINDOW, seed=99, prefix=f"{prefix}-bulk"))
    for batch in range(40):
        seen = figures()
        produce(bootstrap, features, feature_events(300, seed=batch, prefix=f"{prefix}-{batch}"))
        wait_until(lambda seen=seen: figures() != seen, 30, "the drift role reading the events", worker)
        if settled(figures)[0] >= before + n:
            return worker.get("/stats")["drift"]
    raise AssertionError(
        f"no {n} more windows reported: {worker.get('/stats')['drift']}\n{worker.log_tail()}"
    )


def settled(figures: Callable[[], tuple], timeout_s: float = 30) -> tuple:
    """``figures()`` once it holds still for a second (the role has read what was sent)."""
    last, deadline = figures(), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = figures()
        if now == last:
            return now
        last = now
    raise AssertionError(f"the drift figures still moving after {timeout_s} s: {last}")


@dataclass
class Merging:
    worker: WorkerProcess
    env: dict[str, str]
    pid: int
    bundle: object

    def still_the_same_process(self) -> None:
        assert self.worker.alive() and self.worker.process.pid == self.pid, self.worker.log_tail()
        assert restarts(self.worker, "drift") == 0 and self.worker.get("/ready")["ready"]


@pytest.fixture(scope="module")
def merging(bootstrap, agrawal_bundle, agrawal_bundle_dir, tmp_path_factory) -> Iterator[Merging]:
    root = tmp_path_factory.mktemp("state")
    env = state_env(topics_for(bootstrap, uuid.uuid4().hex[:10], str(root / "data")))
    worker = WorkerProcess(env, agrawal_bundle_dir, root / "worker.log")
    try:
        worker.wait_ready(120)
        warm = more_windows(worker, bootstrap, env, "warm", 2)
        print(f"merging worker pid {worker.process.pid}: warm-up {warm}")
        yield Merging(worker, env, worker.process.pid, agrawal_bundle)
    finally:
        worker.kill()


def a_partial(env: dict, bundle, window: int, partition: int, version: str = "1", **change) -> WindowPartial:
    """A partial an honest worker could have closed: ``quota`` events at features offsets 20 * quota on
    (windows up to 41 may start there)."""
    frame = agrawal_frame(QUOTA, seed=window % 1000 + partition, classification_function=2)
    rows = bundle.spec.encode_frame(frame.drop(columns="approved"))
    now = int(time.time() * 1000)
    fields = {
        "model_name": "loans",
        "model_version": version,
        "partition": partition,
        "partitions": PARTITIONS,
        "window": window,
        "quota": QUOTA,
        "start_time": now - 60_000,
        "end_time": now - 1_000,
        "spans": _spans(env, window, partition),
        "changes": (),
        "rows": rows,
        "scores": bundle.predict(rows),
    }
    return WindowPartial(**{**fields, **change})


# -- 1. a null chunk header


def test_1_a_null_chunk_header_is_refused_once_and_the_drift_role_keeps_reporting(merging, bootstrap):
    worker, env = merging.worker, merging.env
    topic = env["STREAMSCORE_TOPIC_DRIFT_PARTIALS"]
    before = refused(worker, topic, "header")
    produce_state(bootstrap, topic, [(b"loans:1/w0/p0", b"poison", [("streamscore-chunk", None)])])
    wait_until(lambda: refused(worker, topic, "header") == before + 1, 30, "the poison refused", worker)
    after = more_windows(worker, bootstrap, env, "after-1", 2)
    print(f"item 1: refused (header) {before} -> {refused(worker, topic, 'header')}; then {after}")
    assert refused(worker, topic, "header") == before + 1, "refused once, not at every restart"
    merging.still_the_same_process()


# -- 2. a partial or checkpoint copied under another key or partition


def test_2_a_partial_copied_under_another_partition_is_refused(merging, bootstrap):
    worker, env = merging.worker, merging.env
    topic = env["STREAMSCORE_TOPIC_DRIFT_PARTIALS"]
    honest = a_partial(env, merging.bundle, 36, 0)
    _, value, headers = signed_chunk(env, honest, key_of(honest))
    before = refused(worker, topic, "signature")
    produce_state(bootstrap, topic, [(b"loans:1/w36/p1", value, headers)])  # p0's bytes under p1's key
    wait_until(lambda: refused(worker, topic, "signature") == before + 1, 30, "the copy refused", worker)
    assert worker.get("/stats")["drift"]["waiting_windows"] == 0, "nothing waits for the copy's window"
    merging.still_the_same_process()


def test_2_a_learn_checkpoint_copied_under_another_partition_is_not_restored(
    bootstrap, topic_env, agrawal_bundle_dir, tmp_path, workers
):
    """Issue 29: APP/learn/p0 copied byte for byte under APP/learn/p1 was restored as shard 1."""
    env = state_env(topic_env, STREAMSCORE_ROLES="learn,score")
    first = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "first.log")
    workers.append(first)
    first.wait_ready(120)
    features, labels = labelled_events(2_000, "ck", seed=3)
    produce(bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], features)
    produce(bootstrap, env["STREAMSCORE_TOPIC_LABELS"], labels)
    wait_until(lambda: first.get("/stats")["learn"]["matched"] == 2_000, 120, "labels joined", first)
    assert first.terminate() == 0

    settings = settings_of(env)
    prefix = f"{settings.faust_app_id}/learn"
    latest, _ = read_latest(settings, settings.topic_checkpoints, 2.0, f"{prefix}/p0/")
    copies = [(k.replace("/p0/", "/p1/", 1).encode(), v, None) for k, v in latest.items()]
    produce_state(bootstrap, settings.topic_checkpoints, copies)

    second = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "second.log")
    workers.append(second)
    second.wait_ready(120)
    topic = settings.topic_checkpoints
    wait_until(lambda: second.get("/stats")["learn"]["restored"] >= 1, 60, "shard 0 restored", second)
    stats = second.get("/stats")["learn"]
    print(f"item 2: {len(copies)} records of p0 under p1; restored {stats['restored']}, "
          f"refused {refused(second, topic, 'signature')} (signature)")  # fmt: skip
    assert stats["restored"] == 1, "shard 0 from its own checkpoint, shard 1 not from shard 0's"
    assert refused(second, topic, "signature") == 1
    assert restarts(second, "learn") == 0


def test_2_kpi_partials_under_other_keys_are_refused_and_the_merge_counts_each_shard_once(
    bootstrap, topic_env, agrawal_bundle_dir, tmp_path, workers
):
    """Issue 29: KPI partials copied under kpi/p7, kpi/p-1 and kpi/p 1 were all merged (2,832 for 1,424)."""
    env = state_env(topic_env, STREAMSCORE_ROLES="learn,score")
    worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready(120)
    features, labels = labelled_events(1_424, "kp", seed=5)
    produce(bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], features)
    produce(bootstrap, env["STREAMSCORE_TOPIC_LABELS"], labels)
    wait_until(lambda: worker.get("/stats")["learn"]["matched"] == 1_424, 120, "labels joined", worker)
    settings = settings_of(env)
    prefix = f"{settings.faust_app_id}/learn"
    p0 = partial_key(prefix, 0)

    def matched_on_topic() -> int:
        latest, _ = read_latest(settings, settings.topic_checkpoints, 1.0, f"{prefix}/kpi/")
        return sum(
            decode_partial(settings, latest[partial_key(prefix, p)], partial_key(prefix, p), p, KEY)["join"][
                "matched"
            ]
            for p in range(PARTITIONS)
            if partial_key(prefix, p) in latest
        )

    wait_until(lambda: matched_on_topic() == 1_424, 60, "the partials of every label", worker)
    assert worker.terminate() == 0

    latest, _ = read_latest(settings, settings.topic_checkpoints, 2.0, f"{prefix}/kpi/")
    copies = [f"{prefix}/kpi/p{suffix}" for suffix in ("7", "-1", " 1", "01")]
    produce_state(bootstrap, settings.topic_checkpoints, [(k.encode(), latest[p0], None) for k in copies])
    produce_state(
        bootstrap, settings.topic_checkpoints, [(partial_key(prefix, 1).encode(), latest[p0], None)]
    )

    refusals = Refusals()
    follower = PartialsFollower(settings, prefix, refusals)
    follower.needed(True, KEY)
    deadline = time.monotonic() + 30
    try:
        while follower.refused < 5 and time.monotonic() < deadline:
            follower.poll()
            time.sleep(0.1)
        time.sleep(1.0)
        follower.poll()  # anything after the copies
    finally:
        follower.close()
    partials = follower.partials()
    counted = sum(p["join"]["matched"] for p in partials.values())
    print(
        f"item 2: partials read {sorted(partials)}, matched {counted} (truth 1,424); "
        f"refused {refusals.refused}"
    )
    assert counted == 1_424
    assert refusals.refused == {
        (settings.topic_checkpoints, "key"): 4,
        (settings.topic_checkpoints, "signature"): 1,
    }


def _spans(env: dict[str, str], window: int, partition: int) -> tuple[PartitionSpan, ...]:
    first = 20 * QUOTA + window % 1000
    topic = env["STREAMSCORE_TOPIC_FEATURES"]
    return (
        PartitionSpan(topic=topic, partition=partition, first_offset=first, last_offset=first + QUOTA - 1),
    )


# -- 3. a flood of unfinished chunks


def test_3_a_flood_of_unfinished_chunks_holds_no_memory_and_no_resume_offset(merging, bootstrap):
    worker, env = merging.worker, merging.env
    topic = env["STREAMSCORE_TOPIC_DRIFT_PARTIALS"]
    process = psutil.Process(merging.pid)
    more_windows(worker, bootstrap, env, "before-3")
    rss_before, refused_before = process.memory_info().rss, refused(worker, topic, "header")
    chunk = bytes(900_000)
    flood = [(b"loans:1/w7/p0", chunk, [("streamscore-chunk", f"{i}/1000000".encode())]) for i in range(80)]
    produce_state(bootstrap, topic, flood)
    end = max(r.offset for r in read_topic(bootstrap, topic, 1, 30, 2.0)) + 1
    wait_until(
        lambda: refused(worker, topic, "header") == refused_before + 80, 60, "the flood refused", worker
    )
    more_windows(worker, bootstrap, env, "after-3")

    def past() -> bool:
        return worker.get("/stats")["drift"]["partials_resume_at"].get("0", 0) >= end

    wait_until(past, 60, "the merger's resume offset past the flood", worker)
    peak = process.memory_info().rss
    wait_until(lambda: process.memory_info().rss - rss_before < 20 << 20, 60, "RSS back", worker)
    grown = (process.memory_info().rss - rss_before) / 2**20
    stats = worker.get("/stats")["drift"]
    count = refused(worker, topic, "header") - refused_before
    print(f"item 3: 80 chunks of 900 kB refused {count} (header); RSS {rss_before / 2**20:.0f} MiB, "
          f"{peak / 2**20:.0f} after, {grown:+.1f} settled; held {stats['partials_held_bytes']} bytes; "
          f"resume at {stats['partials_resume_at']} (flood ends {end})")  # fmt: skip
    assert stats["partials_held_bytes"] == 0
    merging.still_the_same_process()


# -- 4. signed but impossible partials


def test_4_impossible_signed_partials_are_refused_without_an_alert_or_a_retrain_request(merging, bootstrap):
    worker, env, bundle = merging.worker, merging.env, merging.bundle
    topic = env["STREAMSCORE_TOPIC_DRIFT_PARTIALS"]
    now = int(time.time() * 1000)

    def both(window: int, **change) -> list[WindowPartial]:
        return [a_partial(env, bundle, window, p, **change) for p in range(PARTITIONS)]

    far = (
        PartitionSpan(
            topic=env["STREAMSCORE_TOPIC_FEATURES"], partition=0, first_offset=0, last_offset=10**17
        ),
    )
    outside = DetectorChange(
        detector="adwin", stream="score", model_version="1", source_topic="x", partition=0, offset=5,
        event_id="e", event_time=now, position=1,
    )  # fmt: skip
    impossible = {
        "window 10^15": both(10**15),
        "a span ending at offset 10^17": both(30, spans=far),
        "events a day in the future": both(31, end_time=now + DAY_MS),
        "scores of 1e300": both(32, scores=np.full(QUOTA, 1e300)),
        "one event short": both(33, rows=_rows(bundle, QUOTA - 1), scores=np.full(QUOTA - 1, 0.5)),
        "a detector change outside the partial": both(34, changes=(outside,)),
    }
    never_served = both(0, version="99")
    control = both(35)  # possible: merged and reported
    before = {r: refused(worker, topic, r) for r in ("content", "version")}
    before_retrain = len(read_topic(bootstrap, env["STREAMSCORE_TOPIC_RETRAIN"], 0, 5, 1.0))
    records = [signed_chunk(env, p, key_of(p)) for group in impossible.values() for p in group]
    records += [signed_chunk(env, p, key_of(p)) for p in [*never_served, *control]]
    produce_state(bootstrap, topic, records)

    # each partial refused on its own, except the scores: a window's partials are checked against the model
    # they belong to when they are merged, and the window is refused once
    wanted = {"content": before["content"] + 11, "version": before["version"] + 2}
    wait_until(lambda: all(refused(worker, topic, r) == n for r, n in wanted.items()), 60, "refusals", worker)
    reports = drift_reports(bootstrap, env, 1)
    windows = {r.window for _, r in reports}
    retrain = read_topic(bootstrap, env["STREAMSCORE_TOPIC_RETRAIN"], 0, 5, 1.0)
    stats = worker.get("/stats")["drift"]
    print(f"item 4: refused {stats['refused_partials_by_reason']}; windows reported {sorted(windows)}; "
          f"retrain requests {before_retrain} -> {len(retrain)}; "
          f"waiting {stats['waiting_windows']}")  # fmt: skip
    assert 35 in windows, "the possible one is merged and reported"
    assert not windows & {10**15, 30, 31, 32, 33, 34}
    assert len(retrain) == before_retrain
    assert stats["waiting_windows"] == 0 and stats["partials_resume_at"]["0"] == worker_end(bootstrap, topic)
    merging.still_the_same_process()


def _rows(bundle, n: int) -> np.ndarray:
    return bundle.spec.encode_frame(
        agrawal_frame(n, seed=1, classification_function=2).drop(columns="approved")
    )


def worker_end(bootstrap: str, topic: str) -> int:
    return max(r.offset for r in read_topic(bootstrap, topic, 1, 30, 2.0)) + 1


# -- 5. a new state key over old state


def test_5_after_a_key_change_report_ids_do_not_repeat_and_no_event_is_counted_twice(
    bootstrap, topic_env, agrawal_bundle_dir, tmp_path, workers
):
    env = state_env(topic_env, STREAMSCORE_ROLES="drift,score")
    first = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "first.log")
    workers.append(first)
    first.wait_ready(120)
    more_windows(first, bootstrap, env, "k1", 3)
    assert first.terminate() == 0  # its shards checkpoint and commit what they read
    reported = first_reports = len(drift_reports(bootstrap, env, 3))

    env2 = {**env, "STREAMSCORE_STATE_KEY": bytes(range(100, 132)).hex()}
    second = WorkerProcess(env2, agrawal_bundle_dir, tmp_path / "second.log")
    workers.append(second)
    second.wait_ready(120)
    more_windows(second, bootstrap, env2, "k2", 3)
    reports = drift_reports(bootstrap, env, reported + 3)
    ids = [ce_id for ce_id, _ in reports]
    spans: dict[int, list[tuple[int, int]]] = {}
    for _, report in reports:
        for span in report.spans:
            spans.setdefault(span.partition, []).append((span.first_offset, span.last_offset))
    refused_then = second.get("/stats")["drift"].get("refused_checkpoints")
    print(f"item 5: {first_reports} reports with the first key, {len(reports) - first_reports} with the "
          f"second: ids {ids}; spans {spans}; refused checkpoints {refused_then}")  # fmt: skip
    assert len(set(ids)) == len(ids), "a CloudEvents id used twice"
    for partition, ranges in spans.items():
        ranges.sort()
        assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges)), (
            f"partition {partition}: an event in two windows"
        )
    assert second.get("/stats")["drift"]["refused_checkpoints"] >= 1, "the old key's checkpoints were refused"
