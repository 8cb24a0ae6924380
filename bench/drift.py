"""Does the drift agent keep up with the scorer at full rate, in memory bound by its window?

One broker; for each configuration a fresh preloaded features topic and one
streamscore worker (batch path) scoring it from the start at full rate, with the
drift agent either in the same process (roles score,drift) or in a drift-only
worker beside it (roles score + roles drift). Every 0.25 s the bench reads the
workers' ``/stats`` and samples the RSS of the process running the drift agent.
The drift agent's lag is the events scored minus the events it has put into
windows (both counted by the workers), so it is exact, unlike the embedded
broker's end offsets.

Configurations: drift off (the baseline for the scoring rate, same run); drift in
process with ``--small`` windows; a drift worker with ``--small`` and ``--large``
windows. A lag that stays flat while scoring runs, and a catch-up time near zero
after it, means the agent keeps up; RSS of the drift worker with the two window
sizes shows memory follows the window, and RSS at 25% vs 100% of the stream
(same window) shows it does not follow the stream.

    .venv/bin/python bench/drift.py [--events 200000] [--small 5000] [--large 50000] [--rate R] [--only TEXT]

The last two configurations cut windows per partition and merge them
(``STREAMSCORE_DRIFT_WINDOWS=partitions``): one drift worker, then two sharing the
partitions (their drift events summed; RSS of the first).

With ``--rate`` the events are produced at R per second once the workers are ready,
so the run shows whether the lag stays flat at a rate the machine sustains.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from common import create_topics, launch, make_events, preload, train_model, unique

from streams.kafka.embedded.broker import start_broker
from streams.kafka.producer import produce_payloads
from streams.settings import Settings

POLL_S = 0.25


def stats(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=1) as response:
            return json.loads(response.read())
    except OSError:
        return None


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as response:
            return bool(json.loads(response.read())["ready"])
    except OSError:
        return False


def paced(bootstrap: str, topic: str, payloads, rate: float) -> threading.Thread:
    """Produce the pre-encoded payloads at ``rate`` per second on a thread."""
    settings = Settings(kafka_bootstrap=bootstrap)
    thread = threading.Thread(target=produce_payloads, args=(settings, payloads, rate, topic), daemon=True)
    thread.start()
    return thread


def run(
    label: str,
    bootstrap: str,
    payloads,
    bundle: Path,
    workdir: Path,
    partitions: int,
    config: dict,
    rate: float | None = None,
) -> dict:
    """One configuration: {"roles": of the scoring worker, "drift_worker": bool, "window": N, "path"}.

    ``path`` is the drift path, ``batch`` (its own consumer, the default) or ``agent``.

    The events are preloaded (the scorer runs at its full rate), or with ``rate``
    produced at that rate once the workers are ready.
    """
    n = len(payloads)
    in_topic, monitor = unique("features"), unique("monitor")
    create_topics(bootstrap, [in_topic], partitions)
    if rate is None:
        preload(bootstrap, in_topic, payloads)
    shared = {
        "STREAMSCORE_TOPIC_MONITOR": monitor,
        "STREAMSCORE_DRIFT_WINDOW_EVENTS": str(config["window"]),
        "STREAMSCORE_DRIFT_PATH": config.get("path", "batch"),
        "STREAMSCORE_DRIFT_WINDOWS": config.get("windows", "stream"),
        "STREAMSCORE_TOPIC_DRIFT_PARTIALS": unique("drift-partials"),
        "STREAMSCORE_STATE_KEY": "ab" * 32,  # one key for the deployment's drift workers
    }
    workdir = workdir / label.replace(" ", "-").replace(",", "")
    out = unique("out")

    def start(roles: str, sub: str):
        env = {**shared, "STREAMSCORE_ROLES": roles, "STREAMSCORE_APP_ID": f"drift-bench-{sub}-{monitor}"}
        return launch(
            "streamscore_batch", bootstrap, in_topic, out, bundle, workdir / sub, partitions, settings_env=env
        )

    scorer = start(config["roles"], "scorer")
    count = config.get("drift_workers", int(config.get("drift_worker", False)))
    drifters = [start("drift", "drift") for _ in range(count)]
    launched = [scorer, *drifters]
    watch = drifters or [scorer]
    drift_on = bool(drifters) or "drift" in config["roles"]
    process = psutil.Process(watch[0].processes[0].pid)
    if rate is not None:
        deadline = time.monotonic() + 120
        while not all(ready(w.web_ports[0]) for w in launched) and time.monotonic() < deadline:
            time.sleep(0.2)
        paced(bootstrap, in_topic, payloads, rate)
    try:
        samples = sample_until_done(label, n, scorer, watch, launched, drift_on, process)
    finally:
        for one in launched:
            one.stop()
    return summarize(label, n, samples)


def sample_until_done(label: str, n: int, scorer, watch: list, launched, drift_on: bool, process) -> list:
    """(time, scored, windowed, RSS MiB of the (first) drift process) until every event is scored and
    windowed; ``windowed`` sums the drift workers' counts."""
    samples: list[tuple[float, int, int, float]] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for one in launched:
            if one.failed() is not None:
                raise RuntimeError(f"{label}: worker exited\n{one.log_tail()}")
        scored_body, watch_bodies = stats(scorer.web_ports[0]), [stats(w.web_ports[0]) for w in watch]
        if scored_body is not None and None not in watch_bodies:
            scored = scored_body["scored"]
            windowed = sum(b["drift"]["events"] for b in watch_bodies) if drift_on else scored
            samples.append((time.monotonic(), scored, windowed, process.memory_info().rss / 2**20))
            if scored >= n and windowed >= n:
                return samples
        time.sleep(POLL_S)
    raise TimeoutError(f"{label}: not done in time\n{watch[0].log_tail()}")


def summarize(label: str, n: int, samples: list[tuple[float, int, int, float]]) -> dict:
    started = next(t for t, scored, _, _ in samples if scored > 0)
    scored_at = next(t for t, scored, _, _ in samples if scored >= n)
    done_at = samples[-1][0]
    lags = [scored - windowed for t, scored, windowed, _ in samples if started <= t <= scored_at]

    def rss_at(fraction: float) -> float:
        return next(rss for _, _, windowed, rss in samples if windowed >= fraction * n)

    return {
        "config": label,
        "events_per_s": n / (scored_at - started) if scored_at > started else float("nan"),
        "max_lag": max(lags),
        "lag_quartiles": [lags[min(len(lags) - 1, len(lags) * q // 4)] for q in (1, 2, 3)],
        "lag_at_end": lags[-1],
        "catch_up_s": done_at - scored_at,
        "rss_25": rss_at(0.25),
        "rss_100": rss_at(1.0),
    }


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    mode = f"produced at {args.rate:,.0f}/s" if args.rate else "preloaded, scored at full rate"
    print(f"\n{args.events:,} events ({mode}), {args.partitions} partitions; RSS: the drift agent\n")
    print(
        "| config | scored events/s | drift lag max | lag at 25/50/75% of scoring | lag when scoring ended "
        "| drift catch-up s | RSS MiB at 25% | RSS MiB at 100% |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['config']} | {r['events_per_s']:,.0f} | {r['max_lag']:,} "
            f"| {' / '.join(f'{q:,}' for q in r['lag_quartiles'])} "
            f"| {r['lag_at_end']:,} | {r['catch_up_s']:.2f} | {r['rss_25']:.1f} | {r['rss_100']:.1f} |"
        )
    base = rows[0]["events_per_s"]
    for r in rows[1:]:
        growth = r["rss_100"] / r["rss_25"] - 1
        print(
            f"{r['config']}: scoring at {r['events_per_s'] / base:.2f}x the drift-off rate; "
            f"RSS {growth:+.1%} from 25% to 100% of the stream"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--small", type=int, default=5_000, help="events per window, small")
    parser.add_argument("--large", type=int, default=50_000, help="events per window, large")
    parser.add_argument("--rate", type=float, default=None, help="produce at this rate instead of preloading")
    parser.add_argument(
        "--only", default="", help="the drift-off baseline and configs naming one of these: 'a|b'"
    )
    args = parser.parse_args()

    configs = [
        ("drift off", {"roles": "score", "drift_worker": False, "window": args.small}),
        (
            f"in-process, window {args.small:,}",
            {"roles": "score,drift", "drift_worker": False, "window": args.small},
        ),
        (
            f"drift worker, window {args.small:,}",
            {"roles": "score", "drift_worker": True, "window": args.small},
        ),
        (
            f"drift worker, window {args.large:,}",
            {"roles": "score", "drift_worker": True, "window": args.large},
        ),
        (
            f"drift worker as a Faust agent, window {args.small:,}",
            {"roles": "score", "drift_worker": True, "window": args.small, "path": "agent"},
        ),
        (
            f"drift worker, partition windows, window {args.small:,}",
            {"roles": "score", "drift_worker": True, "window": args.small, "windows": "partitions"},
        ),
        (
            f"two drift workers, partition windows, window {args.small:,}",
            {"roles": "score", "drift_workers": 2, "window": args.small, "windows": "partitions"},
        ),
    ]
    if args.only:
        configs = [configs[0], *(c for c in configs[1:] if any(o in c[0] for o in args.only.split("|")))]
    payloads = make_events(args.events)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp, start_broker() as broker:
        bundle = train_model(Path(tmp) / "bundle")
        for label, config in configs:
            print(f"running {label} ...", flush=True)
            rows.append(
                run(label, broker.bootstrap, payloads, bundle, Path(tmp), args.partitions, config, args.rate)
            )

    print_table(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
