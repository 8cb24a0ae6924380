"""Throughput of streamscore against Quix Streams, a plain confluent-kafka loop and a naive Faust agent.

One broker, one preloaded input topic, the same events for every contender; each
contender in turn reads it from the start (own consumer group) into its own fresh
output topic. events/s runs from the first output message read to the Nth, so group
join and startup are left out; wall time includes them.

    .venv/bin/python bench/throughput.py [--events 200000] [--partitions 4]
        [--contenders quix,raw,naive_faust,streamscore_batch,streamscore_agent]
        [--batch-size N] [--trees 100] [--workers 1] [--json OUT]
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

from common import (
    CONTENDERS,
    OutputReader,
    TreeSampler,
    create_topics,
    distinct_event_ids,
    launch,
    make_events,
    preload,
    train_model,
    unique,
)

from streams.kafka.embedded.broker import Broker, start_broker

START_TIMEOUT_S = 180.0  # from launch to the first output message
IDLE_TIMEOUT_S = 30.0  # longest gap in output before a contender counts as stalled


def run_contender(
    name: str, broker: Broker, in_topic: str, n: int, bundle: Path, workdir: Path, args: argparse.Namespace
) -> dict:
    """Run one contender over the whole input topic and return its figures."""
    out_topic = unique(f"out-{name}")
    create_topics(broker.bootstrap, [out_topic], args.partitions)
    reader = OutputReader(broker.bootstrap, out_topic, target=n)
    workers = args.workers if name.startswith("streamscore") else 1
    started = time.time()
    contender = launch(
        name, broker.bootstrap, in_topic, out_topic, bundle, workdir / name, args.partitions,
        args.batch_size, workers,
    )  # fmt: skip
    sampler = TreeSampler([p.pid for p in contender.processes])
    broker_sampler = TreeSampler([broker.process.pid])
    ok = reader.wait_for(IDLE_TIMEOUT_S, START_TIMEOUT_S, alive=lambda: contender.failed() is None)
    usage, broker_usage = sampler.stop(), broker_sampler.stop()
    result = reader.stop()
    exit_code = contender.failed()
    contender.stop()
    row = {
        "contender": name,
        "workers": workers,
        "ok": ok,
        "read": result.count,
        "events_per_s": round(result.rate(), 1) if ok else None,
        "wall_s": round(result.done_at - started, 2) if ok and result.done_at else None,
        "cpu_s": round(usage.cpu_s, 2),
        "cpu_us_per_event": round(usage.cpu_s / max(result.count, 1) * 1e6, 1),
        "peak_rss_mb": round(usage.peak_rss_mb, 1),
        "broker_cpu_s": round(broker_usage.cpu_s, 2),
    }
    if ok:
        row["distinct_event_ids"] = distinct_event_ids(result.values[:n])
    else:
        why = f"exited with {exit_code}" if exit_code is not None else "stalled or too slow to start"
        print(f"{name}: FAILED ({why}; read {result.count:,} of {n:,})\n{contender.log_tail()}", flush=True)
    return row


def print_table(rows: list[dict], n: int) -> None:
    print(f"\n{n:,} events, one JSON event per message\n")
    print("| contender | events/s | wall s | CPU s | CPU µs/event | peak RSS MB | broker CPU s | read |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        label = r["contender"] + (f" x{r['workers']}" if r["workers"] > 1 else "")
        if not r["ok"]:
            cells = f"{r['cpu_s']} | | {r['peak_rss_mb']} | {r['broker_cpu_s']} | {r['read']:,}"
            print(f"| {label} | FAILED | | {cells} |")
            continue
        print(
            f"| {label} | {r['events_per_s']:,.0f} | {r['wall_s']} | {r['cpu_s']} | {r['cpu_us_per_event']} "
            f"| {r['peak_rss_mb']} | {r['broker_cpu_s']} | {r['read']:,} |"
        )
    rates = {r["contender"]: r["events_per_s"] for r in rows if r["ok"]}
    for path in ("streamscore_batch", "streamscore_agent"):
        if path not in rates:
            continue
        for base, goal in (("quix", 2.0), ("raw", 0.6)):
            if base in rates:
                ratio = rates[path] / rates[base]
                verdict = "meets" if ratio >= goal else "misses"
                print(f"{path}/{base}: {ratio:.2f}x ({verdict} the >= {goal}x goal)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma list, run in this order")
    parser.add_argument("--batch-size", type=int, default=None, help="STREAMSCORE_BATCH_SIZE")
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1, help="streamscore worker processes in one group")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    names = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONTENDERS]
    if unknown:
        parser.error(f"unknown contenders {unknown}; known: {', '.join(CONTENDERS)}")

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, start_broker() as broker:
        workdir = Path(tmp)
        t = time.perf_counter()
        bundle = train_model(workdir / "bundle", trees=args.trees)
        print(f"model: {args.trees} trees, trained in {time.perf_counter() - t:.1f} s", flush=True)
        in_topic = unique("features")
        create_topics(broker.bootstrap, [in_topic], args.partitions)
        payloads = make_events(args.events)
        seconds = preload(broker.bootstrap, in_topic, payloads)
        print(f"broker {broker.bootstrap}: preloaded {args.events:,} events in {seconds:.1f} s", flush=True)
        del payloads
        rows = []
        for name in names:
            print(f"running {name} ...", flush=True)
            rows.append(run_contender(name, broker, in_topic, args.events, bundle, workdir, args))
            if rows[-1]["ok"]:
                print(f"  {rows[-1]['events_per_s']:,.0f} events/s", flush=True)
    print_table(rows, args.events)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {k: getattr(args, k) for k in ("events", "partitions", "batch_size", "trees", "workers")}
        args.json.write_text(json.dumps({"config": meta, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
