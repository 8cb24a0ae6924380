"""``streamscore status``: consumer groups, offsets and lag from the broker; estimated KPIs from ``drift``,
and the last window checked against the realized KPIs from ``metrics``."""

from __future__ import annotations

import argparse
import time

from streams.cli.common import Subparsers, add_bootstrap, add_hidden_alias, broker_settings, command

COLUMNS = ("group", "topic", "partition", "committed", "end", "lag", "lag s", "lag change /s")


def add_parser(sub: Subparsers) -> None:
    p = command(
        sub,
        "status",
        "consumer groups, committed and end offsets, lag; the latest estimated KPIs per model",
        "Works against any Kafka-protocol cluster: it reads the broker alone, no worker needed.",
    )
    p.add_argument(
        "--group", action="append", metavar="GROUP", help="a group to show (repeatable; default: all)"
    )
    add_hidden_alias(p, "--group-id", "group", action="append")
    p.add_argument("--prefix", default="", help="with no --group: groups whose id starts with this")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between samples (default 1)")
    p.add_argument("--rounds", type=int, default=1, help="print this many samples (default 1)")
    add_bootstrap(p)
    p.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    from confluent_kafka.admin import AdminClient
    from rich.console import Console

    from streams.kafka.config import admin_config
    from streams.kafka.lag import group_lag, list_groups
    from streams.services.learn.estimates import check_line, estimate_line, latest_checks, latest_estimates

    settings = broker_settings(args)
    admin = AdminClient(admin_config(settings))
    groups = args.group or list_groups(admin, args.prefix)
    console = Console()
    before = {(r.group, r.topic, r.partition): r.lag for r in group_lag(settings, groups, with_seconds=False)}
    for round_ in range(args.rounds):
        time.sleep(args.interval)
        rows = group_lag(settings, groups)
        console.print(_table(f"consumer groups on {settings.kafka_bootstrap}", rows, before, args.interval))
        total = sum(r.lag for r in rows)
        console.print(
            f"total lag {total:,}" + (f" (round {round_ + 1} of {args.rounds})" if args.rounds > 1 else "")
        )
        before = {(r.group, r.topic, r.partition): r.lag for r in rows}
    checks = latest_checks(settings)  # the last window of each model version checked against labels
    for estimate in latest_estimates(settings):  # the last drift window of each model version
        console.print(estimate_line(estimate), highlight=False, soft_wrap=True)
        check = checks.get((estimate.model_name, estimate.model_version))
        if check is not None:
            console.print(check_line(check), highlight=False, soft_wrap=True)
    return 0


def _table(title: str, rows: list, before: dict, interval: float):
    from rich.table import Table

    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("group", "topic") else "right")
    for r in rows:
        change = (r.lag - before.get((r.group, r.topic, r.partition), r.lag)) / interval
        seconds = "" if r.lag_seconds is None else f"{r.lag_seconds:.1f}"
        table.add_row(r.group, r.topic, str(r.partition), str(r.committed), str(r.end), str(r.lag),
                      seconds, f"{change:+,.0f}")  # fmt: skip
    return table
