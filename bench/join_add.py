"""CPU per event of the learn role's label join taking a monitoring record's events, in process.

``LabelJoin.add_batch`` of batches of ``--rows`` new events (20 features, no label waiting for
any): "event by event" is the path every batch took before issue 31 (in a worker of several
partitions the learn role always asked the other shards for early labels, one call per event;
here a taker that finds none), "whole batch" the path such a batch takes now (no label waiting
for any of its events here or in another shard). Both give the same join (checked); thread CPU
per event, the two alternating ``--repeat`` times, medians.

    .venv/bin/python bench/join_add.py [--batches 200] [--rows 590] [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scoring.feedback.event_columns import EventBatch
from scoring.feedback.label_join import LabelJoin


def batches(count: int, rows: int) -> list[EventBatch]:
    rng = np.random.default_rng(0)
    out = []
    for k in range(count):
        first = k * rows
        out.append(
            EventBatch(
                [f"evt-{first + i}" for i in range(rows)],
                np.arange(first, first + rows, dtype=np.int64),
                np.arange(first, first + rows, dtype=np.int64) + 1_700_000_000_000,
                np.arange(first, first + rows, dtype=np.int64),
                rng.random(rows),
                np.full(rows, np.nan),
                rng.standard_normal((rows, 20)),
                [("bench:1", "features", 0, None)],
                np.zeros(rows, np.int8),
            )
        )
    return out


def fill(every: list[EventBatch], one_by_one: bool) -> tuple[LabelJoin, float]:
    join = LabelJoin(ttl_ms=60_000, max_entries=100_000)
    none_elsewhere = (lambda event_id: None) if one_by_one else None
    started = time.thread_time()
    for batch in every:
        join.add_batch(batch, none_elsewhere)
    return join, time.thread_time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--rows", type=int, default=590)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    every = batches(args.batches, args.rows)
    a, _ = fill(every, one_by_one=True)
    b, _ = fill(every, one_by_one=False)
    if a.counts() != b.counts() or list(a.events.values()) != list(b.events.values()):
        print("the joins differ", file=sys.stderr)
        return 1
    times: dict[str, list[float]] = {"event by event": [], "whole batch": []}
    for _ in range(args.repeat):
        for name, one_by_one in (("event by event", True), ("whole batch", False)):
            times[name].append(fill(every, one_by_one)[1] / (args.batches * args.rows) * 1e6)
    n = args.batches * args.rows
    print(f"LabelJoin.add_batch, {n:,} events in batches of {args.rows}, the join's TTL and cap expiring")
    print(f"thread CPU µs per event, median of {args.repeat}\n\n| path | µs per event |\n| --- | ---: |")
    for name, spent in times.items():
        print(f"| {name} | {statistics.median(spent):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
