"""What the command modules share: the settings they read, and arguments spelled one way everywhere."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from streams.environment import load_settings
from streams.settings import Settings

Subparsers = Any  # argparse's _SubParsersAction, which it does not export

BOOTSTRAP_HELP = (
    "Kafka bootstrap servers, HOST:PORT[,...] (default: STREAMSCORE_KAFKA_BOOTSTRAP or 127.0.0.1:9092)"
)
MODEL_HELP = "model bundle directory (written by `streamscore train`)"
REGISTRY_HELP = (
    "model registry root, a path or fsspec URL (default: STREAMSCORE_REGISTRY or DATA_DIR/registry)"
)
NAME_HELP = "model name (default: the registry's only model)"
TREES_HELP = "boosting rounds (trees) of the LightGBM model"
REACHABLE_TIMEOUT_S = 5.0  # a command reports an unreachable broker after this long

FROM_TOPICS_HELP = "the last N labelled events read back from the monitor and labels topics"


def command(sub: Subparsers, name: str, summary: str, details: str = "") -> argparse.ArgumentParser:
    """A subcommand whose one-line ``summary`` shows in ``streamscore --help`` and heads its own help."""
    parser = sub.add_parser(
        name,
        help=summary,
        description=f"{summary[0].upper()}{summary[1:]}." + (f"\n\n{details}" if details else ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_debug(parser)
    return parser


def add_debug(parser: argparse.ArgumentParser) -> None:
    """``--debug`` after the command too; SUPPRESS keeps a ``streamscore --debug CMD`` from being reset."""
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback of an error (or set STREAMSCORE_DEBUG=1)",
    )


def add_bootstrap(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", default=None, metavar="HOST:PORT", help=BOOTSTRAP_HELP)


def add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, metavar="DIR", help=MODEL_HELP)


def add_registry(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", default=None, metavar="ROOT", help=REGISTRY_HELP)


def add_hidden_alias(parser: argparse.ArgumentParser, flag: str, dest: str, **kwargs: Any) -> None:
    """An older spelling of an option that still works but is not shown in ``--help``."""
    parser.add_argument(flag, dest=dest, help=argparse.SUPPRESS, **kwargs)


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    """The settings of a command: ``STREAMSCORE_*`` variables, overridden by the flags given."""
    overrides = {k: v for k, v in extra.items() if v is not None}
    if getattr(args, "bootstrap", None):
        overrides["kafka_bootstrap"] = args.bootstrap
    return load_settings(**overrides)


def broker_settings(args: argparse.Namespace, **extra: Any) -> Settings:
    """``settings_from``, then a short metadata request: no broker fails here, in seconds, naming it."""
    from streams.kafka.reachability import check_reachable
    from streams.kafka.tls import check_tls

    settings = settings_from(args, **extra)
    check_tls(settings)  # under TLS: a bad file or handshake is one line naming it, before anything starts
    check_reachable(settings, REACHABLE_TIMEOUT_S)
    return settings


def write_table(frame: Any, path: Path) -> None:
    """A frame to ``.parquet``/``.pq`` or else CSV, by the path's suffix."""
    if path.suffix.lower() in {".parquet", ".pq"}:
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
