"""``streamscore demo``: the whole service on one machine, end to end, then a clean stop.

Starts the embedded broker, trains a demo model on synthetic loan applications,
starts a worker process, streams events with some invalid ones mixed in, shows live
counts, predictions, dead letters, drift and KPIs, retrains, deploys and rolls back,
and stops everything it started. The run itself is in ``streams.cli.demo_run``.
"""

from __future__ import annotations

import argparse

from streams.cli.common import Subparsers, command


def add_parser(sub: Subparsers) -> None:
    p = command(
        sub,
        "demo",
        "the whole service on this machine: broker, model, worker, events, drift, KPIs; then stop",
        "Starts the embedded broker, trains a demo model, runs a worker, streams loan applications\n"
        "(some invalid, the second half shifted), shows predictions, dead letters, drift and KPIs,\n"
        "retrains, deploys and rolls back, then stops what it started. Output goes to demo-output/.",
    )
    p.add_argument("--events", type=int, default=20000, help="loan applications to stream (default 20000)")
    p.add_argument("--invalid", type=int, default=200, help="invalid events mixed in (default 200)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.cli.demo_run import run_demo

    return run_demo(events=args.events, invalid=args.invalid)
