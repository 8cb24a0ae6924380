"""``streamscore broker``: the embedded Tansu broker, for development, the demo and the tests."""

from __future__ import annotations

import argparse
import signal
import threading

from streams.cli.common import Subparsers, command


def add_parser(sub: Subparsers) -> None:
    p = command(
        sub,
        "broker",
        "start the embedded Tansu broker on loopback (in memory; Ctrl-C stops it)",
        "Tansu speaks the Kafka protocol and keeps everything in memory: a restart loses all topics.",
    )
    p.add_argument("--port", type=int, default=None, help="port to listen on (default: a free one)")
    p.set_defaults(func=cmd_broker)


def cmd_broker(args: argparse.Namespace) -> int:
    from streams.kafka.broker import start_broker

    broker = start_broker(args.port)
    print(f"tansu broker listening; bootstrap: {broker.bootstrap}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set() and broker.process.poll() is None:
        stop.wait(0.5)
    broker.stop()
    return 0
