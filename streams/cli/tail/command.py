"""``streamscore tail TOPIC``: what a topic says, one readable line (or a JSON line) per record."""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from streams.cli.common import Subparsers, add_bootstrap, broker_settings, command, settings_from

if TYPE_CHECKING:
    from confluent_kafka import Message

    from streams.cli.tail.lines import Line, RecordView
    from streams.cli.tail.topics import TopicKind
    from streams.settings import Settings

Shown = tuple["RecordView", "Line"]

DETAILS = """\
TOPIC is a topic of the service by its role name (features, predictions, features.dlq,
monitor, labels, labels.dlq, monitor.dlq, drift, metrics, model-updates, alerts,
retrain-requests, checkpoints, drift-partials) or by the name STREAMSCORE_TOPIC_* gives it.
Reads from the end unless --from-beginning or --last N, until the topic is quiet (or, with
--follow, until Ctrl-C). A record that is not what its topic carries is shown as undecodable."""


def add_parser(sub: Subparsers) -> None:
    p = command(sub, "tail", "show what a topic says, one line per record", DETAILS)
    p.add_argument(
        "topic", metavar="TOPIC", help="role name (predictions, drift, metrics, ...) or topic name"
    )
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--from-beginning", action="store_true", help="from the first record of each partition"
    )
    start.add_argument(
        "--last", type=int, default=None, metavar="N", help="the last N records (that match the filters)"
    )
    p.add_argument("-f", "--follow", action="store_true", help="keep reading new records until Ctrl-C")
    p.add_argument("--json", action="store_true", help="each record as a JSON line: key, headers, value")
    p.add_argument("--entity", default=None, metavar="ID", help="only records about this entity id")
    p.add_argument("--model", default=None, metavar="NAME[:VERSION]", help="only records about this model")
    add_bootstrap(p)
    p.set_defaults(func=cmd_tail)


def cmd_tail(args: argparse.Namespace) -> int:
    from scoring.errors import ConfigError
    from streams.cli.tail.topics import check_filters, resolve

    if args.last is not None and args.last < 1:
        raise ConfigError("--last takes a number of records, 1 or more")
    topic, kind = resolve(settings_from(args), args.topic)  # a misspelt topic is said before any broker
    check_filters(kind, args.entity, args.model)
    settings = broker_settings(args)
    try:
        shown = _tail(settings, topic, kind, args)
    except KeyboardInterrupt:
        if not args.follow:
            raise
        print("streamscore: stopped", file=sys.stderr)
        return 0
    except BrokenPipeError:  # `streamscore tail ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if not shown and not args.follow:
        where = "since the start" if args.from_beginning or args.last else "since its end when this began"
        print(
            f"no records on {topic} {where}{' that match' if args.entity or args.model else ''}; "
            "--from-beginning or --last N shows earlier ones, --follow waits for new ones",
            file=sys.stderr,
        )
    return 0


def _tail(settings: Settings, topic: str, kind: TopicKind, args: argparse.Namespace) -> int:
    """Prints the records asked for; returns how many."""
    from streams.cli.tail.reading import records, start_positions
    from streams.kafka.readers import ReadCounts

    shown = 0
    if args.last:
        filtered = args.entity is not None or args.model is not None
        # with a filter, the last N that match may lie anywhere: read each partition whole
        start = start_positions(settings, topic, "beginning" if filtered else "last", args.last)
        counts = ReadCounts()
        shown += _show(_last(records(settings, topic, start, False, counts), kind, args), topic, args)
        if not args.follow:
            return shown
        start = counts.positions
    else:
        start = start_positions(settings, topic, "beginning" if args.from_beginning else "end")
    if args.follow:  # from here on every new record is shown
        where = "its start" if args.from_beginning else "where it ends now"
        print(f"following {topic} from {where}; Ctrl-C stops", file=sys.stderr, flush=True)
    return shown + _show(_matching(records(settings, topic, start, args.follow), kind, args), topic, args)


def _matching(messages: Iterable[Message], kind: TopicKind, args: argparse.Namespace) -> Iterator[Shown]:
    """(record, line) of each message that the filters keep."""
    from streams.cli.tail.lines import describe
    from streams.cli.tail.topics import matches

    for message in messages:
        record = _view(message)
        line = describe(kind.render, record)
        if matches(line, args.entity, args.model):
            yield record, line


def _last(messages: Iterable[Message], kind: TopicKind, args: argparse.Namespace) -> list[Shown]:
    """The last ``args.last`` matching records of the topic, oldest first (by broker timestamp)."""
    from collections import deque

    kept: dict[int, deque] = {}
    for record, line in _matching(messages, kind, args):
        kept.setdefault(record.partition, deque(maxlen=args.last)).append((record, line))
    every = [pair for pairs in kept.values() for pair in pairs]
    every.sort(key=lambda pair: (pair[0].timestamp or 0, pair[0].partition, pair[0].offset))
    return every[-args.last :]


def _show(pairs: Iterable[Shown], topic: str, args: argparse.Namespace) -> int:
    from streams.cli.tail.lines import show

    count = 0
    for record, line in pairs:
        print(_as_json(topic, record, line) if args.json else show(record, line), flush=True)
        count += 1
    return count


def _view(message: Message) -> RecordView:
    from streams.cli.tail.lines import RecordView

    kind, timestamp = message.timestamp()
    return RecordView(
        partition=message.partition(),
        offset=message.offset(),
        timestamp=timestamp if kind and timestamp >= 0 else None,
        key=message.key(),
        value=message.value(),
        headers=tuple(message.headers() or ()),
    )


def _as_json(topic: str, record: RecordView, line: Line) -> str:
    """The record as it is: its value as JSON when it is JSON, else in base64, and why not."""
    import orjson

    out = {
        "topic": topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": None if record.key is None else record.key.decode("utf-8", "replace"),
        "headers": {name: None if v is None else v.decode("utf-8", "replace") for name, v in record.headers},
        "value": None,
    }
    if record.value is not None:
        try:
            out["value"] = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            out["value_base64"] = base64.b64encode(record.value).decode()
    if line.undecodable is not None:
        out["undecodable"] = line.undecodable
    return orjson.dumps(out).decode()
