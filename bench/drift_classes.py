"""What a multiclass model's outputs add to closing a drift window (issue 28, phase C).

A K-class model trained on ``multiclass_frame``; windows of ``--events`` tickets closed by
one ``WindowCloser`` (the code a drift worker and the merge of partials close windows with),
timed three ways: the window's report as a model of one score would get it (features and the
score), the report with the outputs' K + 1 tests (predicted classes, each class's probability),
and the estimate of accuracy, macro F1 and macro AUC. Median of ``--repeat`` closes, in ms.

    .venv/bin/python bench/drift_classes.py [--events 10000] [--classes 3 5 10] [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scoring.drift import WindowCloser, WindowEvents
from scoring.drift.compare import DriftThresholds
from scoring.offline.synthetic import MULTICLASS_TARGET, multiclass_frame
from scoring.offline.training import train_bundle


def median_ms(action, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def row(k: int, events: int, repeat: int) -> str:
    """One table row: closing a window of ``events`` tickets of a ``k``-class model."""
    bundle = train_bundle(
        multiclass_frame(20_000, n_classes=k, seed=3), MULTICLASS_TARGET, task="multiclass", num_trees=40
    )
    frame = multiclass_frame(events, n_classes=k, seed=4).drop(columns=MULTICLASS_TARGET)
    rows = bundle.spec.encode_frame(frame)
    p = bundle.predict(rows)
    window = WindowEvents(0, "events", rows, p.max(axis=1), 0, 1, [], [], probabilities=p)
    closer = WindowCloser(bundle, DriftThresholds())
    plain = WindowCloser(bundle, DriftThresholds())
    plain.classes = None  # the report a model of one score per event gets
    estimator = closer.estimator
    assert estimator is not None
    without = median_ms(lambda: plain.report(window, 0), repeat)
    with_outputs = median_ms(lambda: closer.report(window, 0), repeat)
    estimate = median_ms(lambda: estimator.estimate(window.scores, rows, p), repeat)
    return f"| {k} | {len(bundle.spec.features)} | {without:.1f} | {with_outputs:.1f} | {estimate:.1f} |"


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--classes", type=int, nargs="+", default=[3, 5, 10])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"windows of {args.events:,} events, median of {args.repeat} closes")
    print("| classes | features | report without outputs (ms) | with outputs (ms) | estimate (ms) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for k in args.classes:
        print(row(k, args.events, args.repeat), flush=True)


if __name__ == "__main__":
    main()
