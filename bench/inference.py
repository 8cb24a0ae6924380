"""The inference endpoint (/v2) of one streamscore worker beside MLServer, and the stream under its load.

In one run, on loopback against the embedded broker, with one LightGBM model file (the
bench bundle's model.txt: 20 numeric features, 100 trees):

1. the stream alone: a score-only worker reads a preloaded backlog of events (events/s);
2. single-row requests, closed loop at each concurrency, to that worker (the matrix layout,
   one FP64 [1, 20] tensor, and the per-feature layout, 20 FP64 [1] tensors) and to
   MLServer's REST server with its LightGBM runtime on the same model.txt, the same
   matrix body (requests/s, p50, p99), MLServer as installed and with LightGBM on one
   OpenMP thread (as the worker predicts); the scores of both on 100 rows are compared;
3. the stream under load: a second worker reads the same backlog while the load
   generator keeps its /v2 endpoint busy (events/s, and the requests it answered meanwhile).

The load generator (bench/http_load.py) is a process of its own, on the same two cores
as the servers: the figures are of a client and a server sharing a machine. MLServer is
not a dependency of streamscore: it runs from a venv of its own (``--mlserver-venv``;
make one with ``python3 -m venv DIR && DIR/bin/pip install mlserver mlserver-lightgbm``).

    .venv/bin/python bench/inference.py --mlserver-venv /tmp/mlserver-venv
        [--events 300000] [--seconds 10] [--concurrency 1,8] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from common import (
    FEATURES,
    PYTHON,
    OutputReader,
    create_topics,
    launch,
    make_events,
    preload,
    stop_process,
    train_model,
    unique,
)

from streams.kafka.embedded.broker import free_port, start_broker

BENCH_DIR = Path(__file__).resolve().parent
ROWS = np.random.default_rng(7).standard_normal((100, len(FEATURES))).round(6)
# MLServer as installed, and with LightGBM on one OpenMP thread as the worker predicts
# (STREAMSCORE_PREDICT_THREADS=1): OpenMP threads spinning on two busy cores cost it most
MLSERVER_RUNS = {
    "MLServer 1.7 + LightGBM runtime": {},
    "MLServer 1.7 + LightGBM runtime, OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
}


def matrix_body(rows: np.ndarray) -> bytes:
    return orjson.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "datatype": "FP64",
                    "shape": list(rows.shape),
                    "data": rows.ravel().tolist(),
                }
            ]
        }
    )


def feature_body(row: np.ndarray) -> bytes:
    inputs = [
        {"name": f, "datatype": "FP64", "shape": [1], "data": [float(v)]}
        for f, v in zip(FEATURES, row, strict=True)
    ]
    return orjson.dumps({"inputs": inputs})


def post(url: str, body: bytes) -> dict:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_ok(url: str, timeout_s: float, process: subprocess.Popen, log: Path) -> float:
    """Poll ``url`` until it answers 200; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready in {timeout_s} s:\n{log.read_text(errors='replace')[-3000:]}")


def start_load(url: str, body: bytes, concurrency: int, seconds: float, workdir: Path) -> subprocess.Popen:
    body_file = workdir / f"body-{time.monotonic_ns()}.json"
    body_file.write_bytes(body)
    command = [
        PYTHON,
        str(BENCH_DIR / "http_load.py"),
        url,
        str(body_file),
        "--concurrency",
        str(concurrency),
    ]
    return subprocess.Popen([*command, "--seconds", str(seconds)], stdout=subprocess.PIPE, text=True)


def load(url: str, body: bytes, concurrency: int, seconds: float, workdir: Path) -> dict:
    out, _ = start_load(url, body, concurrency, seconds, workdir).communicate(timeout=seconds + 60)
    return json.loads(out)


def start_mlserver(
    venv: Path, model_file: Path, workdir: Path, env: dict[str, str]
) -> tuple[subprocess.Popen, str, Path]:
    """MLServer's REST server on loopback: ``model_file`` with mlserver-lightgbm, inference in-process."""
    root = workdir / f"mlserver-{time.monotonic_ns()}"
    (root / "bench").mkdir(parents=True)
    port = free_port()
    server = {"host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_port": free_port()}
    (root / "settings.json").write_text(json.dumps({**server, "parallel_workers": 0}))
    model = {"name": "bench", "implementation": "mlserver_lightgbm.LightGBMModel"}
    (root / "bench" / "model-settings.json").write_text(
        json.dumps({**model, "parameters": {"uri": str(model_file), "version": "1"}})
    )
    log = root / "mlserver.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(venv / "bin" / "mlserver"), "start", str(root)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=root,
            env={**os.environ, **env},
        )
    base = f"http://127.0.0.1:{port}"
    seconds = wait_ok(f"{base}/v2/models/bench/ready", 180, process, log)
    print(f"MLServer ready in {seconds:.1f} s", flush=True)
    return process, f"{base}/v2/models/bench/infer", log


def stream_rate(reader: OutputReader, n: int) -> float:
    if not reader.wait_for(30.0, 180.0):
        raise RuntimeError(f"the stream stalled at {reader.count():,} of {n:,}")
    return reader.stop().rate()


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def load_rows(name: str, url: str, body: bytes, args: argparse.Namespace, workdir: Path) -> list[dict]:
    rows = []
    for concurrency in args.concurrency:
        result = load(url, body, concurrency, args.seconds, workdir)
        rows.append({"server": name, "concurrency": concurrency, **result})
        print(f"  {name}, concurrency {concurrency}: {result}", flush=True)
    return rows


def endpoints(
    base: str, model_file: Path, args: argparse.Namespace, workdir: Path
) -> tuple[list[dict], float]:
    """Rows of the load table (ours, then each MLServer run); the largest score gap between the two."""
    url = f"{base}/v2/models/bench/infer"
    rows = load_rows("streamscore /v2, matrix [1, 20]", url, matrix_body(ROWS[:1]), args, workdir)
    rows += load_rows("streamscore /v2, 20 tensors [1]", url, feature_body(ROWS[0]), args, workdir)
    ours = np.asarray(post(url, matrix_body(ROWS))["outputs"][0]["data"])
    gap = 0.0
    for name, env in MLSERVER_RUNS.items():
        ml, ml_url, _ = start_mlserver(args.mlserver_venv, model_file, workdir, env)
        try:
            theirs = np.asarray(post(ml_url, matrix_body(ROWS))["outputs"][0]["data"])
            gap = max(gap, float(np.max(np.abs(ours - theirs))))
            rows += load_rows(name, ml_url, matrix_body(ROWS[:1]), args, workdir)
        finally:
            stop_process(ml)
    return rows, gap


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlserver-venv", type=Path, required=True)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0, help="of each load phase")
    parser.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[1, 8])
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    print(f"load before: {uptime()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-oip-") as tmp, start_broker() as broker:
        workdir = Path(tmp)
        bundle = train_model(workdir / "bundle", trees=args.trees)
        in_topic = unique("features")
        create_topics(broker.bootstrap, [in_topic], args.partitions)
        preload(broker.bootstrap, in_topic, make_events(args.events))
        print(f"preloaded {args.events:,} events; model {bundle / 'model.txt'}", flush=True)
        figures: dict = {"events": args.events, "load_before": uptime()}

        def worker(name: str) -> tuple:
            out = unique(f"predictions-{name}")
            create_topics(broker.bootstrap, [out], args.partitions)
            reader = OutputReader(broker.bootstrap, out, target=args.events)
            launched = launch(
                "streamscore_batch", broker.bootstrap, in_topic, out, bundle, workdir / name, args.partitions
            )
            return launched, reader, f"http://127.0.0.1:{launched.web_ports[0]}"

        first, reader, base = worker("alone")
        try:
            figures["stream_alone_events_per_s"] = round(stream_rate(reader, args.events))
            print(f"stream alone: {figures['stream_alone_events_per_s']:,} events/s", flush=True)
            wait_ok(f"{base}/v2/health/ready", 60, first.processes[0], first.logs[0])
            figures["endpoints"], figures["max_score_gap"] = endpoints(
                base, bundle / "model.txt", args, workdir
            )
        finally:
            first.stop()
        figures.update(under_load(worker, args, workdir))
        figures["load_after"] = uptime()
    print_tables(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def under_load(worker, args: argparse.Namespace, workdir: Path) -> dict:
    """A second worker reads the backlog while the load generator keeps its /v2 busy."""
    second, reader, base = worker("loaded")
    try:
        wait_ok(f"{base}/v2/health/ready", 120, second.processes[0], second.logs[0])
        concurrency = max(args.concurrency)
        generator = start_load(
            f"{base}/v2/models/bench/infer", matrix_body(ROWS[:1]), concurrency, 300, workdir
        )
        rate = stream_rate(reader, args.events)
        generator.terminate()
        out, _ = generator.communicate(timeout=60)
    finally:
        second.stop()
    answered = json.loads(out)
    print(f"stream under load: {rate:,.0f} events/s; endpoint meanwhile: {answered}", flush=True)
    return {
        "stream_loaded_events_per_s": round(rate),
        "endpoint_during_stream": {"concurrency": concurrency, **answered},
    }


def print_tables(figures: dict) -> None:
    print(f"\nsingle-row requests, closed loop; {os.cpu_count()} cores shared by client, server and broker\n")
    print("| server | concurrency | requests/s | p50 ms | p99 ms | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in figures["endpoints"]:
        cells = [
            r["server"],
            r["concurrency"],
            f"{r['requests_per_s']:,.0f}",
            r["p50_ms"],
            r["p99_ms"],
            r["errors"],
        ]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    during = figures["endpoint_during_stream"]
    alone, loaded = figures["stream_alone_events_per_s"], figures["stream_loaded_events_per_s"]
    print(
        f"\nstream ({figures['events']:,} events backlog): alone {alone:,} events/s; "
        f"with /v2 under load (concurrency {during['concurrency']}) {loaded:,} events/s "
        f"({loaded / alone:.0%}), while /v2 answered {during['requests_per_s']:,.0f} requests/s, "
        f"p50 {during['p50_ms']} ms, p99 {during['p99_ms']} ms"
    )
    print(f"max |streamscore - MLServer| over 100 rows: {figures['max_score_gap']:.1e}")
    print(f"load before: {figures['load_before']}\nload after:  {figures['load_after']}")


if __name__ == "__main__":
    sys.exit(main())
