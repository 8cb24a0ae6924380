"""``streamscore model ...`` and ``streamscore retrain``: the registry and the serving lifecycle.

Which version serves lives on the compacted model-updates topic; every command that
changes it publishes the whole next serving state through the same gate the workers run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from streams.cli.common import (
    FROM_TOPICS_HELP,
    NAME_HELP,
    TREES_HELP,
    Subparsers,
    add_bootstrap,
    add_debug,
    add_registry,
    broker_settings,
    command,
    settings_from,
)
from streams.settings import Settings

OFFLINE_ACTIONS = ("register", "describe")  # the registry alone; every other action needs the broker
VERSION_HELP = "version to register (default: one past the highest integer version)"


def add_parser(sub: Subparsers) -> None:
    p = command(
        sub,
        "model",
        "registry and lifecycle: list, deploy, rollback, promote, challenger, compare",
        "`streamscore model ACTION --help` for an action's options.",
    )
    model_sub = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    _add_import(model_sub)
    _add_register(model_sub)
    _model_parser(model_sub, "list", "registered versions, their holdout metrics and which serve")
    _model_parser(model_sub, "describe", "metadata, metrics and manifest of a version", version="required")
    _model_parser(model_sub, "deploy", "make a version the champion on every worker", version="required")
    _model_parser(model_sub, "rollback", "serve the previous champion again")
    _model_parser(
        model_sub, "promote", "make the challenger (or VERSION) the champion", version="the challenger"
    )
    m = _model_parser(model_sub, "challenger", "serve a version beside the champion", version="required")
    m.add_argument(
        "--share", type=float, default=0.5, help="split mode: share of entities it serves (default 0.5)"
    )
    m.add_argument("--shadow", action="store_true", help="score every event, publish only the champion's")
    _model_parser(model_sub, "clear-challenger", "stop the challenger")
    m = _model_parser(model_sub, "publish-challenger", "register the River challenger as a servable version")
    m.add_argument("--version", default=None, help=VERSION_HELP)
    _add_then(m, split=True)
    m = _model_parser(
        model_sub,
        "compare",
        "champion vs challenger on labelled events, with a test",
        version="the challenger",
    )
    m.add_argument("--alpha", type=float, default=0.01, help="significance level of the test (default 0.01)")
    m.add_argument("--promote", action="store_true", help="promote the challenger if it wins")
    _add_retrain(sub)


def _add_import(model_sub: Subparsers) -> None:
    m = model_sub.add_parser(
        "import",
        help="make a bundle of a LightGBM model trained elsewhere (Booster.save_model's text file)",
        description="Make a bundle of a LightGBM model trained elsewhere, as it is: its inputs and category\n"
        "codes from the model file, drift references (and with --target, metrics and estimators)\n"
        "from DATA. No broker needed. docs/how-to/bring-your-own-model.md tells the whole way.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_debug(m)
    m.add_argument(
        "model_file", type=Path, metavar="MODEL_FILE", help="the text file Booster.save_model wrote"
    )
    m.add_argument(
        "--reference", type=Path, required=True, metavar="DATA", help="a .csv or .parquet table of the inputs"
    )
    m.add_argument("--out", type=Path, required=True, metavar="DIR", help="bundle directory to write")
    m.add_argument("--target", default=None, metavar="COLUMN", help="DATA's label column, if it has one")
    m.add_argument(
        "--task",
        choices=["binary", "multiclass", "regression"],
        default=None,
        help="when the objective does not say",
    )
    m.add_argument(
        "--classes",
        default=None,
        metavar="A,B,C",
        help="multiclass: the class names in the model's order (default: the sorted values of --target, "
        "else 0,1,...)",
    )
    m.add_argument("--name", default=None, help="model name (default: the --out directory's)")
    m.add_argument("--version", default="1", help="version recorded in the bundle (default 1)")
    m.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    from scoring.offline.importing import import_model_file
    from scoring.offline.tables import read_table
    from scoring.offline.targets import parse_classes

    reference = read_table(args.reference)
    bundle = import_model_file(
        args.model_file,
        reference,
        out_dir=args.out,
        target=args.target,
        task=args.task,
        name=args.name or args.out.resolve().name,
        version=args.version,
        classes=parse_classes(args.classes) if args.classes else None,
    )
    origin = bundle.metadata.origin
    categories = origin.categories if origin else {}
    print(f"bundle {bundle.name} version {bundle.version} written to {args.out}")
    objective = origin.objective if origin else "?"
    print(f"  {bundle.task.value} model, objective {objective}, {len(bundle.spec.features)} inputs")
    if bundle.classes is not None:
        print(
            f"  classes, in the model's order: {', '.join(bundle.class_names)} (from {origin.classes_from})"
        )
    for feature, source in categories.items():
        print(f"  {feature}: categories from {source}")
    for metric, value in sorted(bundle.metrics.items()):
        print(f"  {metric:>14}: {value:.6g}")
    note = bundle.estimation_note
    print(f"  performance estimate: {'unavailable: ' + note if note else 'from the labelled rows of DATA'}")
    return 0


def _add_register(model_sub: Subparsers) -> None:
    m = model_sub.add_parser(
        "register",
        help="copy a verified bundle directory into the registry",
        description="Copy a verified bundle directory into the registry (no broker needed).",
    )
    add_debug(m)
    m.add_argument(
        "bundle", type=Path, metavar="BUNDLE_DIR", help="bundle directory (`streamscore train --out`)"
    )
    add_registry(m)
    m.set_defaults(func=cmd_model, name=None, bootstrap=None)


def _model_parser(
    model_sub: Subparsers, name: str, summary: str, version: str = ""
) -> argparse.ArgumentParser:
    m = model_sub.add_parser(name, help=summary, description=f"{summary[0].upper()}{summary[1:]}.")
    add_debug(m)
    m.add_argument("--name", default=None, help=NAME_HELP)
    add_registry(m)
    add_bootstrap(m)
    m.add_argument("--reason", default="", help="why, recorded with the update")
    if version == "required":
        m.add_argument("version", metavar="VERSION", help="a registered version")
    elif version:
        m.add_argument("version", nargs="?", default=None, metavar="VERSION", help=f"default: {version}")
    m.set_defaults(func=cmd_model)
    return m


def _add_then(parser: argparse.ArgumentParser, split: bool = False) -> None:
    then = parser.add_mutually_exclusive_group()
    then.add_argument(
        "--deploy", action="store_true", help="then deploy it as the champion, through the gate"
    )
    then.add_argument(
        "--shadow", action="store_true", help="then score with it in shadow beside the champion"
    )
    if split:
        then.add_argument(
            "--split", type=float, default=None, metavar="SHARE", help="then serve SHARE of entities"
        )


def _add_retrain(sub: Subparsers) -> None:
    p = command(
        sub,
        "retrain",
        "train a new version on labelled events read back from the topics",
        "Uses the live model's feature spec, registers the result, and with --deploy or --shadow\n"
        "sends it through the gate.",
    )
    p.add_argument(
        "--from-topics", type=int, default=20_000, metavar="N", help=f"{FROM_TOPICS_HELP} (default 20000)"
    )
    p.add_argument("--name", default=None, help=NAME_HELP)
    p.add_argument("--version", default=None, help=VERSION_HELP)
    p.add_argument("--trees", type=int, default=100, help=f"{TREES_HELP} (default 100)")
    add_registry(p)
    add_bootstrap(p)
    _add_then(p)
    p.set_defaults(func=cmd_retrain)


def cmd_model(args: argparse.Namespace) -> int:
    from scoring.lifecycle.registry import ModelRegistry

    action = args.model_command
    offline = action in OFFLINE_ACTIONS
    settings = (settings_from if offline else broker_settings)(args, registry=args.registry)
    registry = ModelRegistry(settings.registry_root)
    if action == "register":
        ref = registry.register(args.bundle)
        print(f"registered {ref.name} version {ref.version} at {ref.uri}")
    elif action == "describe":
        from streams.services.control.commands import model_name

        print(json.dumps(registry.describe(model_name(settings, args.name), args.version), indent=2))
    elif action == "list":
        _list(settings, registry, args.name)
    elif action == "compare":
        _compare(settings, args)
    elif action == "publish-challenger":
        _publish_challenger(settings, args)
    else:
        _publish(settings, args)
    return 0


def _publish(settings: Settings, args: argparse.Namespace) -> None:
    from schemas.lifecycle import ChallengerMode
    from streams.services.control.commands import run_command

    action = args.model_command
    if action == "challenger":
        mode = ChallengerMode.shadow if args.shadow else ChallengerMode.split
        update = run_command(settings, "challenger", args.name, args.version, mode, args.share, args.reason)
    else:
        version = getattr(args, "version", None)
        update = run_command(settings, action.replace("-", "_"), args.name, version, reason=args.reason)
    challenger = f"; challenger {update.challenger.version} ({update.mode})" if update.challenger else ""
    print(f"published {update.action}: champion {update.champion.name} {update.champion.version}{challenger}")


def _list(settings: Settings, registry, name: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    from streams.kafka.topics import ensure_topics
    from streams.services.shared.model_updates import live_update

    ensure_topics(settings)
    models = registry.models(name)
    live = {model: live_update(settings, model)[0] for model in sorted({m.ref.name for m in models})}
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
    Console().print(table)


def _compare(settings: Settings, args: argparse.Namespace) -> None:
    from scoring.errors import ScoringError
    from scoring.lifecycle.registry import load_ref
    from streams.services.control.class_topics import compare_classes_from_topics
    from streams.services.control.commands import model_name, run_command
    from streams.services.control.labelled import compare_from_topics
    from streams.services.shared.model_updates import live_update

    name = model_name(settings, args.name)
    current, _ = live_update(settings, name)
    if current is None:
        raise ScoringError(f"{name} has no deployed champion")
    challenger = args.version or (current.challenger.version if current.challenger else None)
    if challenger is None:
        raise ScoringError("no challenger is serving; name the version to compare with")
    champion = load_ref(current.champion)
    compare = compare_classes_from_topics if champion.classes is not None else compare_from_topics
    comparison = compare(settings, champion, challenger, args.alpha)
    print("\n".join(comparison.lines()))
    if comparison.winner == "challenger" and (args.promote or settings.auto_promote):
        update = run_command(settings, "promote", name, challenger, reason="won model compare")
        print(f"promoted {update.champion.version}")


def _publish_challenger(settings: Settings, args: argparse.Namespace) -> None:
    from schemas.lifecycle import ChallengerMode
    from streams.services.control.commands import publish_challenger, run_command

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


def cmd_retrain(args: argparse.Namespace) -> int:
    from schemas.lifecycle import ChallengerMode
    from streams.services.control.commands import retrain_from_topics, run_command
    from streams.services.control.labelled import Skipped

    settings, skipped = broker_settings(args, registry=args.registry), Skipped()
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
