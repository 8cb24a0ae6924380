"""``streamscore``: the one command-line entry point.

Settings are read here, once: ``STREAMSCORE_*`` environment variables, overridden
by flags, then passed down.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from pydantic import ValidationError

from scoring.errors import ScoringError
from streams.settings import Settings


def _settings(args: argparse.Namespace, **extra) -> Settings:
    overrides = {k: v for k, v in extra.items() if v is not None}
    if getattr(args, "bootstrap", None):
        overrides["kafka_bootstrap"] = args.bootstrap
    return Settings(**overrides)


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


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.worker import run_worker

    settings = _settings(
        args, model_path=args.model, score_path=args.score_path, web_port=args.web_port, group_id=args.group
    )
    run_worker(settings, loglevel=args.loglevel)
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    import orjson

    from scoring.synthetic import agrawal_frame, events_from_frame, interleave_invalid
    from scoring.training import read_table
    from streams.kafka.producer import event_payloads, produce_payloads

    settings = _settings(args)
    if args.synthetic:
        frame = agrawal_frame(args.synthetic, seed=args.seed).drop(columns=["approved"])
        events = list(events_from_frame(frame, prefix=args.prefix))
        mixed = interleave_invalid(events, args.invalid, feature="salary", seed=args.seed)
        payloads = [(str(e.get("entity_id", "")).encode(), p) for _, e, p in mixed]
    elif args.data and args.data.suffix == ".jsonl":
        lines = [line for line in args.data.read_bytes().splitlines() if line.strip()]
        payloads = [(str(orjson.loads(line).get("entity_id", "")).encode(), line) for line in lines]
    elif args.data:
        frame = read_table(args.data).drop(columns=args.drop or [], errors="ignore")
        payloads = list(event_payloads(events_from_frame(frame, prefix=args.prefix)))
    else:
        print("give DATA or --synthetic N", file=sys.stderr)
        return 2
    count = produce_payloads(settings, payloads, rate=args.rate)
    print(f"produced {count} events to {settings.topic_features} at {settings.kafka_bootstrap}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from scoring.training import read_table, train_bundle

    frame = read_table(args.data)
    with Progress(transient=True) as progress:
        task = progress.add_task("training", total=args.trees)
        bundle = train_bundle(
            frame,
            args.target,
            args.out,
            task=args.task,
            name=args.name,
            version=args.version,
            num_trees=args.trees,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    print(f"bundle {bundle.name} version {bundle.version} written to {args.out}")
    if args.report:
        from scoring.report import ReportInput, build_report
        from scoring.training import holdout_split

        labelled = frame.dropna(subset=[args.target]).reset_index(drop=True)
        holdout, _ = holdout_split(len(labelled))
        rows = labelled.iloc[holdout]
        data = ReportInput(rows.drop(columns=[args.target]), rows[args.target].to_numpy(float), "the holdout")
        args.report.write_text(build_report(bundle, data))
        print(f"report on the {len(rows):,} holdout rows written to {args.report}")
    for metric, value in sorted(bundle.metrics.items()):
        print(f"  {metric:>14}: {value:.6g}")
    return 0


def cmd_score_file(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from scoring.batch_file import score_frame
    from scoring.bundle import ModelBundle
    from scoring.training import read_table

    bundle = ModelBundle.load(args.model)
    frame = read_table(args.data)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"scoring {len(frame):,} rows", total=len(frame))
        scored, rejects = score_frame(bundle, frame, args.id_column, lambda n: progress.advance(task, n))
    _write_table(scored, args.out)
    rejects_path = args.rejects or args.out.with_name(args.out.stem + ".rejects.csv")
    rejects.to_csv(rejects_path, index=False)
    print(f"{len(scored):,} rows scored with {bundle.name} {bundle.version} -> {args.out}")
    print(f"{len(rejects):,} rows rejected -> {rejects_path}")
    return 0


def _write_table(frame, path: Path) -> None:
    if path.suffix.lower() in {".parquet", ".pq"}:
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def cmd_explain(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from scoring.bundle import ModelBundle
    from scoring.errors import InvalidEvent
    from streams.services.handler import ScoreHandler

    handler = ScoreHandler(_settings(args), ModelBundle.load(args.model))
    value = sys.stdin.buffer.read() if str(args.event) == "-" else args.event.read_bytes()
    try:
        result = handler.explain_event(value)
    except InvalidEvent as exc:
        print(f"invalid event ({exc.stage.value}): {exc.reason}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    e = result["explanation"]
    table = Table(title=f"{result['event_id']}: score {result['score']:.4f} (raw {e['raw_score']:.4f})")
    for column in ("feature", "value", "contribution"):
        table.add_column(column)
    table.add_row("(bias)", "", f"{e['bias']:+.4f}")
    for c in e["top"]:
        table.add_row(c["feature"], str(c["value"]), f"{c['contribution']:+.4f}")
    Console().print(table)
    return 0


def _epoch_ms(text: str | None) -> int | None:
    """Epoch milliseconds, or an RFC 3339 / ISO 8601 time."""
    if text is None:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    from datetime import UTC, datetime

    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def cmd_replay(args: argparse.Namespace) -> int:
    from scoring.bundle import ModelBundle
    from streams.services.replay import Range, replay

    settings = _settings(args, model_path=args.model, topic_features=args.topic)
    span = Range(args.from_offset, _epoch_ms(args.from_time), args.to_offset, _epoch_ms(args.to_time))
    stats = replay(settings, ModelBundle.load(args.model), args.out_topic, span)
    print(
        f"replayed {stats.read:,} records of {settings.topic_features} into {args.out_topic}: "
        f"{stats.scored:,} scored, {stats.invalid:,} invalid (not dead-lettered again)"
    )
    for partition, (first, last) in sorted(stats.partitions.items()):
        print(f"  partition {partition}: offsets {first}..{last}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from scoring.bundle import ModelBundle
    from scoring.report import ReportInput, build_report

    bundle = ModelBundle.load(args.model)
    if args.from_topics:
        from streams.services.labelled import Skipped, labelled_from_topics

        settings = _settings(args)
        frame, y = labelled_from_topics(settings, bundle, args.from_topics, skipped=(skipped := Skipped()))
        print(f"records skipped (not readable): {skipped}")
        source = (
            f"the last {len(y):,} labelled events on {settings.topic_monitor} and {settings.topic_labels}"
        )
    else:
        from scoring.training import read_table

        if not args.target:
            print("--data needs --target", file=sys.stderr)
            return 2
        table = read_table(args.data).dropna(subset=[args.target])
        frame, y, source = (
            table.drop(columns=[args.target]),
            table[args.target].to_numpy(float),
            str(args.data),
        )
    if len(y) == 0:
        print("no labelled rows to report on", file=sys.stderr)
        return 2
    data = ReportInput(frame, y, source, tuple(args.segment or ()), args.sensitive)
    args.out.write_text(build_report(bundle, data))
    print(f"report on {len(y):,} labelled rows written to {args.out}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from confluent_kafka.admin import AdminClient
    from rich.console import Console
    from rich.table import Table

    from streams.kafka.config import admin_config
    from streams.kafka.lag import group_lag, list_groups

    settings = _settings(args)
    admin = AdminClient(admin_config(settings))
    groups = args.group_id or list_groups(admin, args.prefix)
    console = Console()
    before = {(r.group, r.topic, r.partition): r.lag for r in group_lag(settings, groups, with_seconds=False)}
    for round_ in range(args.rounds):
        time.sleep(args.interval)
        rows = group_lag(settings, groups)
        table = Table(title=f"consumer groups on {settings.kafka_bootstrap}")
        for column in ("group", "topic", "partition", "committed", "end", "lag", "lag s", "lag change /s"):
            table.add_column(column, justify="left" if column in ("group", "topic") else "right")
        for r in rows:
            change = (r.lag - before.get((r.group, r.topic, r.partition), r.lag)) / args.interval
            seconds = "" if r.lag_seconds is None else f"{r.lag_seconds:.1f}"
            table.add_row(r.group, r.topic, str(r.partition), str(r.committed), str(r.end), str(r.lag),
                          seconds, f"{change:+,.0f}")  # fmt: skip
        total = sum(r.lag for r in rows)
        console.print(table)
        console.print(
            f"total lag {total:,}" + (f" (round {round_ + 1} of {args.rounds})" if args.rounds > 1 else "")
        )
        before = {(r.group, r.topic, r.partition): r.lag for r in rows}
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from schemas.lifecycle import ChallengerMode
    from scoring.registry import ModelRegistry
    from streams.services.control import live_update
    from streams.services.model_commands import model_name, run_command

    settings = _settings(args, registry=args.registry)
    registry = ModelRegistry(settings.registry_root)
    console = Console()
    action = args.model_command
    if action == "register":
        ref = registry.register(args.bundle)
        print(f"registered {ref.name} version {ref.version} at {ref.uri}")
        return 0
    if action == "describe":
        print(json.dumps(registry.describe(model_name(settings, args.name), args.version), indent=2))
        return 0
    if action == "list":
        from streams.kafka.topics import ensure_topics

        ensure_topics(settings)
        models = registry.models(args.name)
        live = {}
        for name in sorted({m.ref.name for m in models}):
            live[name], _ = live_update(settings, name)
        table = Table(title=f"registry {registry.root}")
        for column in ("name", "version", "created", "task", "holdout metrics", "live"):
            table.add_column(column)
        for m in models:
            update = live.get(m.ref.name)
            role = ""
            if update is not None and update.champion == m.ref:
                role = "champion"
            elif update is not None and update.challenger == m.ref:
                role = f"challenger ({update.mode.value if update.mode else ''})"
            shown = ", ".join(f"{k} {v:.4g}" for k, v in m.metrics.items() if not k.endswith("_rows"))
            table.add_row(m.ref.name, m.ref.version, m.created_at[:19], m.task, shown, role)
        console.print(table)
        return 0
    if action == "compare":
        return _compare(settings, args)
    if action == "publish-challenger":
        return _publish_challenger(settings, args)
    if action == "challenger":
        mode = ChallengerMode.shadow if args.shadow else ChallengerMode.split
        update = run_command(settings, "challenger", args.name, args.version, mode, args.share, args.reason)
    else:
        version = getattr(args, "version", None)
        update = run_command(settings, action.replace("-", "_"), args.name, version, reason=args.reason)
    challenger = f"; challenger {update.challenger.version} ({update.mode})" if update.challenger else ""
    print(f"published {update.action}: champion {update.champion.name} {update.champion.version}{challenger}")
    return 0


def _compare(settings: Settings, args: argparse.Namespace) -> int:
    from scoring.registry import load_ref
    from streams.services.control import live_update
    from streams.services.labelled import compare_from_topics
    from streams.services.model_commands import model_name, run_command

    name = model_name(settings, args.name)
    current, _ = live_update(settings, name)
    if current is None:
        raise ScoringError(f"{name} has no deployed champion")
    challenger = args.version or (current.challenger.version if current.challenger else None)
    if challenger is None:
        raise ScoringError("no challenger is serving; name the version to compare with")
    comparison = compare_from_topics(settings, load_ref(current.champion), challenger, args.alpha)
    print("\n".join(comparison.lines()))
    if comparison.winner == "challenger" and (args.promote or settings.auto_promote):
        update = run_command(settings, "promote", name, challenger, reason="won model compare")
        print(f"promoted {update.champion.version}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    import tempfile

    from schemas.lifecycle import ChallengerMode
    from streams.services.labelled import Skipped
    from streams.services.model_commands import retrain_from_topics, run_command

    settings, skipped = _settings(args, registry=args.registry), Skipped()
    with tempfile.TemporaryDirectory(prefix="streamscore-retrain-") as scratch:
        ref, metrics = retrain_from_topics(
            settings, args.name, args.from_topics, args.trees, args.version, Path(scratch), skipped
        )
    print(f"records skipped (not readable): {skipped}")
    print(f"registered {ref.name} version {ref.version}")
    for metric, value in sorted(metrics.items()):
        print(f"  {metric:>14}: {value:.6g}")
    if args.deploy:
        run_command(settings, "deploy", ref.name, ref.version, reason="retrained")
        print(f"deployed {ref.version}")
    elif args.shadow:
        run_command(settings, "challenger", ref.name, ref.version, ChallengerMode.shadow, reason="retrained")
        print(f"{ref.version} scores in shadow beside the champion")
    return 0


def _publish_challenger(settings: Settings, args: argparse.Namespace) -> int:
    import tempfile

    from schemas.lifecycle import ChallengerMode
    from streams.services.model_commands import publish_challenger, run_command

    with tempfile.TemporaryDirectory(prefix="streamscore-challenger-") as scratch:
        ref, export = publish_challenger(settings, args.name, args.version, Path(scratch))
    print(f"registered the River challenger as {ref.name} version {ref.version} ({export.labels:,} labels)")
    for metric, value in sorted(export.metrics.items()):
        print(f"  progressive {metric:>10}: {value:.6g}")
    if args.deploy:
        run_command(settings, "deploy", ref.name, ref.version, reason="River challenger")
        print(f"deployed {ref.version}")
    elif args.shadow or args.split:
        mode = ChallengerMode.shadow if args.shadow else ChallengerMode.split
        run_command(
            settings, "challenger", ref.name, ref.version, mode, args.split or 0.0, "River challenger"
        )
        print(f"{ref.version} serves as a {mode.value} challenger")
    return 0


def cmd_schemas_export(args: argparse.Namespace) -> int:
    from schemas.export import export_json_schemas

    for path in export_json_schemas(args.dir):
        print(path)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.cli.demo import run_demo

    return run_demo(events=args.events, invalid=args.invalid)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamscore", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("broker", help="start the embedded Tansu broker on loopback")
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("worker", help="run a scoring worker")
    p.add_argument("--model", type=Path, default=None, help="model bundle directory")
    p.add_argument("--bootstrap", default=None)
    p.add_argument("--score-path", choices=["batch", "agent"], default=None)
    p.add_argument("--web-port", type=int, default=None)
    p.add_argument("--group", default=None, help="consumer group id")
    p.add_argument("-l", "--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"])
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("produce", help="write feature events to the features topic")
    p.add_argument("data", type=Path, nargs="?", help=".jsonl events, or a .csv/.parquet table")
    p.add_argument("--synthetic", type=int, default=0, help="N Agrawal loan-application events")
    p.add_argument("--invalid", type=int, default=0, help="with --synthetic: add N invalid events")
    p.add_argument("--drop", nargs="*", help="table columns to leave out (the target)")
    p.add_argument(
        "--rate", type=float, default=None, help="events per second (default: as fast as possible)"
    )
    p.add_argument("--prefix", default="evt", help="event_id prefix")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--bootstrap", default=None)
    p.set_defaults(func=cmd_produce)

    p = sub.add_parser("train", help="train a LightGBM model bundle from a CSV or Parquet file")
    p.add_argument("data", type=Path)
    p.add_argument("--target", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--task", choices=["binary", "regression"], default="binary")
    p.add_argument("--name", default="model")
    p.add_argument("--version", default="1")
    p.add_argument("--trees", type=int, default=100)
    p.add_argument("--report", type=Path, default=None, help="also write an HTML report on the holdout")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("score-file", help="score a CSV or Parquet table with the stream's validation")
    p.add_argument("data", type=Path)
    p.add_argument("--model", type=Path, required=True, help="model bundle directory")
    p.add_argument("--out", type=Path, required=True, help=".csv or .parquet")
    p.add_argument("--id-column", default=None, help="column holding event ids (else row-N)")
    p.add_argument("--rejects", type=Path, default=None, help="default: OUT.rejects.csv")
    p.set_defaults(func=cmd_score_file)

    p = sub.add_parser("explain", help="score one event and show every feature's contribution")
    p.add_argument("event", type=Path, help="a feature event JSON file, or - for standard input")
    p.add_argument("--model", type=Path, required=True, help="model bundle directory")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("replay", help="re-score a range of the features topic into another topic")
    p.add_argument("--model", type=Path, required=True, help="model bundle directory")
    p.add_argument("--out-topic", required=True)
    p.add_argument("--topic", default=None, help="source topic (default: the features topic)")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument("--from-offset", type=int, default=None, help="in every partition")
    start.add_argument("--from-time", default=None, help="epoch ms or RFC 3339 (record timestamps)")
    p.add_argument("--to-offset", type=int, default=None, help="inclusive, in every partition")
    p.add_argument("--to-time", default=None, help="inclusive; epoch ms or RFC 3339")
    p.add_argument("--bootstrap", default=None)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("report", help="write a self-contained HTML model report")
    p.add_argument("--model", type=Path, required=True, help="model bundle directory")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="a labelled CSV or Parquet table (with --target)")
    source.add_argument(
        "--from-topics", type=int, metavar="N", help="the last N labelled events on the topics"
    )
    p.add_argument("--target", default=None, help="label column of --data")
    p.add_argument("--segment", action="append", help="feature to break KPIs down by (repeatable)")
    p.add_argument("--sensitive", default=None, help="feature for the fairness metrics")
    p.add_argument("--out", type=Path, required=True, help="the HTML file")
    p.add_argument("--bootstrap", default=None)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("status", help="consumer groups, committed and end offsets, lag, from the broker")
    p.add_argument("--group-id", action="append", help="a group to show (repeatable); default: all")
    p.add_argument("--prefix", default="", help="with no --group-id: groups whose id starts with this")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between samples (lag change /s)")
    p.add_argument("--rounds", type=int, default=1, help="print this many samples")
    p.add_argument("--bootstrap", default=None)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("model", help="registry and lifecycle: list, deploy, rollback, promote, ...")
    model_sub = p.add_subparsers(dest="model_command", required=True)

    def model_parser(name: str, help_: str, version: bool | str = False) -> argparse.ArgumentParser:
        m = model_sub.add_parser(name, help=help_)
        m.add_argument("--name", default=None, help="model name (default: the registry's only one)")
        m.add_argument("--registry", default=None, help="registry root (default: DATA_DIR/registry)")
        m.add_argument("--bootstrap", default=None)
        m.add_argument("--reason", default="", help="recorded with the update")
        if version is True:
            m.add_argument("version")
        elif version:
            m.add_argument("version", nargs="?", default=None, help=version)
        m.set_defaults(func=cmd_model)
        return m

    m = model_sub.add_parser("register", help="copy a bundle directory into the registry")
    m.add_argument("bundle", type=Path)
    m.add_argument("--registry", default=None)
    m.set_defaults(func=cmd_model, name=None, bootstrap=None)
    model_parser("list", "registered versions and which serve")
    model_parser("describe", "metadata, metrics and manifest of a version", version=True)
    model_parser("deploy", "make a version the champion on every worker", version=True)
    model_parser("rollback", "serve the previous champion again")
    model_parser(
        "promote", "make the challenger (or VERSION) the champion", version="default: the challenger"
    )
    m = model_parser("challenger", "serve a version beside the champion", version=True)
    m.add_argument("--share", type=float, default=0.5, help="split: share of entities it serves")
    m.add_argument("--shadow", action="store_true", help="score every event, publish only the champion's")
    model_parser("clear-challenger", "stop the challenger")
    m = model_parser("publish-challenger", "register the River challenger as a servable version")
    m.add_argument("--version", default=None, help="default: one past the highest integer version")
    then = m.add_mutually_exclusive_group()
    then.add_argument("--deploy", action="store_true")
    then.add_argument("--shadow", action="store_true")
    then.add_argument("--split", type=float, default=None, metavar="SHARE")
    m = model_parser(
        "compare", "champion vs challenger on labelled events, with a test", version="challenger"
    )
    m.add_argument("--alpha", type=float, default=0.01)
    m.add_argument("--promote", action="store_true", help="promote the challenger if it wins")

    p = sub.add_parser("retrain", help="train a new version on labelled events read back from the topics")
    p.add_argument("--from-topics", type=int, default=20_000, metavar="N", help="the last N labelled events")
    p.add_argument("--name", default=None, help="model name (default: the registry's only one)")
    p.add_argument("--version", default=None, help="default: one past the highest integer version")
    p.add_argument("--trees", type=int, default=100)
    p.add_argument("--registry", default=None)
    p.add_argument("--bootstrap", default=None)
    then = p.add_mutually_exclusive_group()
    then.add_argument("--deploy", action="store_true", help="deploy it through the gate")
    then.add_argument("--shadow", action="store_true", help="run it as a shadow challenger")
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser("schemas", help="message schemas")
    schema_sub = p.add_subparsers(dest="schemas_command", required=True)
    e = schema_sub.add_parser("export", help="write the JSON Schema of every message to DIR")
    e.add_argument("dir", type=Path)
    e.set_defaults(func=cmd_schemas_export)

    p = sub.add_parser("demo", help="broker, demo model, worker, events, live counts; then stop")
    p.add_argument("--events", type=int, default=20000)
    p.add_argument("--invalid", type=int, default=200)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "worker":  # the Faust worker configures its own logging
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (ScoringError, ValidationError) as exc:
        print(f"streamscore: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
