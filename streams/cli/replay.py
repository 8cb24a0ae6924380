"""``streamscore replay``: re-score a range of the features topic into another topic (backfill)."""

from __future__ import annotations

import argparse

from streams.cli.common import Subparsers, add_bootstrap, add_model, broker_settings, command


def add_parser(sub: Subparsers) -> None:
    p = command(
        sub,
        "replay",
        "re-score a range of the features topic into another topic",
        "Invalid records are counted, not dead-lettered again; no monitoring records are written.",
    )
    add_model(p)
    p.add_argument("--out-topic", required=True, metavar="TOPIC", help="topic to write the predictions to")
    p.add_argument("--topic", default=None, help="source topic (default: the features topic)")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--from-offset", type=int, default=None, metavar="N", help="in every partition")
    start.add_argument(
        "--from-time", default=None, metavar="TIME", help="epoch ms or RFC 3339 (record timestamps)"
    )
    p.add_argument("--to-offset", type=int, default=None, metavar="N", help="inclusive, in every partition")
    p.add_argument("--to-time", default=None, metavar="TIME", help="inclusive; epoch ms or RFC 3339")
    add_bootstrap(p)
    p.set_defaults(func=cmd_replay)


def epoch_ms(text: str | None) -> int | None:
    """Epoch milliseconds, or an RFC 3339 / ISO 8601 time."""
    if text is None:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    from datetime import UTC, datetime

    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def cmd_replay(args: argparse.Namespace) -> int:
    from scoring.model.bundle import ModelBundle
    from streams.services.score.replay import Range, replay

    settings = broker_settings(args, model_path=args.model, topic_features=args.topic)
    span = Range(args.from_offset, epoch_ms(args.from_time), args.to_offset, epoch_ms(args.to_time))
    stats = replay(settings, ModelBundle.load(args.model), args.out_topic, span)
    print(
        f"replayed {stats.read:,} records of {settings.topic_features} into {args.out_topic}: "
        f"{stats.scored:,} scored, {stats.invalid:,} invalid (not dead-lettered again)"
    )
    for partition, (first, last) in sorted(stats.partitions.items()):
        print(f"  partition {partition}: offsets {first}..{last}")
    return 0
