"""``streamscore demo``: the whole service on one machine, end to end, then a clean stop.

The run itself is in ``streams.cli.demo.run`` (its tables in ``show``, the model
lifecycle in ``lifecycle``), imported when the command runs.
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
        "(some invalid, the second half with inflated salaries), shows predictions, dead letters,\n"
        "drift and the KPIs falling, retrains, deploys and rolls back, says what is in demo-output/\n"
        "and how to run the pieces by hand, then stops what it started.",
    )
    p.add_argument("--events", type=int, default=20000, help="loan applications to stream (default 20000)")
    p.add_argument("--invalid", type=int, default=200, help="invalid events mixed in (default 200)")
    p.add_argument(
        "--keep",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="at the end, keep the worker and its dashboard up until Ctrl-C "
        "(default: yes on a terminal, no in a pipe or a script)",
    )
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.cli.demo.run import run_demo

    return run_demo(events=args.events, invalid=args.invalid, keep=args.keep)
