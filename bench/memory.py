"""Worker memory over a long run: RSS after 1,000,000 events against RSS after 300,000.

Starts the embedded broker and one streamscore worker (batch path), feeds events in
chunks so the broker holds only what is in flight, and samples the worker's RSS
(psutil) at checkpoints read from its ``/stats`` counter. The baseline in the same
run is the RSS at ``--base`` (300,000) events, where the warm-up is over; the goal is the
last checkpoint within 5% of it, and under ``--limit-mib`` if given.

    .venv/bin/python bench/memory.py [--events 1000000] [--roles drift,learn,score] [--limit-mib 450]
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

from scoring.offline.synthetic import events_from_frame, numeric_frame
from scoring.offline.training import train_bundle
from streams.kafka.embedded.broker import free_port, start_broker
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


def start_worker(workdir: Path, bootstrap: str, roles: str) -> tuple[subprocess.Popen, int, Settings]:
    """A worker (``roles``) on topics of its own; its process, web port and the settings to feed it."""
    run = uuid.uuid4().hex[:6]
    settings = Settings(kafka_bootstrap=bootstrap, topic_features=f"mem-features-{run}")
    port = free_port()
    env = {**os.environ, "STREAMSCORE_KAFKA_BOOTSTRAP": bootstrap, "STREAMSCORE_APP_ID": f"mem-{run}",
           "STREAMSCORE_GROUP_ID": f"mem-{run}-scorer", "STREAMSCORE_TOPIC_FEATURES": settings.topic_features,
           "STREAMSCORE_TOPIC_PREDICTIONS": f"mem-predictions-{run}",
           "STREAMSCORE_TOPIC_DLQ": f"mem-dlq-{run}",
           "STREAMSCORE_TOPIC_MONITOR": f"mem-monitor-{run}", "STREAMSCORE_WEB_PORT": str(port),
           "STREAMSCORE_DATA_DIR": str(workdir / "data"), "STREAMSCORE_ROLES": roles}  # fmt: skip
    log = open(workdir / "worker.log", "wb")  # noqa: SIM115 - the process owns it
    command = [sys.executable, "-m", "streams", "worker", "--model", str(workdir / "bundle"), "-l", "warn"]
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), port, settings


def report(checkpoints: list[tuple[int, float]], base_events: int, limit_mib: float | None) -> bool:
    """RSS at the end against RSS at ``base_events`` (the plateau's start) and, if given, a ceiling."""
    baseline = next((rss for n, rss in checkpoints if n >= base_events), checkpoints[0][1])
    events, final = checkpoints[-1]
    growth = (final - baseline) / baseline
    ok = abs(growth) <= 0.05 and (limit_mib is None or final <= limit_mib)
    ceiling = f", ceiling {limit_mib:.0f} MiB" if limit_mib else ""
    print(
        f"RSS after {events:,} events {final:.1f} MiB vs {baseline:.1f} MiB after {base_events:,}: "
        f"{growth:+.1%} (goal within 5%{ceiling}): {'met' if ok else 'NOT met'}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--base", type=int, default=300_000, help="events after which RSS should be flat")
    parser.add_argument("--limit-mib", type=float, default=None, help="RSS the run must stay under")
    parser.add_argument(
        "--roles", default="score", help="the worker's roles; with learn, unlabelled events wait up to "
        "label_join_max (200,000) in the join, so RSS grows until the join is full, then stays"
    )  # fmt: skip
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="streamscore-memory-"))
    train_bundle(numeric_frame(20_000, seed=1), "y", workdir / "bundle", num_trees=100)
    frame = numeric_frame(args.chunk, seed=2).drop(columns=["y"])  # replayed with fresh ids per chunk
    broker = start_broker()
    worker, port, settings = start_worker(workdir, broker.bootstrap, args.roles)
    process = psutil.Process(worker.pid)
    checkpoints: list[tuple[int, float]] = []
    try:
        produced = 0
        while produced < args.events:
            events = events_from_frame(frame, prefix=f"m{len(checkpoints)}")
            produced += produce_payloads(settings, event_payloads(events))
            _wait_consumed(port, produced)
            checkpoints.append((produced, process.memory_info().rss / 2**20))
            print(f"  after {produced:>9,} events: worker RSS {checkpoints[-1][1]:7.1f} MiB", flush=True)
    finally:
        worker.terminate()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
        broker.stop()
    print(f"roles {args.roles}")
    return 0 if report(checkpoints, args.base, args.limit_mib) else 1


if __name__ == "__main__":
    sys.exit(main())
