"""The command line's help: every command and argument explained, one spelling per concept."""

from __future__ import annotations

import argparse
import subprocess
import sys

from streams.cli import build_parser
from streams.cli.common import BOOTSTRAP_HELP


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, its parser, the help shown for it in its parent's list) for every subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            shown = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*path, name), sub, shown.get(name)
                yield from _commands(sub, (*path, name))


def _arguments(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.help == argparse.SUPPRESS:  # a hidden alias of an older spelling
            continue
        yield action


def test_every_command_and_every_argument_has_help() -> None:
    missing = []
    for path, parser, summary in _commands(build_parser()):
        if not summary:
            missing.append(" ".join(path))
        missing += [
            f"{' '.join(path)} {a.option_strings or a.dest}" for a in _arguments(parser) if not a.help
        ]
    assert missing == []


def test_the_bootstrap_option_reads_the_same_on_every_command_that_has_it() -> None:
    helps = {
        " ".join(path): a.help
        for path, parser, _ in _commands(build_parser())
        for a in _arguments(parser)
        if "--bootstrap" in a.option_strings
    }
    assert {"worker", "produce", "status", "replay", "report", "retrain", "model deploy"} <= helps.keys()
    assert set(helps.values()) == {BOOTSTRAP_HELP}


def test_the_consumer_group_is_spelled_group_and_the_old_spelling_still_works() -> None:
    parser = build_parser()
    options = {
        " ".join(path): {o for a in _arguments(p) for o in a.option_strings}
        for path, p, _ in _commands(parser)
    }
    assert "--group" in options["worker"] and "--group" in options["status"]
    assert not any("--group-id" in shown for shown in options.values())
    assert parser.parse_args(["status", "--group-id", "a", "--group", "b"]).group == ["a", "b"]
    assert parser.parse_args(["worker", "--group-id", "g"]).group == "g"


def test_top_level_help_is_plain_text_with_a_line_per_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streams", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    print(done.stdout)
    assert "``" not in done.stdout
    assert done.stdout.splitlines()[2] == "streamscore: streaming model scoring on Kafka."
    for path, _, summary in _commands(build_parser()):
        if len(path) == 1:
            assert path[0] in done.stdout
            assert summary.split()[0] in done.stdout


def test_debug_is_accepted_before_and_after_the_command() -> None:
    parser = build_parser()
    assert parser.parse_args(["--debug", "schemas", "export", "x"]).debug is True
    assert parser.parse_args(["schemas", "export", "x", "--debug"]).debug is True
    assert parser.parse_args(["schemas", "export", "x"]).debug is False
