"""Cost per event of the drift agent's work, in process, no broker.

Monitoring messages of 500 rows as the scorer writes them (20 features, a model of
100 trees), decoded (the baseline) and then put through a ``DriftMonitor`` with
small and large windows: the per-event cost of the detectors and of closing windows.
Each window size runs twice in the same run: the bundle without its estimator (the
drift path before issue 20) and with it, as the drift path now runs (a closed window
also gives its ``PerformanceEstimate``), for the binary benchmark model and for a
regression model of the same size (direct loss estimation: two more LightGBM
predictions per event). Beside them, the binary estimator alone on the same windows:
once per closed window from its scores (exact AUC), and in mergeable parts updated per
message and turned into an estimate per window. And the work of the drift role with windows
cut per partition and merged (``STREAMSCORE_DRIFT_WINDOWS=partitions``): partition windows,
partials signed into bytes and read back, the merge, all in one process.

    .venv/bin/python bench/drift_step.py [--events 200000] [--rows 500]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from common import FEATURES, train_model

from schemas.monitor import decode_monitor
from scoring import checkpoint
from scoring.drift import DriftMonitor, MonitorColumns, PartitionWindows, WindowMerger, WindowPartial
from scoring.estimation import PerformanceEstimator
from scoring.model.bundle import ModelBundle
from scoring.offline.training import train_bundle


def messages(bundle: ModelBundle, events: int, rows: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for k in range(events // rows):
        matrix = rng.standard_normal((rows, len(bundle.spec.names))).round(6)
        offsets = list(range(k * rows, (k + 1) * rows))
        body = {
            "model_name": bundle.name,
            "model_version": bundle.version,
            "source_topic": "features",
            "partition": 0,
            "offsets": offsets,
            "event_ids": [f"e{o}" for o in offsets],
            "entity_ids": [f"u{o % 1000}" for o in offsets],
            "event_times": offsets,
            "scores": bundle.predict(matrix),
            "feature_names": bundle.spec.names,
            "rows": matrix,
            "schema_version": 1,
        }
        out.append(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))
    return out


def estimator_rows(bundle: ModelBundle, scores: list[np.ndarray], rows: int) -> int:
    """Rows of the table for the performance estimator on the same windows of the same events."""
    estimator = PerformanceEstimator.from_bundle(bundle)
    if estimator is None:
        print(f"no estimator: {bundle.estimation_note}")
        return 1
    n = sum(len(s) for s in scores)
    for window in (5_000, 50_000):
        windows = np.split(np.concatenate(scores), range(window, n, window))
        started = time.perf_counter()
        for w in windows:
            estimator.estimate(w)
        us = (time.perf_counter() - started) / n * 1e6
        print(f"| performance estimate per closed window (window {window:,}) | {us:.2f} | {len(windows)} |")
    for window in (5_000, 50_000):
        per_window, closed = window // rows, 0
        started = time.perf_counter()
        for first in range(0, len(scores), per_window):
            part = estimator.new_partial()
            for message in scores[first : first + per_window]:
                estimator.add(part, message)
            estimator.from_partial(part)
            closed += 1
        us = (time.perf_counter() - started) / n * 1e6
        print(f"| performance estimate in parts per message (window {window:,}) | {us:.2f} | {closed} |")
    return 0


def regression_bundle(rows: int = 20_000, seed: int = 0) -> ModelBundle:
    """A regression model of the benchmark's size: 20 features, 100 trees, its loss models fitted."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, len(FEATURES)))
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["y"] = (
        x[:, 0]
        - 0.8 * x[:, 1] ** 2
        + x[:, 2] * x[:, 3]
        + (0.3 + 0.5 * np.abs(x[:, 0])) * rng.standard_normal(rows)
    )
    return train_bundle(frame, "y", task="regression", name="bench-reg", num_trees=100, seed=seed)


def window_rows(bundle: ModelBundle, columns: list[MonitorColumns], n: int, kind: str) -> None:
    """Windows without and with the bundle's estimator, back to back, for two window sizes."""
    bare = dataclasses.replace(bundle, calibration=None, loss_models=None)
    for window in (5_000, 50_000):
        for label, b in (("without estimator", bare), ("with estimator", bundle)):
            monitor = DriftMonitor(window_events=window, window_s=1e9)
            monitor.register(b)
            started = time.perf_counter()
            closed = [w for c in columns for w in monitor.observe_windows(c)]
            us = (time.perf_counter() - started) / n * 1e6
            estimated = sum(w.estimate is not None for w in closed)
            print(f"| + windows, detectors, reports, {kind} {label} (window {window:,}) | {us:.2f} | "
                  f"{len(closed)} ({estimated} estimated) |")  # fmt: skip


def partition_rows(bundle: ModelBundle, columns: list[MonitorColumns], n: int, partitions: int = 4) -> None:
    """The same events cut per partition (message k on partition k mod P), each closed partition window
    turned into signed partial bytes and back, and merged: the drift role's CPU work with
    ``STREAMSCORE_DRIFT_WINDOWS=partitions``, all of it in one process (no broker)."""
    key = b"k" * 32
    for window in (5_000, 50_000):
        shards = [PartitionWindows(p, partitions, window) for p in range(partitions)]
        merger = WindowMerger(partitions, window)
        for shard in shards:
            shard.register(bundle)
        merger.register(bundle)
        wire, closed = 0, []
        started = time.perf_counter()
        for k, c in enumerate(columns):
            for partial in shards[k % partitions].observe(dataclasses.replace(c, partition=k % partitions)):
                name = f"w{partial.window}/p{partial.partition}"
                bound = checkpoint.binding("drift-partials", name, "bench")
                data = checkpoint.sign(partial.to_bytes(), key, bound)
                wire += len(data)
                closed += merger.add(WindowPartial.from_bytes(checkpoint.verify(data, key, bound)))
        us = (time.perf_counter() - started) / n * 1e6
        label = f"window {window:,}, {partitions} partitions; {wire / n:.0f} partial bytes/event"
        print(f"| + per-partition windows, signed partials, merge, binary with estimator ({label}) "
              f"| {us:.2f} | {len(closed)} |")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rows", type=int, default=500)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the bundle without an estimator says so once: not here
    with tempfile.TemporaryDirectory() as tmp:
        bundle = ModelBundle.load(train_model(Path(tmp) / "bundle"))
    payloads = messages(bundle, args.events, args.rows)
    n = len(payloads) * args.rows

    started = time.perf_counter()
    columns = [decode_monitor(p) for p in payloads]
    decode_us = (time.perf_counter() - started) / n * 1e6
    print(f"drift agent cost per event: {n:,} events in messages of {args.rows} rows, 20 features")
    print("| step | µs/event | windows closed |")
    print("| --- | ---: | ---: |")
    print(f"| decode monitoring messages (baseline) | {decode_us:.2f} | |")
    window_rows(bundle, columns, n, "binary")
    partition_rows(bundle, columns, n)
    regression = regression_bundle()
    window_rows(
        regression, [decode_monitor(p) for p in messages(regression, args.events, args.rows)], n, "regression"
    )
    scores = [np.asarray(c.scores, dtype=float) for c in columns]
    return estimator_rows(bundle, scores, args.rows)


if __name__ == "__main__":
    sys.exit(main())
