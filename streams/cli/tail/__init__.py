"""``streamscore tail``: the command and its reading loop (``command``, ``reading``), the topics it
knows (``topics``), and the pure functions that turn a record into a line (``lines``, ``reports``)."""

from streams.cli.tail.command import add_parser

__all__ = ["add_parser"]
