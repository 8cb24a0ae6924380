"""What a service is to the loop: a ``Step`` over batches, and where its records come from.

A step overrides ``process`` and whichever hooks it needs; the loop calls them in order
(``start``, then ``assigned``/``process``/``committed``/``tick`` per turn, ``revoked`` or
``lost`` in rebalances, ``finish`` at the end) and hands it a ``LoopContext`` to emit with.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import Message, TopicPartition

from streams.kafka.records import Emit


class LoopContext(Protocol):
    """What a step may use besides ``emit``."""

    emit: Emit
    stopping: threading.Event

    def flush(self, timeout_s: float | None) -> bool: ...
    def commit(self, offsets: list[TopicPartition]) -> bool: ...


class Step:
    """What a service does; override ``process`` and whichever hooks it needs."""

    def start(self, context: LoopContext) -> None:
        """Before the first batch (restore state, say what serves)."""

    def process(self, records: list[Message], context: LoopContext) -> Any:
        """Handle one batch; what it returns is handed to ``committed`` once the batch is committed."""
        raise NotImplementedError

    def committed(self, result: Any, seconds: float) -> None:
        """The batch that produced ``result`` is done (its offsets committed, where the policy commits)."""

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Partitions arrive; set ``offset`` on any to start reading there."""

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Partitions are revoked in a rebalance: their next owner starts after this returns."""

    def lost(self, partitions: list[TopicPartition]) -> None:
        """Partitions are lost (the session expired): another member may own them already."""
        self.revoked(partitions)

    def tick(self, context: LoopContext) -> None:
        """Once per turn of the loop, batch or not: periodic work checks its own clock here."""

    def finish(self, context: LoopContext) -> None:
        """After the last batch, before the policy's final settle."""


@dataclass(frozen=True)
class Subscribe:
    """Join the group and take the partitions it assigns."""

    topics: list[str]


@dataclass(frozen=True)
class Assign:
    """Read these partitions from these offsets, outside any group (every instance reads all)."""

    partitions: list[TopicPartition]
