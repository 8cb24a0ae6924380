"""A closed-loop HTTP load generator: ``concurrency`` clients POST one body back to back.

Runs in a process of its own (bench/inference.py starts it), so that its CPU and GIL are
not the bench's. Stops at ``--seconds`` or on SIGTERM, then prints one JSON line:
requests, errors (non-200 answers or failed connections), requests/s, p50 and p99
latency in ms.

    .venv/bin/python bench/http_load.py URL BODY_FILE [--concurrency 8] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from pathlib import Path

import aiohttp
import numpy as np


async def run(url: str, body: bytes, concurrency: int, seconds: float) -> dict:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.call_later(seconds, stop.set)
    latencies: list[float] = []
    errors = 0
    headers = {"Content-Type": "application/json"}

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while not stop.is_set():
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    ok = response.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        began = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    ms = np.asarray(latencies) * 1000 if latencies else np.asarray([np.nan])
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("body", type=Path)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    result = asyncio.run(run(args.url, args.body.read_bytes(), args.concurrency, args.seconds))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
