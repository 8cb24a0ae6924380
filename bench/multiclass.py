"""Multiclass against binary: events/s and CPU per event of a 3-class and a 10-class model, one run.

The three models take the same inputs (``multiclass_frame``'s support tickets: the rows are the
same for every class count, only the target differs): binary (is the ticket ``fraud``), 3 queues
and 10 queues, each with the same number of boosting rounds (so K trees per round for K classes).
Two measurements, in one run:

- the score step without Kafka: ``ScoreHandler.handle`` over pre-encoded events with a no-op emit
  (validation, one predict per batch, predictions and monitoring records in their JSON), and
  ``BatchScorer`` alone, in µs per event on one thread;
- a score-only worker on the embedded broker (``bench/throughput.py``'s harness), reading the same
  preloaded events into a fresh output topic: events/s and the worker's CPU per event.

    .venv/bin/python bench/multiclass.py [--events 100000] [--trees 100] [--rows 10000]
        [--partitions 4] [--skip-broker] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import orjson
from common import create_topics, preload, unique
from hotpath import Rec, _emit, _per_event
from throughput import run_contender

from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import MULTICLASS_TARGET, events_from_frame, multiclass_frame
from scoring.offline.training import train_bundle
from streams.kafka.embedded.broker import start_broker
from streams.services.score.handler import ScoreHandler
from streams.settings import Settings

MODELS = (("binary", 0), ("3 classes", 3), ("10 classes", 10))


def train(out: Path, classes: int, rows: int, trees: int) -> ModelBundle:
    """The model of ``classes`` queues (0: binary, ``fraud`` or not) on the same ticket rows."""
    frame = multiclass_frame(rows, n_classes=max(classes, 3), seed=1)
    if classes == 0:
        frame[MULTICLASS_TARGET] = (frame[MULTICLASS_TARGET] == "fraud").astype(int)
    task = "multiclass" if classes else "binary"
    return train_bundle(frame, MULTICLASS_TARGET, out, task=task, name=f"tickets{classes}", num_trees=trees)


def step_costs(bundle: ModelBundle, batches: list, n: int) -> dict[str, float]:
    """µs per event of the whole score step and of the scorer alone, best of three."""
    handler = ScoreHandler(Settings(kafka_bootstrap="bench:0"), bundle)
    scorer = handler._plan.champion.scorer
    validator = handler._plan.validator
    rows = [[validator.parse(r.value()).row for r in b] for b in batches]
    return {
        "step_us": _per_event(lambda b: handler.handle(b, _emit), batches, n),
        "predict_us": _per_event(lambda rs: scorer.score(rs), rows, n),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--trees", type=int, default=100, help="boosting rounds of every model")
    parser.add_argument("--rows", type=int, default=10_000, help="training rows")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2000, help="events per handler batch (no broker)")
    parser.add_argument("--skip-broker", action="store_true", help="the score step without Kafka only")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    frame = multiclass_frame(args.events, seed=42).drop(columns=[MULTICLASS_TARGET])
    events = [(e["entity_id"].encode(), orjson.dumps(e)) for e in events_from_frame(frame)]
    records = [Rec(value, i, i % 4) for i, (_, value) in enumerate(events)]
    batches = [records[i : i + args.batch] for i in range(0, len(records), args.batch)]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-mc-") as tmp:
        workdir = Path(tmp)
        bundles = {}
        for name, classes in MODELS:
            started = time.perf_counter()
            bundles[name] = train(workdir / f"model-{classes}", classes, args.rows, args.trees)
            print(f"{name}: trained in {time.perf_counter() - started:.1f} s", flush=True)
            rows.append(
                {
                    "model": name,
                    "trees": args.trees * max(classes, 1),
                    **step_costs(bundles[name], batches, len(records)),
                }
            )
            print(f"  score step {rows[-1]['step_us']:.2f} µs/event", flush=True)
        if not args.skip_broker:
            with start_broker() as broker:
                in_topic = unique("features")
                create_topics(broker.bootstrap, [in_topic], args.partitions)
                preload(broker.bootstrap, in_topic, events)
                options = argparse.Namespace(partitions=args.partitions, batch_size=None, workers=1)
                for row in rows:
                    path = bundles[row["model"]].path
                    print(f"{row['model']}: a score-only worker on the broker ...", flush=True)
                    run_dir = workdir / f"run-{row['model'].replace(' ', '-')}"
                    found = run_contender(
                        "streamscore_batch", broker, in_topic, len(events), path, run_dir, options
                    )
                    row.update(
                        {k: found[k] for k in ("ok", "events_per_s", "cpu_us_per_event", "peak_rss_mb")}
                    )
    print(f"\n{len(records):,} events of 8 inputs, {args.trees} rounds per model, one run\n")
    print(
        "| model | trees | score step µs/event | predict µs/event | worker events/s | worker CPU µs/event |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        worker = f"{r['events_per_s']:,.0f} | {r['cpu_us_per_event']}" if r.get("ok") else " | "
        print(f"| {r['model']} | {r['trees']} | {r['step_us']:.2f} | {r['predict_us']:.2f} | {worker} |")
    if args.json:
        args.json.write_text(
            json.dumps({"config": vars(args) | {"json": str(args.json)}, "results": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
