"""End-to-end latency of contenders at fixed offered loads, per second of the run.

First the max rate of the first contender (a throughput run, or ``--max-rate``), then for
each fraction of it and each contender a fresh broker and a fresh contender, a warm-up,
and a paced producer for ``--duration`` seconds. Each event carries its produce time;
latency = time its output is read minus the time it was handed to the producer (so it
includes the producer's linger). Latency is reported overall and per 1-second slice of
the run (by send time), so growth over a run shows, with the broker's CPU seconds and
memory (its log lives in memory) over the phase.

Contenders: ``streamscore_batch`` (a worker, score role), ``passthrough`` (the worker's own
loop and client settings with no decode and no model: the two-hop floor; streamscore minus
passthrough is what scoring adds), ``quix``, ``raw``. Tansu's fetch cost grows with the
record batches in a partition, so every phase gets a fresh broker; the "broker floor"
rows (producer -> broker -> reader, one hop) show what the broker alone adds.

    .venv/bin/python bench/latency.py [--contenders streamscore_batch,passthrough,quix]
        [--max-rate N] [--rates 2000,9000] [--fractions 0.1,0.5] [--duration 5]
        [--set SETTING=VALUE ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import psutil
from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from common import (
    CONTENDERS,
    FEATURES,
    OutputReader,
    create_topics,
    event,
    launch,
    make_events,
    preload,
    producer_config,
    train_model,
    unique,
)
from throughput import run_contender

from streams.kafka.embedded.broker import start_broker

WARMUP_EVENTS = 500


def paced_produce(
    producer: Producer, topic: str, rate: float, duration_s: float, prefix: str
) -> tuple[dict[str, float], float]:
    """Send ``rate`` events/s for ``duration_s``; returns event_id -> produce time and the achieved rate."""
    rows = np.random.default_rng(7).standard_normal((10_000, len(FEATURES))).round(6)
    total = int(rate * duration_s)
    sent_at: dict[str, float] = {}
    start = time.perf_counter()
    i = 0
    while i < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while i < due:
            now = time.time()
            ev = event(i, rows[i % len(rows)], int(now * 1000), prefix=prefix)
            headers = [("bench_produced_ns", str(time.time_ns()).encode())]
            while True:
                try:
                    producer.produce(topic, orjson.dumps(ev), ev["entity_id"].encode(), headers=headers)
                    break
                except BufferError:
                    producer.poll(0.001)
            sent_at[ev["event_id"]] = now
            i += 1
        producer.poll(0)
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    achieved = total / max(time.perf_counter() - start, 1e-9)
    producer.flush(30)
    return sent_at, achieved


def latencies(reader: OutputReader, sent_at: dict[str, float], skip: int) -> tuple[np.ndarray, np.ndarray]:
    """Per phase event read (values after ``skip``): its send time (s) and its latency (ms)."""
    res = reader.result
    sent, lat = [], []
    for value, read_at in zip(res.values[skip:], res.times[skip:], strict=True):
        produced = sent_at.get(orjson.loads(value).get("event_id"))
        if produced is not None:
            sent.append(produced)
            lat.append((read_at - produced) * 1000)
    return np.asarray(sent), np.asarray(lat)


def slices(sent: np.ndarray, lat: np.ndarray, q: float, width_s: float = 1.0) -> list[float]:
    """The ``q`` percentile of latency per ``width_s`` slice of send time, from the first send."""
    if not len(sent):
        return []
    index = ((sent - sent.min()) // width_s).astype(int)
    return [
        round(float(np.percentile(lat[index == i], q)), 1)
        for i in range(index.max() + 1)
        if (index == i).any()
    ]


def settings_env(args: argparse.Namespace) -> dict[str, str]:
    """``--set batch_linger_ms=2`` -> ``{"STREAMSCORE_BATCH_LINGER_MS": "2"}``."""
    pairs = (item.split("=", 1) for item in args.set)
    return {f"STREAMSCORE_{key.strip().upper()}": value for key, value in pairs}


def run_phase(name: str | None, rate: float, args: argparse.Namespace, bundle: Path, workdir: Path) -> dict:
    """One offered rate on a fresh broker; ``name`` None measures the broker alone."""
    label = name or "broker floor"
    with start_broker() as broker:
        in_topic, out_topic = unique("features"), unique("out")
        create_topics(broker.bootstrap, [in_topic, out_topic], args.partitions)
        producer = Producer(producer_config(broker.bootstrap, linger_ms=args.linger_ms))
        contender = None
        if name is not None:
            contender = launch(
                name, broker.bootstrap, in_topic, out_topic, bundle, workdir / f"{name}-{rate:.0f}",
                args.partitions, args.batch_size, settings_env=settings_env(args),
            )  # fmt: skip
        read_topic = out_topic if name else in_topic
        reader = OutputReader(broker.bootstrap, read_topic, keep_times=True, latency=True)
        try:
            alive = (lambda: contender.failed() is None) if contender else (lambda: True)
            paced_produce(producer, in_topic, 100, WARMUP_EVENTS / 100, prefix="w")
            reader.target = WARMUP_EVENTS
            if not reader.wait_for(30, 180, alive):
                tail = contender.log_tail() if contender else ""
                print(f"{label} at {rate:,.0f}/s: FAILED to warm up (read {reader.count()})\n{tail}")
                return {"contender": label, "rate": rate, "ok": False}
            time.sleep(1.0)
            skip = reader.count()
            broker_proc = psutil.Process(broker.process.pid)
            cpu_before = sum(broker_proc.cpu_times()[:2])
            sent_at, achieved = paced_produce(producer, in_topic, rate, args.duration, prefix="p")
            reader.target = skip + len(sent_at)
            reader.wait_for(10, 10, alive)
            broker_cpu = sum(broker_proc.cpu_times()[:2]) - cpu_before
            broker_rss = broker_proc.memory_info().rss / 2**20
        finally:
            reader.stop()
            if contender:
                contender.stop()
    sent, lat = latencies(reader, sent_at, skip)
    row = {
        "contender": label,
        "rate": round(rate),
        "achieved_rate": round(achieved),
        "ok": len(lat) > 0,
        "sent": len(sent_at),
        "read": len(lat),
        "broker_cpu_s": round(broker_cpu, 2),
        "broker_rss_mb": round(broker_rss, 1),
    }
    if len(lat):
        for q in (50, 95, 99):
            row[f"p{q}_ms"] = round(float(np.percentile(lat, q)), 1)
        row["max_ms"] = round(float(lat.max()), 1)
        row["slices_p50_ms"] = slices(sent, lat, 50)
        row["slices_p99_ms"] = slices(sent, lat, 99)
    print(f"  {label} at {rate:,.0f}/s: {row}", flush=True)
    return row


def measure_max_rate(args: argparse.Namespace, bundle: Path, workdir: Path) -> float | None:
    """The contender's throughput over a preloaded topic, as in bench/throughput.py."""
    print(f"measuring the max rate of {args.contender} on {args.max_events:,} events ...", flush=True)
    with start_broker() as broker:
        in_topic = unique("features")
        create_topics(broker.bootstrap, [in_topic], args.partitions)
        preload(broker.bootstrap, in_topic, make_events(args.max_events))
        tp_args = argparse.Namespace(partitions=args.partitions, batch_size=args.batch_size, workers=1)
        row = run_contender(args.contender, broker, in_topic, args.max_events, bundle, workdir, tp_args)
    return row["events_per_s"] if row["ok"] else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contenders", default="streamscore_batch,passthrough", help="comma list")
    parser.add_argument("--max-rate", type=float, default=None, help="skip measuring it")
    parser.add_argument("--max-events", type=int, default=100_000, help="events for the max-rate run")
    parser.add_argument("--fractions", default="0.1,0.5", help="of the max rate")
    parser.add_argument("--rates", default=None, help="offered rates (events/s) instead of fractions")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per offered rate")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=None, help="STREAMSCORE_BATCH_SIZE")
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--linger-ms", type=float, default=1.0, help="paced producer linger.ms")
    parser.add_argument("--no-floor", action="store_true", help="skip the broker-only rows")
    parser.add_argument("--set", action="append", default=[], help="worker setting, e.g. batch_linger_ms=2")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = set(contenders) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; known: {', '.join(CONTENDERS)}")

    with tempfile.TemporaryDirectory(prefix="bench-lat-") as tmp:
        workdir = Path(tmp)
        bundle = train_model(workdir / "bundle", trees=args.trees)
        if args.rates:
            rates = [(None, float(r)) for r in args.rates.split(",")]
        else:
            args.contender = contenders[0]
            max_rate = args.max_rate or measure_max_rate(args, bundle, workdir)
            if max_rate is None:
                return 1
            print(f"max rate of {contenders[0]}: {max_rate:,.0f} events/s", flush=True)
            rates = [(float(f), float(f) * max_rate) for f in args.fractions.split(",")]
        rows = []
        for fraction, rate in rates:
            for name in [*contenders, *([] if args.no_floor else [None])]:
                rows.append({"fraction": fraction, **run_phase(name, rate, args, bundle, workdir)})
    report(rows, contenders, args)
    return 0


def report(rows: list[dict], contenders: list[str], args: argparse.Namespace) -> None:
    print(f"\nend-to-end latency, {args.duration:.0f} s per rate, settings {args.set or 'default'}")
    columns = ["offered/s", "pipeline", "achieved/s", "read", "p50 ms", "p99 ms", "max ms"]
    print("| " + " | ".join([*columns, "p99 per second (ms)", "broker CPU s"]) + " |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for r in rows:
        if not r["ok"]:
            print(f"| {r['rate']:,.0f} | {r['contender']} | FAILED | | | | | | |")
            continue
        per_second = ", ".join(f"{v:g}" for v in r["slices_p99_ms"])
        print(
            f"| {r['rate']:,} | {r['contender']} | {r['achieved_rate']:,} | {r['read']:,}/{r['sent']:,} "
            f"| {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {per_second} | {r['broker_cpu_s']} |"
        )
    by = {(r["rate"], r["contender"]): r for r in rows if r["ok"]}
    if "streamscore_batch" in contenders and "passthrough" in contenders:
        print("\nadded by scoring (streamscore minus passthrough, same rate, same run):")
        for rate in sorted({r["rate"] for r in rows}):
            s, f = by.get((rate, "streamscore_batch")), by.get((rate, "passthrough"))
            if s and f:
                p50, p99 = s["p50_ms"] - f["p50_ms"], s["p99_ms"] - f["p99_ms"]
                print(f"  {rate:,}/s: p50 {p50:+.1f} ms, p99 {p99:+.1f} ms")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"config": vars(args), "results": rows}, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
