"""``streamscore produce``: write feature events to the features topic, from a file or made up."""

from __future__ import annotations

import argparse
from pathlib import Path

from streams.cli.common import Subparsers, add_bootstrap, add_hidden_alias, broker_settings, command


def add_parser(sub: Subparsers) -> None:
    p = command(
        sub,
        "produce",
        "write feature events to the features topic",
        "From a .jsonl file of events, a .csv/.parquet table (one event per row), or --synthetic N\n"
        "loan applications made up in the run.",
    )
    p.add_argument("data", type=Path, nargs="?", help=".jsonl events, or a .csv/.parquet table")
    p.add_argument("--synthetic", type=int, default=0, metavar="N", help="N made-up loan-application events")
    p.add_argument(
        "--invalid", type=int, default=0, metavar="K", help="with --synthetic: mix in K invalid events"
    )
    p.add_argument("--drop", nargs="*", metavar="COLUMN", help="table columns to leave out (the target)")
    p.add_argument(
        "--rate", type=float, default=None, help="events per second (default: as fast as possible)"
    )
    p.add_argument(
        "--id-prefix", default="evt", help="event_id prefix: PREFIX-0, PREFIX-1, ... (default evt)"
    )
    add_hidden_alias(p, "--prefix", "id_prefix")
    p.add_argument("--seed", type=int, default=7, help="random seed of --synthetic and --invalid (default 7)")
    add_bootstrap(p)
    p.set_defaults(func=cmd_produce)


def cmd_produce(args: argparse.Namespace) -> int:
    from scoring.errors import ConfigError
    from streams.kafka.producer import produce_payloads

    if not args.synthetic and not args.data:
        raise ConfigError("give a DATA file (.jsonl, .csv or .parquet) or --synthetic N")
    payloads = _synthetic(args) if args.synthetic else _from_file(args)
    settings = broker_settings(args)
    count = produce_payloads(settings, payloads, rate=args.rate)
    print(f"produced {count} events to {settings.topic_features} at {settings.kafka_bootstrap}")
    return 0


def _synthetic(args: argparse.Namespace) -> list[tuple[bytes, bytes | None]]:
    from scoring.offline.synthetic import agrawal_frame, events_from_frame, interleave_invalid

    frame = agrawal_frame(args.synthetic, seed=args.seed).drop(columns=["approved"])
    events = list(events_from_frame(frame, prefix=args.id_prefix))
    mixed = interleave_invalid(events, args.invalid, feature="salary", seed=args.seed)
    return [(str(e.get("entity_id", "")).encode(), p) for _, e, p in mixed]


def _from_file(args: argparse.Namespace) -> list[tuple[bytes, bytes]]:
    import orjson

    from scoring.offline.synthetic import events_from_frame
    from scoring.offline.tables import read_table, readable_file
    from streams.kafka.producer import event_payloads

    if args.data.suffix == ".jsonl":
        lines = [line for line in readable_file(args.data).read_bytes().splitlines() if line.strip()]
        return [(str(orjson.loads(line).get("entity_id", "")).encode(), line) for line in lines]
    frame = read_table(args.data).drop(columns=args.drop or [], errors="ignore")
    return list(event_payloads(events_from_frame(frame, prefix=args.id_prefix)))
