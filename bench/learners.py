"""Labelled events per second for 1, 2 and 3 learn workers sharing one deployment's partitions.

One broker; the monitoring records of N scored events (made by the score handler offline,
each on the monitor partition of its source partition) and their N labels (on the same
partition number, as labels keyed by entity land) are written first. Then, for each K,
K learn-only workers of a fresh deployment read them: the rate is N over the time from
their start until the merged KPI snapshot on ``metrics`` counts every label. Beside it,
each worker's CPU microseconds per label joined in its shards: the reporter's (the owner of
partition 0) include merging the partials and the River challenger, which learns from
partition 0 only. On two cores K workers share the CPU with the broker, so the rate shows
the overhead of sharding, not a speed-up; the CPU per label is what another machine adds.

    .venv/bin/python bench/learners.py [--events 200000] [--partitions 4] [--instances 1,2,3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
import psutil
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.feedback import MetricsSnapshot
from scoring.offline.synthetic import events_from_frame, loan_frame
from scoring.offline.training import train_bundle
from streams.kafka.embedded.broker import free_port, start_broker
from streams.services.score.handler import ScoreHandler
from streams.settings import Settings

REPO = Path(__file__).resolve().parent.parent
TOPICS = ["features", "predictions", "dlq", "monitor", "labels", "labels_dlq", "monitor_dlq", "drift",
          "metrics", "model_updates", "checkpoints", "alerts", "retrain"]  # fmt: skip


class _Record:
    def __init__(self, partition: int, offset: int, value: bytes) -> None:
        self._p, self._o, self._v = partition, offset, value

    def topic(self) -> str:
        return "features"

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> None:
        return None

    def value(self) -> bytes:
        return self._v

    def headers(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, int(time.time() * 1000))


def stream(bundle, n: int, partitions: int) -> tuple[list, list]:
    """(partition, value) of the monitoring records and of the labels of ``n`` events."""
    frame = loan_frame(n, seed=3)
    y = frame.pop("approved").to_numpy(float)
    events = list(events_from_frame(frame, prefix="b"))
    handler = ScoreHandler(Settings(kafka_bootstrap="unused:1", partitions=partitions), bundle)
    monitor: list[tuple[int, bytes]] = []

    def keep(topic, key, value, headers, partition=None) -> None:
        if topic == "monitor":
            monitor.append((partition, value))

    for start in range(0, n, 2000):
        chunk = [
            _Record(hash(e["entity_id"]) % partitions, i, orjson.dumps(e))
            for i, e in enumerate(events[start : start + 2000], start)
        ]
        handler.handle(chunk, keep)
    partition_of = {}
    for part, value in monitor:
        for event_id in orjson.loads(value)["event_ids"]:
            partition_of[event_id] = part
    labels = [
        (partition_of[e["event_id"]], orjson.dumps({"event_id": e["event_id"], "label": float(y[i]),
                                                    "label_time": e["event_time"] + 1}))
        for i, e in enumerate(events)
    ]  # fmt: skip
    return monitor, labels


def _try(check, port: int) -> bool:
    try:
        return bool(check(port))
    except OSError:
        return False


def _get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return json.loads(response.read())


def run(k: int, bootstrap: str, topics: dict[str, str], bundle: Path, args: argparse.Namespace) -> dict:
    run_id, work = uuid.uuid4().hex[:6], Path(tempfile.mkdtemp(prefix=f"learn-{k}-"))
    metrics = f"lm-metrics-{run_id}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # one partition: the reader below reads it all
    for future in admin.create_topics([NewTopic(metrics, 1, 1)]).values():
        future.result(30)
    base = {**os.environ, "STREAMSCORE_KAFKA_BOOTSTRAP": bootstrap, "STREAMSCORE_APP_ID": f"lm-{run_id}",
            "STREAMSCORE_GROUP_ID": f"lm-{run_id}-scorer", "STREAMSCORE_ROLES": "learn",
            "STREAMSCORE_PARTITIONS": str(args.partitions), "STREAMSCORE_METRICS_INTERVAL_S": "1",
            **{f"STREAMSCORE_TOPIC_{t.upper()}": v for t, v in topics.items()},
            "STREAMSCORE_TOPIC_METRICS": metrics,
            "STREAMSCORE_TOPIC_CHECKPOINTS": f"lm-ck-{run_id}",
            # every event waits for its label here (all are written before the labels), and each
            # shard holds label_join_max / P: with the default a partition of more than 50,000 of
            # the 200,000 expired its oldest events whenever monitor was read ahead of labels
            "STREAMSCORE_LABEL_JOIN_MAX": str(2 * args.events),
            # one deployment, one state key: checkpoints and KPI partials are signed with it
            "STREAMSCORE_STATE_KEY": os.urandom(32).hex()}  # fmt: skip
    workers, ports = [], []
    started = time.monotonic()
    for i in range(k):
        ports.append(free_port())
        env = {**base, "STREAMSCORE_WEB_PORT": str(ports[-1]), "STREAMSCORE_DATA_DIR": str(work / f"d{i}")}
        log = open(work / f"w{i}.log", "wb")  # noqa: SIM115 - the process owns it
        command = [sys.executable, "-m", "streams", "worker", "--model", str(bundle), "-l", args.loglevel]
        workers.append(subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
    try:
        ready = lambda port: _get(port, "/ready")["ready"]  # noqa: E731
        while not all(_try(ready, port) for port in ports):
            assert all(w.poll() is None for w in workers), f"a worker exited; see {work}"
            time.sleep(0.2)
        started = time.monotonic()  # the rate counts from every worker ready (assigned), not from its start
        cpu0 = [sum(psutil.Process(w.pid).cpu_times()[:2]) for w in workers]
        reader = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"r-{run_id}", "enable.auto.commit": False}
        )
        reader.assign([TopicPartition(metrics, 0, 0)])
        done_at = None
        while done_at is None and time.monotonic() - started < args.timeout:
            for message in reader.consume(100, 0.5):
                if (
                    message.error() is None
                    and MetricsSnapshot.model_validate_json(message.value()).labels.matched >= args.events
                ):
                    done_at = time.monotonic()
        reader.close()
        cpu = [sum(psutil.Process(w.pid).cpu_times()[:2]) - c0 for w, c0 in zip(workers, cpu0, strict=True)]
        joined = []
        for port in ports:
            try:
                joined.append(_get(port, "/stats")["learn"]["labels"])
            except OSError:
                joined.append(0)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(20)
            except subprocess.TimeoutExpired:
                w.kill()
    elapsed = (done_at or time.monotonic()) - started
    return {"instances": k, "ok": done_at is not None, "seconds": elapsed, "rate": args.events / elapsed,
            "cpu_s": cpu, "labels": joined,
            "us_per_label": [1e6 * c / n if n else float("nan")
                             for c, n in zip(cpu, joined, strict=True)]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--instances", default="1,2,3")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--loglevel", default="warn", help="the workers' log level (logs in /tmp/learn-K-*)")
    args = parser.parse_args()
    print(f"load average at the start: {os.getloadavg()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="learn-bundle-"))
    bundle = train_bundle(loan_frame(8000, seed=5), "approved", work / "loans", name="loans", num_trees=40)
    monitor, labels = stream(bundle, args.events, args.partitions)
    rows = []
    with start_broker() as broker:
        topics = {t: f"lb-{t}-{uuid.uuid4().hex[:6]}" for t in TOPICS}
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        futures = admin.create_topics([NewTopic(v, args.partitions, 1) for v in topics.values()])
        for future in futures.values():
            future.result(30)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20})
        for topic, records in ((topics["monitor"], monitor), (topics["labels"], labels)):
            for partition, value in records:
                while True:
                    try:
                        producer.produce(topic, value, None, partition)
                        break
                    except BufferError:
                        producer.poll(0.05)
        assert producer.flush(120) == 0
        for k in (int(x) for x in args.instances.split(",")):
            rows.append(run(k, broker.bootstrap, topics, bundle.path, args))
            print(f"  {rows[-1]}", flush=True)
    base = rows[0]["rate"]
    print(f"\n{args.events:,} labelled events, {args.partitions} partitions; load {os.getloadavg()}")
    print("| learn workers | done in s | labelled events/s | vs 1 | labels per worker | CPU µs/label each |")
    print("| ---: | ---: | ---: | ---: | --- | --- |")
    for r in rows:
        per = ", ".join(f"{n:,}" for n in r["labels"])
        cost = ", ".join(f"{u:.0f}" for u in r["us_per_label"])
        print(
            f"| {r['instances']} | {r['seconds']:.1f} | {r['rate']:,.0f} | {r['rate'] / base:.2f}x "
            f"| {per} | {cost} |"
        )
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
