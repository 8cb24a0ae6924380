"""Helpers for integration tests: run a worker process, produce, read a topic to a count."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, Producer

from streams.broker import free_port


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    partition: int
    offset: int


class WorkerProcess:
    """A ``streamscore worker`` subprocess with its own web port and log file."""

    def __init__(self, env: dict[str, str], model_dir: Path, log_path: Path, *extra_args: str) -> None:
        self.port = free_port()
        self.log_path = log_path
        full_env = {**os.environ, **env, "STREAMSCORE_WEB_PORT": str(self.port)}
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in kill()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker", "--model", str(model_dir), "-l", "info", *extra_args],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str) -> dict:
        return json.loads(self.get_text(path))

    def get_text(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as response:
            return response.read().decode()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if self.get("/ready").get("ready"):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready within {timeout_s} s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self, timeout_s: float = 20.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def produce(bootstrap: str, topic: str, payloads: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10, "partitioner": "murmur2_random"})
    for key, value in payloads:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(30) == 0, "not every test event was delivered"


def read_topic(
    bootstrap: str,
    topic: str,
    count: int,
    timeout_s: float = 120.0,
    idle_s: float = 0.0,
    counted: Callable[[Record], bool] = lambda _: True,
) -> list[Record]:
    """Read from the start until ``count`` records arrived (then ``idle_s`` more) or time runs out.

    Only records that ``counted`` accepts count toward ``count``; all are returned.
    Counts what it reads: the embedded broker's end offsets can lag (FIELD-NOTES).
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{topic}-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    records: list[Record] = []
    seen = 0
    deadline = time.monotonic() + timeout_s
    idle_until = None
    try:
        while time.monotonic() < deadline:
            if seen >= count:
                idle_until = idle_until or time.monotonic() + idle_s
                if time.monotonic() >= idle_until:
                    break
            for message in consumer.consume(5000, 0.5):
                if message.error():
                    continue
                record = Record(
                    message.key(),
                    message.value(),
                    dict(message.headers() or []),
                    message.partition(),
                    message.offset(),
                )
                records.append(record)
                seen += bool(counted(record))
    finally:
        consumer.close()
    return records


def loan_stream(
    n: int, invalid: int, prefix: str, seed: int = 5
) -> tuple[list[tuple[bytes, bytes | None]], list]:
    """``n`` Agrawal loan events (the second half earning 30% more: drift) with ``invalid`` bad ones mixed
    in, as ``(key, value)`` payloads; and a label payload per valid event."""
    from scoring.synthetic import agrawal_frame, events_from_frame, interleave_invalid

    labelled = agrawal_frame(n, seed=seed, classification_function=2)
    frame = labelled.drop(columns=["approved"])
    frame.loc[n // 2 :, "salary"] *= 1.3
    mixed = interleave_invalid(list(events_from_frame(frame, prefix=prefix)), invalid, "salary", seed=seed)
    payloads = [(str(e["entity_id"]).encode(), p) for _, e, p in mixed]
    labels = [
        (
            f"{prefix}-{i}".encode(),
            json.dumps({"event_id": f"{prefix}-{i}", "label": float(y), "label_time": 0}).encode(),
        )
        for i, y in enumerate(labelled["approved"])
    ]
    return payloads, labels
