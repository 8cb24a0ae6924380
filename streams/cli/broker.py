"""``streamscore broker``: the embedded Tansu broker, for development, the demo and the tests."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from streams.cli.common import Subparsers, command


def add_parser(sub: Subparsers) -> None:
    p = command(
        sub,
        "broker",
        "start the embedded Tansu broker on loopback (in memory; Ctrl-C stops it)",
        "Tansu speaks the Kafka protocol and keeps everything in memory: a restart loses all topics.",
    )
    p.add_argument("--port", type=int, default=None, help="port to listen on (default: a free one)")
    p.add_argument(
        "--tls-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="serve mutual TLS through stunnel with a throwaway CA and certificates made in DIR (kept and "
        "reused); prints the STREAMSCORE_KAFKA_* settings a client needs",
    )
    p.set_defaults(func=cmd_broker)


def cmd_broker(args: argparse.Namespace) -> int:
    from streams.kafka.embedded.broker import start_broker
    from streams.kafka.embedded.tls_broker import start_tls_broker

    if args.tls_dir:
        broker = start_tls_broker(args.tls_dir, args.port)
        print(
            f"tansu broker behind stunnel (mutual TLS); bootstrap: {broker.bootstrap}; a client's settings:"
        )
        print("\n".join(f"export {name}={value}" for name, value in broker.environment().items()), flush=True)
        processes = [broker.broker.process, broker.stunnel.process]
    else:
        broker = start_broker(args.port)
        print(f"tansu broker listening; bootstrap: {broker.bootstrap}", flush=True)
        processes = [broker.process]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set() and all(p is not None and p.poll() is None for p in processes):
        stop.wait(0.5)
    broker.stop()
    return 0
