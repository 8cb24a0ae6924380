"""The learner's checkpoints: bytes written per minute while idle and while labels flow, and the worker's
RSS with 200,000 events waiting for labels; this code against a baseline tree in the same run.

One broker; for each code tree in turn, a worker with every role (its own topics) gets
200,000 events and no labels, so the label join fills to ``label_join_max`` (200,000). Then:
a minute with nothing new (idle), and a minute of labels for waiting events at a steady
rate. A reader on the checkpoints topic counts every record's key and value bytes by the
record's timestamp; RSS is the worker's (psutil) when the join is full and after each minute.

    .venv/bin/python bench/checkpoints.py --baseline /tmp/streamscore-70ca9f9

The baseline is a source tree of an earlier commit (``git archive 70ca9f9 | tar -x -C DIR``);
both run on this venv's interpreter and packages, each with its tree first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
import psutil
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from scoring.offline.synthetic import events_from_frame, numeric_frame
from scoring.offline.training import train_bundle
from streams.kafka.embedded.broker import free_port, start_broker

REPO = Path(__file__).resolve().parent.parent
TOPICS = ["features", "predictions", "dlq", "monitor", "labels", "labels_dlq", "monitor_dlq", "drift",
          "metrics", "model_updates", "checkpoints", "alerts", "retrain"]  # fmt: skip


class ByteCounter(threading.Thread):
    """Reads a topic from the start; (timestamp ms, key + value bytes) of every record."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}",
                                  "enable.auto.commit": False, "fetch.max.bytes": 64 << 20})  # fmt: skip
        self.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self.records: list[tuple[int, int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for message in self.consumer.consume(1000, 0.2):
                if not message.error():
                    size = len(message.key() or b"") + len(message.value() or b"")
                    self.records.append((message.timestamp()[1], size))
        self.consumer.close()

    def between(self, start_ms: int, end_ms: int) -> tuple[int, int]:
        """(records, bytes) stamped in [start_ms, end_ms)."""
        inside = [size for stamp, size in list(self.records) if start_ms <= stamp < end_ms]
        return len(inside), sum(inside)


@dataclass
class Figures:
    name: str
    rss_full: float = 0.0
    rss_idle: float = 0.0
    rss_labels: float = 0.0
    idle: tuple[int, int] = (0, 0)
    labels: tuple[int, int] = (0, 0)
    fill_s: float = 0.0
    joined: int = 0


def _get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return json.loads(response.read())


def _wait(what: str, predicate, timeout_s: float, worker: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if predicate():
                return
        except OSError:
            pass
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what}: worker exit {worker.poll()}, or not within {timeout_s} s")
        time.sleep(0.5)


def _produce(bootstrap: str, topic: str, payloads, rate: float | None = None) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    started, sent = time.monotonic(), 0
    for key, value in payloads:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        sent += 1
        if rate and sent % 50 == 0:
            producer.poll(0)
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    assert producer.flush(120) == 0
    return sent


def measure(name: str, tree: Path, bootstrap: str, bundle: Path, args: argparse.Namespace) -> Figures:
    run, port, work = uuid.uuid4().hex[:6], free_port(), Path(tempfile.mkdtemp(prefix=f"ckpt-{name}-"))
    topic = {t: f"ck-{t}-{run}" for t in TOPICS}
    env = {**os.environ, "PYTHONPATH": str(tree), "STREAMSCORE_KAFKA_BOOTSTRAP": bootstrap,
           "STREAMSCORE_APP_ID": f"ck-{run}", "STREAMSCORE_GROUP_ID": f"ck-{run}-scorer",
           "STREAMSCORE_WEB_PORT": str(port), "STREAMSCORE_DATA_DIR": str(work / "data"),
           "STREAMSCORE_PARTITIONS": "1", "STREAMSCORE_SESSION_TIMEOUT_S": "6",
           **{f"STREAMSCORE_TOPIC_{t.upper()}": v for t, v in topic.items()}}  # fmt: skip
    log = open(work / "worker.log", "wb")  # noqa: SIM115 - closed below
    command = [sys.executable, "-m", "streams", "worker", "--model", str(bundle), "-l", "warn"]
    worker = subprocess.Popen(command, env=env, cwd=tree, stdout=log, stderr=subprocess.STDOUT)
    figures, counter = Figures(name), None
    try:
        _wait("ready", lambda: _get(port, "/ready")["ready"], 120, worker)
        counter = ByteCounter(bootstrap, topic["checkpoints"])
        counter.start()
        rss = lambda: psutil.Process(worker.pid).memory_info().rss / 2**20  # noqa: E731
        frame = numeric_frame(args.waiting, seed=2).drop(columns=["y"])
        start_ms = int(time.time() * 1000) - args.waiting
        events = list(events_from_frame(frame, prefix="w", start_ms=start_ms))
        started = time.monotonic()
        _produce(bootstrap, topic["features"], ((e["entity_id"].encode(), orjson.dumps(e)) for e in events))
        full = lambda: _get(port, "/stats")["learn"]["pending_events"] >= args.waiting  # noqa: E731
        _wait("join full", full, 600, worker)
        figures.fill_s = time.monotonic() - started
        time.sleep(args.settle)  # the checkpoint of the full join is written
        figures.rss_full = rss()
        idle_start = int(time.time() * 1000)
        time.sleep(args.minute)
        idle_end = int(time.time() * 1000)
        figures.rss_idle, figures.idle = rss(), counter.between(idle_start, idle_end)
        before = _get(port, "/stats")["learn"]["matched"]
        labels = ((e["event_id"].encode(), orjson.dumps({"event_id": e["event_id"], "label": 1.0,
                   "label_time": e["event_time"] + 1000})) for e in events)  # fmt: skip
        flow_start = int(time.time() * 1000)
        count = int(args.rate * args.minute)
        sent = _produce(bootstrap, topic["labels"], (next(labels) for _ in range(count)), rate=args.rate)
        flow_end = max(int(time.time() * 1000), flow_start + int(args.minute * 1000))
        time.sleep(max(0.0, flow_end / 1000 - time.time()))
        figures.rss_labels, figures.labels = rss(), counter.between(flow_start, flow_end)
        figures.joined = _get(port, "/stats")["learn"]["matched"] - before
        print(f"  {name}: {sent:,} labels sent, {figures.joined:,} joined", flush=True)
    finally:
        if counter is not None:
            counter.stopping.set()
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", type=Path, required=True, help="source tree of the earlier commit")
    parser.add_argument("--waiting", type=int, default=200_000, help="events waiting for labels")
    parser.add_argument("--minute", type=float, default=60.0, help="seconds of each measured window")
    parser.add_argument("--rate", type=float, default=200.0, help="labels per second in the label window")
    parser.add_argument("--settle", type=float, default=25.0, help="seconds after the join fills")
    args = parser.parse_args()
    print(f"load average at the start: {os.getloadavg()}")
    work = Path(tempfile.mkdtemp(prefix="ckpt-bundle-"))
    train_bundle(numeric_frame(20_000, seed=1), "y", work / "bundle", num_trees=100)
    broker = start_broker()
    results = []
    try:
        for name, tree in (("after", REPO), ("before", args.baseline.resolve())):
            broker_rss = psutil.Process(broker.process.pid).memory_info().rss / 2**20
            print(f"{name} ({tree}), broker RSS {broker_rss:.0f} MiB", flush=True)
            results.append(measure(name, tree, broker.bootstrap, work / "bundle", args))
    finally:
        broker.stop()
    per_min = 60.0 / args.minute
    print(f"\n{args.waiting:,} events waiting, {args.rate:.0f} labels/s; figures per minute; "
          f"load average at the end {os.getloadavg()}")  # fmt: skip
    print("| code | checkpoint MiB/min idle (records) | MiB/min while labels flow (records) | labels joined "
          "| RSS MiB join full | after idle | after labels |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for f in results:
        print(f"| {f.name} | {f.idle[1] * per_min / 2**20:.2f} ({f.idle[0] * per_min:.0f}) | "
              f"{f.labels[1] * per_min / 2**20:.2f} ({f.labels[0] * per_min:.0f}) | {f.joined:,} | "
              f"{f.rss_full:.0f} | {f.rss_idle:.0f} | {f.rss_labels:.0f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
