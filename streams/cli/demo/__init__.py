"""``streamscore demo``: the command (``command``), the run (``run``), its tables (``show``) and the
model lifecycle part (``lifecycle``)."""

from streams.cli.demo.command import add_parser

__all__ = ["add_parser"]
