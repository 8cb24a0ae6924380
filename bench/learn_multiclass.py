"""The learner's cost per labelled event, binary against 3 and 10 classes, one run, no Kafka.

The models of ``bench/multiclass.py`` (the same ticket rows; binary: ``fraud`` or not). The score
step writes the monitoring records of ``--events`` events; a fresh ``Learner`` (as the learn role
makes it: KPIs per segment of ``channel``, the CUSUM on the error stream, no challenger) takes the
records, then one label per event. Reported: µs per labelled event (observe + label, best of
three), the snapshot's cost (its KPI rows) and the bytes of the KPI board a shard writes in each
partial (its JSON): the per-class histograms grow it with the class count.

    .venv/bin/python bench/learn_multiclass.py [--events 20000] [--trees 20] [--json OUT]
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
from hotpath import Rec
from multiclass import MODELS, train

from schemas.monitor import decode_monitor
from scoring.offline.synthetic import MULTICLASS_TARGET, events_from_frame, multiclass_frame
from streams.services.learn.shard import learner_for
from streams.services.score.handler import ScoreHandler
from streams.settings import Settings

SETTINGS = Settings(kafka_bootstrap="bench:0", segment_features="channel")


def labelled(bundle, records: list, truth: list) -> dict[str, float]:
    """µs per labelled event (best of three), µs per snapshot, and the KPI board's JSON bytes."""
    out: list[bytes] = []
    ScoreHandler(SETTINGS, bundle).handle(
        records, lambda topic, key, value, headers, partition=None: topic == "monitor" and out.append(value)
    )
    columns = [decode_monitor(v) for v in out]
    best, learner = float("inf"), None
    for _ in range(3):
        learner = learner_for(SETTINGS, bundle, 1)  # a shard other than 0: no River challenger
        started = time.perf_counter()
        for c in columns:
            learner.observe(c)
            for event_id, at in zip(c.event_ids, c.event_times, strict=True):
                learner.label(str(event_id), truth[int(str(event_id).rsplit("-", 1)[1])], at)
        best = min(best, time.perf_counter() - started)
    started = time.perf_counter()
    learner.snapshot([])
    return {
        "learn_us": 1e6 * best / len(truth),
        "snapshot_ms": 1e3 * (time.perf_counter() - started),
        "board_kb": len(json.dumps(learner.board.state())) / 1024,
        "kpi_rows": len(learner.board.kpis),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--trees", type=int, default=20, help="boosting rounds of every model")
    parser.add_argument("--rows", type=int, default=10_000, help="training rows")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-learn-mc-") as tmp:
        for name, classes in MODELS:
            bundle = train(Path(tmp) / f"model-{classes}", classes, args.rows, args.trees)
            frame = multiclass_frame(args.events, n_classes=max(classes, 3), seed=42)
            target = frame.pop(MULTICLASS_TARGET)
            truth = (target == "fraud").astype(float).tolist() if classes == 0 else target.tolist()
            events = list(events_from_frame(frame))
            records = [Rec(orjson.dumps(e), i, 0) for i, e in enumerate(events)]
            rows.append({"model": name, **labelled(bundle, records, truth)})
            print(f"{name}: {rows[-1]['learn_us']:.1f} µs per labelled event", flush=True)
    print(f"\n{args.events:,} labelled events, segments of channel, the CUSUM, no challenger; one run\n")
    print("| model | learner µs/labelled event | snapshot ms | KPI rows | board JSON kB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        cost = f"{r['learn_us']:.1f} | {r['snapshot_ms']:.1f}"
        print(f"| {r['model']} | {cost} | {r['kpi_rows']} | {r['board_kb']:.0f} |")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
