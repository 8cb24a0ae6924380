"""The ``streamscore`` command line: one module per command group, this one ties them together.

Each module (broker, worker, produce, tail, train, replay, status, model, schemas, demo) adds
its subcommands with ``add_parser(sub)`` and holds their functions, importing what they
need when they run, so ``streamscore --help`` stays quick. Settings are read once per
command, from ``STREAMSCORE_*`` environment variables overridden by flags, then passed down.
"""

from __future__ import annotations

import argparse
import logging
import sys

from streams.cli import broker, demo, failures, model, produce, replay, schemas, status, tail, train, worker
from streams.environment import check_environment, debug_requested

DESCRIPTION = """\
streamscore: streaming model scoring on Kafka.

Train a LightGBM model bundle from a table, run workers that score the features
topic, watch drift and KPIs, and deploy, compare and roll back model versions.
`streamscore demo` runs it all on this machine in about a minute."""

EPILOG = """\
settings come from STREAMSCORE_* environment variables (docs/reference/settings.md);
flags override them. `streamscore COMMAND --help` shows a command's options."""

GROUPS = (broker, worker, produce, tail, train, replay, status, model, schemas, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamscore",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=False,
        help="show the full traceback of an error (or set STREAMSCORE_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for group in GROUPS:
        group.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or debug_requested()
    if args.command != "worker":  # the Faust worker configures its own logging
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("streamscore.librdkafka").setLevel(logging.DEBUG if debug else logging.CRITICAL)
    try:
        check_environment()
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("streamscore: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the edge: every error becomes one or two lines
        if debug:
            raise
        return failures.report(exc)


__all__ = ["build_parser", "main"]
