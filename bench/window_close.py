"""CPU of closing one drift window, before and after the sorted KS (issue 31), in one process.

A window of ``--events`` events of the benchmark's 20 numeric features and the model's scores
(``common.train_model``, the throughput bench's model), closed by ``WindowCloser.close``:
"before" with every reference taking the general path (``ks_test`` and ``bin_counts`` on the
raw values, as before issue 31's change), "after" with the references sorted once
(``ks_test_sorted``, ``bin_counts_sorted``). The two alternate ``--repeat`` times; medians.
The reports are checked equal first.

    .venv/bin/python bench/window_close.py [--events 10000] [--repeat 30]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from common import train_model

from scoring.drift.closing import WindowCloser, WindowEvents
from scoring.drift.compare import DriftThresholds
from scoring.model.bundle import ModelBundle


def general(closer: WindowCloser) -> WindowCloser:
    """The same closer with every reference on the general path (the code before the change)."""
    before = WindowCloser.__new__(WindowCloser)
    before.__dict__.update(closer.__dict__)
    before.numeric = {k: dataclasses.replace(v, ks=None) for k, v in closer.numeric.items()}
    if closer.score_baseline is not None:
        before.score_baseline = dataclasses.replace(closer.score_baseline, ks=None)
    return before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = ModelBundle.load(train_model(Path(tmp) / "bundle"))
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((args.events, len(bundle.spec.names))).round(6)
    rows[rng.random(rows.shape) < 0.01] = np.nan
    window = WindowEvents(0, "events", rows, bundle.predict(np.nan_to_num(rows)), 0, 1, [], [])
    after = WindowCloser(bundle, DriftThresholds())
    before = general(after)
    a, b = before.report(window, 0), after.report(window, 0)
    if a != b:
        print("the reports differ", file=sys.stderr)
        return 1
    times: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(args.repeat):
        for name, closer in (("before", before), ("after", after)):
            started = time.perf_counter()
            closer.close(window, 0)
            times[name].append(time.perf_counter() - started)
    print(f"WindowCloser.close, window of {args.events:,} events, 20 numeric features,", end=" ")
    print(f"median of {args.repeat}\n")
    print("| code | ms per window | µs per event |\n| --- | ---: | ---: |")
    for name, spent in times.items():
        median = statistics.median(spent)
        print(f"| {name} | {median * 1e3:.2f} | {median / args.events * 1e6:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
