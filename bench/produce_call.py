"""Thread CPU of one ``Producer.produce`` call in the shapes the service loop makes it.

``ServiceLoop.emit`` queues every output of every role with ``headers=`` by keyword: six
CloudEvents headers for a prediction, ``None`` for everything else; beside them the same
calls by position and without headers, to show what the headers cost the score thread per
prediction. The producer here has the services' configuration and no reachable broker:
``produce`` only queues locally (purged after each pass), which is the part the score thread
pays. Shapes alternate ``--rounds`` times; medians in µs per call.

    .venv/bin/python bench/produce_call.py [--calls 20000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

from confluent_kafka import Producer

VALUE = b"x" * 330  # a prediction's JSON is about this long
KEY = b"cust-123"
HEADERS = [
    ("ce_id", b"evt-123456"),
    ("ce_specversion", b"1.0"),
    ("ce_type", b"com.streamscore.prediction"),
    ("ce_source", b"streamscore/bench/1"),
    ("ce_time", b"2026-12-07T12:00:00.000Z"),
    ("content-type", b"application/json"),
]


def shapes(produce: Callable) -> dict[str, Callable[[], None]]:
    return {
        "prediction, headers= keyword (as served)": lambda: produce("t", VALUE, KEY, headers=HEADERS),
        "prediction, headers by position": lambda: produce("t", VALUE, KEY, -1, None, None, 0, HEADERS),
        "no headers, headers=None keyword (as served)": lambda: produce("t", VALUE, KEY, headers=None),
        "no headers, by position": lambda: produce("t", VALUE, KEY),
        "to a partition, headers=None keyword (as served)": lambda: produce("t", VALUE, KEY, 1, headers=None),
        "to a partition, by position": lambda: produce("t", VALUE, KEY, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    producer = Producer(
        {
            "bootstrap.servers": "127.0.0.1:9",  # nothing listens: produce() only queues
            "log_level": 0,
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
            "linger.ms": 60_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "delivery.report.only.error": True,
            "on_delivery": lambda error, message: None,
        }
    )
    calls = shapes(producer.produce)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.rounds):
        for name, call in calls.items():
            started = time.thread_time()
            for _ in range(args.calls):
                call()
            times[name].append((time.thread_time() - started) / args.calls * 1e6)
            producer.purge(in_queue=True)
            producer.poll(0)
    print(f"Producer.produce, thread CPU µs per call, median of {args.rounds} x {args.calls:,} calls\n")
    print("| call | µs | min | max |\n| --- | ---: | ---: | ---: |")
    for name, spent in times.items():
        print(f"| {name} | {statistics.median(spent):.2f} | {min(spent):.2f} | {max(spent):.2f} |")
    producer.purge()
    return 0


if __name__ == "__main__":
    sys.exit(main())
