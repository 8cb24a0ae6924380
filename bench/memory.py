"""Worker memory over a long run: RSS after 1,000,000 events against RSS after 100,000.

Starts the embedded broker and one streamscore worker (batch path), feeds events in
chunks so the broker holds only what is in flight, and samples the worker's RSS
(psutil) at checkpoints read from its ``/stats`` counter. The baseline in the same
run is the RSS at 100,000 events; the run passes when the last checkpoint is within
10% of it.

    .venv/bin/python bench/memory.py [--events 1000000] [--chunk 100000] [--roles score]
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

import psutil

from scoring.synthetic import events_from_frame, numeric_frame
from scoring.training import train_bundle
from streams.kafka.broker import free_port, start_broker
from streams.kafka.producer import event_payloads, produce_payloads
from streams.settings import Settings


def _stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=2) as response:
        return json.loads(response.read())


def _wait_consumed(port: int, target: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if _stats(port)["consumed"] >= target:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"worker did not reach {target} events")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument(
        "--roles", default="score", help="the worker's roles; with learn, unlabelled events wait up to "
        "label_join_max (200,000) in the join, so RSS grows until the join is full, then stays"
    )  # fmt: skip
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="streamscore-memory-"))
    bundle_dir = workdir / "bundle"
    train_bundle(numeric_frame(20_000, seed=1), "y", bundle_dir, num_trees=100)
    # the same 100,000 distinct events, replayed with fresh ids per chunk
    frame = numeric_frame(args.chunk, seed=2).drop(columns=["y"])

    broker = start_broker()
    run = uuid.uuid4().hex[:6]
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_features=f"mem-features-{run}")
    port = free_port()
    env = {
        **os.environ,
        "STREAMSCORE_KAFKA_BOOTSTRAP": broker.bootstrap,
        "STREAMSCORE_APP_ID": f"mem-{run}",
        "STREAMSCORE_GROUP_ID": f"mem-{run}-scorer",
        "STREAMSCORE_TOPIC_FEATURES": settings.topic_features,
        "STREAMSCORE_TOPIC_PREDICTIONS": f"mem-predictions-{run}",
        "STREAMSCORE_TOPIC_DLQ": f"mem-dlq-{run}",
        "STREAMSCORE_TOPIC_MONITOR": f"mem-monitor-{run}",
        "STREAMSCORE_WEB_PORT": str(port),
        "STREAMSCORE_DATA_DIR": str(workdir / "data"),
        "STREAMSCORE_ROLES": args.roles,
    }
    log = open(workdir / "worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, "-m", "streams", "worker", "--model", str(bundle_dir), "-l", "warn"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    process = psutil.Process(worker.pid)
    checkpoints: list[tuple[int, float]] = []
    try:
        produced = 0
        chunk_no = 0
        while produced < args.events:
            events = events_from_frame(frame, prefix=f"m{chunk_no}")
            produced += produce_payloads(settings, event_payloads(events))
            chunk_no += 1
            _wait_consumed(port, produced)
            rss_mib = process.memory_info().rss / 2**20
            checkpoints.append((produced, rss_mib))
            print(f"  after {produced:>9,} events: worker RSS {rss_mib:7.1f} MiB", flush=True)
    finally:
        worker.terminate()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
        broker.stop()

    baseline = checkpoints[0][1]
    final = checkpoints[-1][1]
    growth = (final - baseline) / baseline
    verdict = "within" if abs(growth) <= 0.10 else "OUTSIDE"
    print(
        f"RSS after {checkpoints[-1][0]:,} events {final:.1f} MiB vs {baseline:.1f} MiB after "
        f"{checkpoints[0][0]:,}: {growth:+.1%} ({verdict} 10%)"
    )
    return 0 if abs(growth) <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
