"""Cost per event of the drift agent's work, in process, no broker.

Monitoring messages of 500 rows as the scorer writes them (20 features, a model of
100 trees), decoded (the baseline) and then put through a ``DriftMonitor`` with
small and large windows: the per-event cost of the detectors and of closing windows.
Beside them, the performance estimator on the same windows (issue 20): once per
closed window from its scores (exact AUC), and in mergeable parts updated per
message and turned into an estimate per window.

    .venv/bin/python bench/drift_step.py [--events 200000] [--rows 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from common import train_model

from scoring.bundle import ModelBundle
from scoring.drift import DriftMonitor
from scoring.estimation import PerformanceEstimator
from streams.services.drift import decode_monitor


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rows", type=int, default=500)
    args = parser.parse_args()
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
    for window in (5_000, 50_000):
        monitor = DriftMonitor(window_events=window, window_s=1e9)
        monitor.register(bundle)
        started = time.perf_counter()
        reports = sum(len(monitor.observe(c)) for c in columns)
        observe_us = (time.perf_counter() - started) / n * 1e6
        print(f"| + windows, detectors, reports (window {window:,}) | {observe_us:.2f} | {reports} |")
    scores = [np.asarray(c.scores, dtype=float) for c in columns]
    return estimator_rows(bundle, scores, args.rows)


if __name__ == "__main__":
    sys.exit(main())
