"""``streamscore produce`` and ``produce-labels``: a table's rows (or made-up ones) to the topics.

Both read a table's own event ids, entity ids and times when named (``--id-column``,
``--entity-column``, ``--time-column``) and invent the rest the same way, row by row
(``scoring.offline.events``), so the labels of a table join the events produced from it;
the first line printed says what was invented. Events are keyed by entity id, and so are
labels, as the scale-out contract says (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from streams.cli.common import Subparsers, add_bootstrap, add_hidden_alias, broker_settings, command

COLUMNS_HELP = {
    "--id-column": "table column holding each row's event id (default: invented, PREFIX-0, PREFIX-1, ...)",
    "--entity-column": "table column holding each row's entity id, the Kafka key (default: cust-0..cust-999)",
    "--time-column": "table column holding each row's time: epoch ms, ISO 8601 or a datetime "
    "(default: now + 1 ms per row, or per 1/RATE s with --rate)",
}
KEYED_BY_EVENT = (
    "labels keyed by event id (no --entity-column): they join with one learn worker; key them by entity "
    "(--entity-column) before adding learn workers (docs/scaling.md)"
)


def add_parser(sub: Subparsers) -> None:
    p = command(
        sub,
        "produce",
        "write feature events to the features topic",
        "From a .jsonl file of events, a .csv/.parquet table (one event per row), or --synthetic N\n"
        "loan applications made up in the run. A table's own ids, entities and times are taken with\n"
        "--id-column, --entity-column and --time-column; the first line says what is invented.",
    )
    p.add_argument("data", type=Path, nargs="?", help=".jsonl events, or a .csv/.parquet table")
    p.add_argument("--synthetic", type=int, default=0, metavar="N", help="N made-up loan-application events")
    p.add_argument(
        "--invalid", type=int, default=0, metavar="K", help="with --synthetic: mix in K invalid events"
    )
    p.add_argument("--drop", nargs="*", metavar="COLUMN", help="table columns to leave out (the target)")
    _add_table_options(p)
    p.add_argument("--seed", type=int, default=7, help="random seed of --synthetic and --invalid (default 7)")
    add_bootstrap(p)
    p.set_defaults(func=cmd_produce)

    labels = command(
        sub,
        "produce-labels",
        "write labels (ground truth) of a table's rows to the labels topic",
        "One label per row of a .csv/.parquet table, for the event `streamscore produce` made of\n"
        "the same row: name the same --id-column and --entity-column (or none, for the invented\n"
        "ones). Keyed by entity id, as several learn workers need (docs/scaling.md).",
    )
    labels.add_argument("data", type=Path, metavar="TABLE", help="a .csv/.parquet table")
    labels.add_argument(
        "--label-column", required=True, metavar="COLUMN", help="the column holding the labels (numbers, 0/1)"
    )
    _add_table_options(
        labels, {"--time-column": "table column holding each label's time (default: now + N ms)"}
    )
    add_bootstrap(labels)
    labels.set_defaults(func=cmd_produce_labels)


def _add_table_options(p: argparse.ArgumentParser, helps: dict[str, str] | None = None) -> None:
    for flag, text in {**COLUMNS_HELP, **(helps or {})}.items():
        p.add_argument(flag, default=None, metavar="COLUMN", help=text)
    p.add_argument(
        "--rate", type=float, default=None, help="records per second (default: as fast as possible)"
    )
    p.add_argument(
        "--id-prefix",
        default="evt",
        metavar="PREFIX",
        help="invented event ids: PREFIX-0, PREFIX-1, ... (default evt)",
    )
    add_hidden_alias(p, "--prefix", "id_prefix")


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


def cmd_produce_labels(args: argparse.Namespace) -> int:
    import orjson

    from scoring.offline.events import invented, keyed_by_event, labels_from_table
    from scoring.offline.tables import read_table
    from streams.kafka.producer import produce_payloads

    keys, now_ms, step_ms = _keys(args), int(time.time() * 1000), _step_ms(args)
    labels, unlabelled = labels_from_table(
        read_table(args.data), keys, args.label_column, now_ms, step_ms, str(args.data)
    )
    if note := invented(keys, now_ms, step_ms, what="label"):
        print(note, flush=True)
    if keyed_by_event(keys):
        print(KEYED_BY_EVENT, flush=True)
    if unlabelled:
        print(f"{unlabelled} rows have no {args.label_column!r}: no label sent for them", flush=True)
    settings = broker_settings(args)
    payloads = ((key.encode(), orjson.dumps(body)) for key, body in labels)
    count = produce_payloads(settings, payloads, rate=args.rate, topic=settings.topic_labels)
    print(f"produced {count} labels to {settings.topic_labels} at {settings.kafka_bootstrap}")
    return 0


def _keys(args: argparse.Namespace):
    from scoring.offline.events import TableKeys

    return TableKeys(args.id_column, args.entity_column, args.time_column, args.id_prefix)


def _step_ms(args: argparse.Namespace) -> float:
    """Invented times: 1 ms a row, or as far apart as --rate sends the rows."""
    return 1000 / args.rate if args.rate else 1.0


def _synthetic(args: argparse.Namespace) -> list[tuple[bytes, bytes | None]]:
    from scoring.offline.events import TableKeys, events_from_table, invented
    from scoring.offline.synthetic import agrawal_frame, interleave_invalid

    _no_columns(args, "--synthetic")
    keys, now_ms, step_ms = TableKeys(prefix=args.id_prefix), int(time.time() * 1000), _step_ms(args)
    frame = agrawal_frame(args.synthetic, seed=args.seed).drop(columns=["approved"])
    events = list(events_from_table(frame, keys, now_ms, step_ms))
    print(invented(keys, now_ms, step_ms, hint=False), flush=True)
    mixed = interleave_invalid(events, args.invalid, feature="salary", seed=args.seed)
    return [(str(e.get("entity_id", "")).encode(), p) for _, e, p in mixed]


def _from_file(args: argparse.Namespace) -> list[tuple[bytes, bytes]]:
    import orjson

    from scoring.offline.events import events_from_table, invented
    from scoring.offline.tables import read_table, readable_file
    from streams.kafka.producer import event_payloads

    if args.data.suffix == ".jsonl":
        _no_columns(args, "a .jsonl file of events")
        lines = [line for line in readable_file(args.data).read_bytes().splitlines() if line.strip()]
        return [(str(orjson.loads(line).get("entity_id", "")).encode(), line) for line in lines]
    keys, now_ms, step_ms = _keys(args), int(time.time() * 1000), _step_ms(args)
    frame = read_table(args.data).drop(columns=args.drop or [], errors="ignore")
    payloads = list(event_payloads(events_from_table(frame, keys, now_ms, step_ms, str(args.data))))
    if note := invented(keys, now_ms, step_ms):
        print(note, flush=True)
    return payloads


def _no_columns(args: argparse.Namespace, what: str) -> None:
    from scoring.errors import ConfigError

    named = [f for f in COLUMNS_HELP if getattr(args, f[2:].replace("-", "_"))]
    if named:
        raise ConfigError(f"{named[0]} names a table column; {what} has none (give a .csv/.parquet table)")
