"""The reference pages' tables, generated from the code on every build of the site.

A page under ``docs/reference/`` holds its prose and a marker, an HTML comment such as
``<!-- reference: settings -->``; the build (``docs/gen/hooks.py``) puts the table the
marker names in its place. So every setting of ``Settings``, every command of the
``streamscore`` parser and every message of the JSON Schema export is on the site as the
code has it, and nothing generated is committed.
"""

from __future__ import annotations

import argparse
import enum
import json
import re
import tempfile
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

MARKER = re.compile(r"<!--\s*reference:\s*([a-z-]+)\s*-->")
USAGE_WIDTH = 80  # usage lines wrap here (the width of a code block), whatever the terminal


class ReferenceError(Exception):
    """A page names a table the generator does not make."""


def _cell(text: str) -> str:
    """Text for one cell of a Markdown table: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


# ---------------------------------------------------------------- settings


def _type_name(annotation: object) -> str:
    """``int``, ``path``, ``secret``, ``one of: batch, agent``; ``or unset`` for an optional one."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        parts = [a for a in typing.get_args(annotation) if a is not type(None)]
        inner = " or ".join(_type_name(a) for a in parts)
        return f"{inner}, or unset"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of: " + ", ".join(_code(str(m.value)) for m in annotation)
    if annotation is SecretStr:
        return "secret"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined:
        return "required"
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        value = str(value).lower()
    if value == "":
        return "empty"
    return _code(str(value))


def settings_table(settings_cls: type | None = None) -> str:
    """Every field of the settings class: its variable, type, default and description."""
    from streams.environment import variable
    from streams.settings import Settings

    settings_cls = settings_cls or Settings
    rows = ["| variable | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in settings_cls.model_fields.items():
        rows.append(
            f"| `{variable(name)}` | {_cell(_type_name(field.annotation))} | {_cell(_default(field))} "
            f"| {_cell(field.description or '')} |"
        )
    return "\n".join(rows)


def other_variables_table() -> str:
    """The ``STREAMSCORE_*`` variables that are no setting (``streams.environment.NOT_SETTINGS``)."""
    from streams.environment import NOT_SETTINGS

    rows = ["| variable | meaning |", "| --- | --- |"]
    rows += [f"| `{name}` | {_cell(meaning)} |" for name, meaning in NOT_SETTINGS.items()]
    return "\n".join(rows)


# ---------------------------------------------------------------- commands


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each subcommand, in the order ``--help`` lists them."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            found += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return found


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(prog=parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _argument(action: argparse.Action) -> str:
    metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
    if isinstance(metavar, tuple):
        metavar = " ".join(metavar)
    if not action.option_strings:
        return metavar
    takes_value = action.nargs != 0
    return ", ".join(f"{option} {metavar}" if takes_value else option for option in action.option_strings)


def _options_table(parser: argparse.ArgumentParser) -> str:
    rows = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(
            action, argparse._HelpAction | argparse._SubParsersAction
        ):
            continue
        meaning = action.help or ""
        if action.choices and not isinstance(action.choices, Mapping):
            meaning += " (one of: " + ", ".join(str(c) for c in action.choices) + ")"
        rows.append(f"| `{_cell(_argument(action))}` | {_cell(meaning)} |")
    if not rows:
        return ""
    return "\n".join(["| argument | meaning |", "| --- | --- |", *rows])


def commands_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """Every command and subcommand of the parser: usage, description and arguments."""
    if parser is None:
        from streams.cli import build_parser

        parser = build_parser()
    parts = [f"```text\n{_usage(parser)}\n```", parser.description or "", _options_table(parser)]

    def walk(parent: argparse.ArgumentParser, depth: int) -> None:
        for _name, summary, sub in _subcommands(parent):
            parts.append(f"{'#' * depth} {sub.prog}")
            parts.append(f"```text\n{_usage(sub)}\n```")
            description = (sub.description or summary).strip()
            parts.append(description if description.endswith(".") else f"{description}.")
            parts.append(_options_table(sub))
            walk(sub, min(depth + 1, 4))

    walk(parser, 2)
    return "\n\n".join(part for part in parts if part)


def command_names(parser: argparse.ArgumentParser | None = None) -> list[str]:
    """``streamscore broker``, ``streamscore model deploy``, ...: every command the parser has."""
    if parser is None:
        from streams.cli import build_parser

        parser = build_parser()
    names = []
    for _name, _summary, sub in _subcommands(parser):
        names.append(sub.prog)
        names += command_names(sub)
    return names


# ---------------------------------------------------------------- messages


def json_schemas() -> dict[str, str]:
    """``{file name: text}`` of what ``streamscore schemas export`` writes, written by the same code."""
    from schemas.export import export_json_schemas

    with tempfile.TemporaryDirectory() as directory:
        return {path.name: path.read_text() for path in export_json_schemas(Path(directory))}


def _schema_type(prop: Mapping, defs: Mapping) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in prop:
        kinds = [_schema_type(p, defs) for p in prop["anyOf"]]
        return " or ".join(dict.fromkeys(kinds))
    if "enum" in prop:
        return "one of " + ", ".join(json.dumps(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"array of {_schema_type(prop.get('items', {}), defs)}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), Mapping):
        return f"object of {_schema_type(prop['additionalProperties'], defs)}"
    return kind


def _properties_table(schema: Mapping, defs: Mapping) -> str:
    required = set(schema.get("required", []))
    rows = ["| field | type | required | description |", "| --- | --- | --- | --- |"]
    for name, prop in schema.get("properties", {}).items():
        default = f" (default `{json.dumps(prop['default'])}`)" if "default" in prop else ""
        rows.append(
            f"| `{name}` | {_cell(_schema_type(prop, defs))} | {'yes' if name in required else 'no'} "
            f"| {_cell(prop.get('description', ''))}{_cell(default)} |"
        )
    return "\n".join(rows) if len(rows) > 2 else "(no fields)"


def messages_reference(schemas: Mapping[str, str] | None = None, link_dir: str = "schemas") -> str:
    """Per message of the export: its description, its fields, the types it uses, its schema file."""
    schemas = schemas if schemas is not None else json_schemas()
    parts = []
    for file_name, text in sorted(schemas.items()):
        schema = json.loads(text)
        defs = schema.get("$defs", {})
        message = file_name.removesuffix(".schema.json")
        parts.append(f"## {schema.get('title', message)}")
        parts.append(f"`{message}`: [{file_name}]({link_dir}/{file_name}). {schema.get('description', '')}")
        parts.append(_properties_table(schema, defs))
        for def_name, definition in defs.items():
            if "properties" in definition:
                parts.append(f"**{def_name}** {_cell(definition.get('description', ''))}")
                parts.append(_properties_table(definition, defs))
            elif "enum" in definition:
                values = ", ".join(f"`{json.dumps(v)}`" for v in definition["enum"])
                parts.append(f"**{def_name}**: one of {values}.")
    return "\n\n".join(parts)


# ---------------------------------------------------------------- pages

TABLES: dict[str, Callable[[], str]] = {
    "settings": settings_table,
    "other-variables": other_variables_table,
    "commands": commands_reference,
    "messages": messages_reference,
}


def expand(markdown: str, tables: Mapping[str, Callable[[], str]] = TABLES) -> str:
    """The page with each ``<!-- reference: NAME -->`` marker replaced by the table NAME."""

    def table(match: re.Match) -> str:
        name = match.group(1)
        if name not in tables:
            raise ReferenceError(f"no generated table {name!r}; known: {', '.join(sorted(tables))}")
        return tables[name]()

    return MARKER.sub(table, markdown)
