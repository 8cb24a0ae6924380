"""Commands on tables and single events, no worker needed: train, score-file, explain, report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from streams.cli.common import (
    FROM_TOPICS_HELP,
    TREES_HELP,
    Subparsers,
    add_bootstrap,
    add_model,
    broker_settings,
    command,
    settings_from,
    write_table,
)


def add_parser(sub: Subparsers) -> None:
    _add_train(sub)
    _add_score_file(sub)
    _add_explain(sub)
    _add_report(sub)


def _add_train(sub: Subparsers) -> None:
    p = command(
        sub,
        "train",
        "train a LightGBM model bundle from a CSV or Parquet table",
        "Every column but the target is a feature: numbers are numeric, strings categorical,\n"
        "booleans two-valued (false/true). 20% of the rows are held out for the metrics printed.\n"
        "A model trained elsewhere is served as it is with `streamscore model import`.",
    )
    p.add_argument("data", type=Path, metavar="DATA", help="a labelled .csv or .parquet table")
    p.add_argument(
        "--target",
        required=True,
        metavar="COLUMN",
        help="the label column (0/1 for binary; class names, strings or integers, for multiclass)",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="bundle directory to write")
    p.add_argument(
        "--task", choices=["binary", "multiclass", "regression"], default="binary", help="default binary"
    )
    p.add_argument(
        "--name", default=None, help="model name recorded in the bundle (default: the --out directory's)"
    )
    p.add_argument("--version", default="1", help="version recorded in the bundle (default 1)")
    p.add_argument("--trees", type=int, default=None, help=f"{TREES_HELP}, at most (default 100)")
    p.add_argument(
        "--params",
        type=Path,
        default=None,
        metavar="FILE",
        help="LightGBM parameters, a JSON (or, with PyYAML, YAML) mapping; the rest keep the defaults",
    )
    p.add_argument(
        "--early-stopping-rounds",
        type=int,
        default=None,
        metavar="N",
        help="stop after N rounds without improvement on the validation share; keep the best iteration",
    )
    p.add_argument(
        "--validation",
        type=float,
        default=None,
        metavar="SHARE",
        help="share of the training rows early stopping watches (default 0.1)",
    )
    p.add_argument(
        "--report", type=Path, default=None, metavar="HTML", help="also write a report on the holdout"
    )
    p.set_defaults(func=cmd_train)


def _add_score_file(sub: Subparsers) -> None:
    p = command(
        sub,
        "score-file",
        "score a CSV or Parquet table with the stream's validation and scorer",
        "Rows the stream would dead-letter go to the rejects file with the stage and the reason.",
    )
    p.add_argument("data", type=Path, metavar="DATA", help="a .csv or .parquet table of feature columns")
    add_model(p)
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="scores, .csv or .parquet")
    p.add_argument("--id-column", default=None, metavar="COLUMN", help="column of event ids (default row-N)")
    p.add_argument("--rejects", type=Path, default=None, metavar="CSV", help="default: OUT.rejects.csv")
    p.set_defaults(func=cmd_score_file)


def _add_explain(sub: Subparsers) -> None:
    p = command(sub, "explain", "score one event and show every feature's contribution (TreeSHAP)")
    p.add_argument("event", type=Path, metavar="EVENT", help="a feature event JSON file, or - for stdin")
    add_model(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--class",
        dest="class_name",
        default=None,
        metavar="NAME",
        help="multiclass: explain this class's score (default: the predicted class's)",
    )
    p.set_defaults(func=cmd_explain)


def _add_report(sub: Subparsers) -> None:
    p = command(
        sub,
        "report",
        "write a self-contained HTML model report from labelled rows",
        "KPIs, importance, calibration, score distribution, segments, fairness, what-if curves.",
    )
    add_model(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data", type=Path, metavar="DATA", help="a labelled .csv or .parquet table (with --target)"
    )
    source.add_argument("--from-topics", type=int, metavar="N", help=FROM_TOPICS_HELP)
    p.add_argument("--target", default=None, metavar="COLUMN", help="the label column of --data")
    p.add_argument("--segment", action="append", metavar="FEATURE", help="break KPIs down by it (repeatable)")
    p.add_argument("--sensitive", default=None, metavar="FEATURE", help="feature for the fairness metrics")
    p.add_argument("--out", type=Path, required=True, metavar="HTML", help="the HTML file to write")
    add_bootstrap(p)
    p.set_defaults(func=cmd_report)


def cmd_train(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from scoring.errors import ConfigError, TrainingError
    from scoring.offline.params import read_params
    from scoring.offline.training import read_table, train_bundle

    if args.validation is not None and args.early_stopping_rounds is None:
        raise ConfigError("--validation is the share early stopping watches: give --early-stopping-rounds N")
    params = read_params(args.params) if args.params else None
    frame = read_table(args.data)
    with Progress(transient=True) as progress:
        task = progress.add_task("training", total=args.trees or 100)
        try:
            bundle = train_bundle(
                frame,
                args.target,
                args.out,
                task=args.task,
                name=args.name or args.out.resolve().name,
                version=args.version,
                num_trees=args.trees,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
                params=params,
                early_stopping_rounds=args.early_stopping_rounds,
                validation=0.1 if args.validation is None else args.validation,
            )
        except TrainingError as exc:
            raise TrainingError(f"{args.data}: {exc}") from exc
    print(f"bundle {bundle.name} version {bundle.version} written to {args.out}")
    _print_run(bundle)
    if args.report:
        _holdout_report(bundle, frame, args.target, args.report)
    for metric, value in sorted(bundle.metrics.items()):
        print(f"  {metric:>14}: {value:.6g}")
    return 0


def _print_run(bundle) -> None:
    """How the model was made, as the bundle's metadata records it."""
    from scoring.offline.params import shown

    run = bundle.metadata.training
    print(f"  LightGBM parameters: {shown(run.params)}")
    if run.early_stopping_rounds is None:
        print(f"  rounds: {run.best_iteration}")
        return
    stopped = "stopped early" if run.best_iteration < run.num_boost_round else "did not stop early"
    print(
        f"  early stopping: {run.early_stopping_rounds} rounds without improvement on "
        f"{run.rows['validation']:,} validation rows ({run.validation_share:.0%} of the training rows): "
        f"best iteration {run.best_iteration} of at most {run.num_boost_round} ({stopped})"
    )


def _holdout_report(bundle, frame, target: str, out: Path) -> None:
    from scoring.offline.training import holdout_split
    from scoring.report import ReportInput, build_report

    labelled = frame.dropna(subset=[target]).reset_index(drop=True)
    holdout, _ = holdout_split(len(labelled))
    rows = labelled.iloc[holdout]
    y = _labels(bundle, rows[target], "the holdout")
    data = ReportInput(rows.drop(columns=[target]), y, "the holdout")
    out.write_text(build_report(bundle, data))
    print(f"report on the {len(rows):,} holdout rows written to {out}")


def cmd_score_file(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from scoring.model.bundle import ModelBundle
    from scoring.offline.batch_file import score_frame
    from scoring.offline.training import read_table

    bundle = ModelBundle.load(args.model)
    frame = read_table(args.data)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"scoring {len(frame):,} rows", total=len(frame))
        scored, rejects = score_frame(bundle, frame, args.id_column, lambda n: progress.advance(task, n))
    write_table(scored, args.out)
    rejects_path = args.rejects or args.out.with_name(args.out.stem + ".rejects.csv")
    rejects.to_csv(rejects_path, index=False)
    print(f"{len(scored):,} rows scored with {bundle.name} {bundle.version} -> {args.out}")
    print(f"{len(rejects):,} rows rejected -> {rejects_path}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from scoring.errors import InvalidEvent
    from scoring.model.bundle import ModelBundle
    from scoring.offline.tables import readable_file
    from streams.services.score.handler import ScoreHandler

    handler = ScoreHandler(settings_from(args), ModelBundle.load(args.model))
    value = sys.stdin.buffer.read() if str(args.event) == "-" else readable_file(args.event).read_bytes()
    try:
        result = handler.explain_event(value, args.class_name)
    except InvalidEvent as exc:
        print(f"invalid event ({exc.stage.value}): {exc.reason}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    e = result["explanation"]
    title = f"{result['event_id']}: score {result['score']:.4f} (raw {e['raw_score']:.4f})"
    if "class_name" in e:  # multiclass: the class explained, and how likely each class is
        shown = ", ".join(f"{c} {p:.4f}" for c, p in result["probabilities"].items())
        title = (
            f"{result['event_id']}: class {result['label']} predicted ({shown}); contributions to class "
            f"{e['class_name']}'s raw score {e['raw_score']:.4f}"
        )
    table = Table(title=title)
    for column in ("feature", "value", "contribution"):
        table.add_column(column)
    table.add_row("(bias)", "", f"{e['bias']:+.4f}")
    for c in e["top"]:
        table.add_row(c["feature"], str(c["value"]), f"{c['contribution']:+.4f}")
    Console().print(table)
    return 0


def _labels(bundle, labels, where: str):
    """Labels as the report takes them: numbers, or a multiclass model's class indices."""
    import numpy as np

    from scoring.model.bundle import Task
    from scoring.report import class_indices

    if bundle.task is Task.multiclass:
        return class_indices(bundle, labels, where)
    return np.asarray(labels, dtype=float)


def cmd_report(args: argparse.Namespace) -> int:
    from scoring.errors import ConfigError
    from scoring.model.bundle import ModelBundle
    from scoring.report import ReportInput, build_report

    bundle = ModelBundle.load(args.model)
    checks: tuple = ()
    if args.from_topics:
        from streams.services.control.labelled import Skipped, labelled_from_topics
        from streams.services.learn.estimates import estimate_checks

        settings, skipped = broker_settings(args), Skipped()
        frame, y = labelled_from_topics(settings, bundle, args.from_topics, skipped=skipped)
        checks = tuple(estimate_checks(settings, bundle.name, bundle.version))
        print(f"records skipped (not readable): {skipped}")
        source = (
            f"the last {len(y):,} labelled events on {settings.topic_monitor} and {settings.topic_labels}"
        )
        y = _labels(bundle, y, settings.topic_labels)
    else:
        from scoring.offline.training import read_table

        if not args.target:
            raise ConfigError("--data needs --target COLUMN, the label column of the table")
        table = read_table(args.data)
        if args.target not in table.columns:
            columns = list(table.columns)
            raise ConfigError(f"{args.data}: no column {args.target!r} (--target); it has {columns}")
        table = table.dropna(subset=[args.target])
        frame, source = table.drop(columns=[args.target]), str(args.data)
        y = _labels(bundle, table[args.target], source)
    if len(y) == 0:
        raise ConfigError(f"no labelled rows to report on in {source}")
    data = ReportInput(frame, y, source, tuple(args.segment or ()), args.sensitive, estimate_checks=checks)
    args.out.write_text(build_report(bundle, data))
    print(f"report on {len(y):,} labelled rows written to {args.out}")
    return 0
