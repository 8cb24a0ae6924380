"""CPU per event of writing the learn role's waiting events into a checkpoint segment, in process.

``EventBatch.payload`` turns a batch of waiting events into the columns a checkpoint segment
holds; every event that waits for its label is written once. "before" is the code before
issue 31's change (a Python loop over the events for each origin column and the shadow
scores, kept here), "after" the code now. Batches of ``--events`` events of 20 features,
one origin or a shadow challenger on every other event; the two alternate ``--repeat``
times, medians of thread CPU time. The outputs are checked equal first.

    .venv/bin/python bench/join_payload.py [--events 10000] [--repeat 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scoring.feedback.event_columns import EventBatch, Payload


def before(batch: EventBatch) -> Payload:
    """``EventBatch.payload`` as it was."""
    origins = [batch.origins[k] for k in batch.kinds.tolist()]
    return {
        "model": [o[0] for o in origins],
        "score": batch.scores.tolist(),
        "source_topic": [o[1] for o in origins],
        "partition": [o[2] for o in origins],
        "offset": batch.offsets.tolist(),
        "event_id": list(batch.event_ids),
        "event_time": batch.event_times.tolist(),
        "shadow_model": [o[3] for o in origins],
        "shadow_score": [None if s != s else s for s in batch.shadow_scores.tolist()],
        "seq": batch.seqs.tolist(),
    }, np.ascontiguousarray(batch.rows, dtype=np.float64).tobytes()


def batch(n: int, shadow: bool) -> EventBatch:
    rng = np.random.default_rng(0)
    base = ("bench:1", "features", 0, None)
    scores = np.where(np.arange(n) % 2 == 1, rng.random(n), np.nan) if shadow else np.full(n, np.nan)
    return EventBatch(
        [f"evt-{i}" for i in range(n)],
        np.arange(n, dtype=np.int64),
        np.arange(n, dtype=np.int64) + 1_700_000_000_000,
        np.arange(n, dtype=np.int64),
        rng.random(n),
        scores,
        rng.standard_normal((n, 20)),
        [base, (*base[:3], "challenger:1")] if shadow else [base],
        (~np.isnan(scores)).astype(np.int8),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    print(f"EventBatch.payload, {args.events:,} events, thread CPU µs per event, median of {args.repeat}\n")
    print("| batch | before | after |\n| --- | ---: | ---: |")
    for label, shadow in (("one origin", False), ("a shadow challenger on every other event", True)):
        events = batch(args.events, shadow)
        if before(events) != events.payload():
            print("the payloads differ", file=sys.stderr)
            return 1
        times: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(args.repeat):
            for name, write in (("before", before), ("after", EventBatch.payload)):
                started = time.thread_time()
                write(events)
                times[name].append((time.thread_time() - started) / args.events * 1e6)
        was, now = statistics.median(times["before"]), statistics.median(times["after"])
        print(f"| {label} | {was:.3f} | {now:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
