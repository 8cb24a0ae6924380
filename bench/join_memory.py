"""Memory of the label join's waiting events: the columnar join against the dict join it replaced.

Fills each join as the learner does (monitoring batches of ``--batch`` events, no labels, so
every event waits; the cap is ``--events``) and measures with tracemalloc what the join
holds once full: bytes per waiting event. Then, without tracemalloc, times filling a fresh
one and matching labels to a quarter of its events (the join alone: no KPIs, no River).
The dict join (``bench/dict_join.py``) takes one ``ScoredEvent`` per event, made as the
learner made them before (row as bytes); the columnar join takes the batch.

    .venv/bin/python bench/join_memory.py [--events 200000] [--features 20] [--batch 500]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from dict_join import DictJoin

from schemas.monitor import MonitorColumns
from scoring.feedback.label_join import EventBatch, LabelJoin, ScoredEvent

MODEL = "bench:1"


def batches(events: int, features: int, size: int) -> Iterator[MonitorColumns]:
    """Monitoring batches as the learn role decodes them (ids, offsets and times as lists)."""
    rng = np.random.default_rng(0)
    for start in range(0, events, size):
        n = min(size, events - start)
        offsets, times = list(range(start, start + n)), list(range(start, start + n))  # int objects each
        yield MonitorColumns(
            "bench", "1", "features", 0, offsets, [f"m0-{i}" for i in offsets], times,
            rng.random(n), rng.normal(size=(n, features)),
        )  # fmt: skip


def fill_dict(join: DictJoin, columns: MonitorColumns) -> None:
    """What ``Learner.observe`` did before: one ``ScoredEvent`` per event."""
    for i in range(len(columns)):
        event = ScoredEvent(
            MODEL, float(columns.scores[i]), columns.rows[i].tobytes(), columns.source_topic,
            columns.partition, int(columns.offsets[i]), str(columns.event_ids[i]),
            int(columns.event_times[i]), seq=join.next_seq,
        )  # fmt: skip
        join.next_seq += 1
        join.add_event(event)


def fill_columns(join: LabelJoin, columns: MonitorColumns) -> None:
    join.add_batch(EventBatch.of_monitor(columns, MODEL, join.take_seqs(len(columns))))


def fill_all(join, fill: Callable, args: argparse.Namespace) -> float:
    """Seconds to fill ``join`` with ``--events`` events."""
    started = time.perf_counter()
    for columns in batches(args.events, args.features, args.batch):
        fill(join, columns)
    return time.perf_counter() - started


def measure(name: str, make: Callable, fill: Callable, args: argparse.Namespace) -> dict:
    """Bytes held once full (tracemalloc, which slows everything), then the speeds on a fresh join."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    join = make()
    fill_all(join, fill, args)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    waiting = join.counts()["pending_events"]
    del join
    join = make()
    filled_s = fill_all(join, fill, args)
    started = time.perf_counter()
    for i in range(0, args.events, 4):
        join.add_label(f"m0-{i}", 1.0, i)
    labels_s = time.perf_counter() - started
    return {
        "join": name,
        "waiting": waiting,
        "MiB": held / 2**20,
        "bytes/event": held / waiting,
        "fill events/s": args.events / filled_s,
        "labels/s": (args.events // 4) / labels_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    rows = [
        measure("dict (before)", lambda: DictJoin(10**12, args.events), fill_dict, args),
        measure("columns (now)", lambda: LabelJoin(10**12, args.events), fill_columns, args),
    ]
    print(f"{args.events:,} waiting events of {args.features} features, batches of {args.batch}:")
    print("| join | waiting | MiB | bytes/event | fill events/s | labels/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['join']} | {r['waiting']:,} | {r['MiB']:.1f} | {r['bytes/event']:.0f} | "
            f"{r['fill events/s']:,.0f} | {r['labels/s']:,.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
