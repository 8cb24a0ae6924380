"""``streamscore worker``: a scoring worker (score, drift and learn roles, web endpoints)."""

from __future__ import annotations

import argparse
from pathlib import Path

from streams.cli.common import (
    MODEL_HELP,
    Subparsers,
    add_bootstrap,
    add_hidden_alias,
    command,
    settings_from,
)


def add_parser(sub: Subparsers) -> None:
    p = command(
        sub,
        "worker",
        "run a scoring worker: features in, predictions out, drift and KPIs beside",
        "Runs the roles of STREAMSCORE_ROLES (default drift,learn,score) until SIGTERM or Ctrl-C;\n"
        "serves /health, /ready, /stats, /metrics and /dashboard on the web port.",
    )
    p.add_argument(
        "--model", type=Path, default=None, metavar="DIR", help=f"{MODEL_HELP} (or STREAMSCORE_MODEL_PATH)"
    )
    add_bootstrap(p)
    p.add_argument(
        "--score-path",
        choices=["batch", "agent"],
        default=None,
        help="batch: own consumer, batches (default); agent: a Faust agent",
    )
    p.add_argument("--web-port", type=int, default=None, help="port of the web endpoints (default 6066)")
    p.add_argument(
        "--group",
        default=None,
        metavar="GROUP",
        help="consumer group of the score path (default: STREAMSCORE_GROUP_ID or streamscore-scorer)",
    )
    add_hidden_alias(p, "--group-id", "group")
    p.add_argument(
        "-l",
        "--loglevel",
        default="info",
        choices=["crit", "error", "warn", "info", "debug"],
        help="log level (default info)",
    )
    p.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.worker import run_worker

    settings = settings_from(
        args, model_path=args.model, score_path=args.score_path, web_port=args.web_port, group_id=args.group
    )
    check_port_free(settings.web_host, settings.web_port)
    run_worker(settings, loglevel=args.loglevel)
    return 0


def check_port_free(host: str, port: int) -> None:
    """The web port must be free before Faust starts, or it fails deep inside with a traceback."""
    import socket

    from scoring.errors import ConfigError

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot serve the web endpoints on {host}:{port}: {exc.strerror}\n"
                "is another worker (or the demo) running? choose another with --web-port or "
                "STREAMSCORE_WEB_PORT"
            ) from None
