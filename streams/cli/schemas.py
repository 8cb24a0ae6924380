"""``streamscore schemas export``: the JSON Schema of every message that crosses a topic."""

from __future__ import annotations

import argparse
from pathlib import Path

from streams.cli.common import Subparsers, add_debug, command


def add_parser(sub: Subparsers) -> None:
    p = command(sub, "schemas", "message schemas: export the JSON Schema of every topic's messages")
    schema_sub = p.add_subparsers(dest="schemas_command", required=True, metavar="ACTION")
    e = schema_sub.add_parser(
        "export", help="write the JSON Schema of every message to DIR", description="Write the JSON "
        "Schema of every message to DIR, one file per message."
    )  # fmt: skip
    add_debug(e)
    e.add_argument("dir", type=Path, metavar="DIR", help="directory to write the .json files to")
    e.set_defaults(func=cmd_schemas_export)


def cmd_schemas_export(args: argparse.Namespace) -> int:
    from schemas.export import export_json_schemas

    for path in export_json_schemas(args.dir):
        print(path)
    return 0
