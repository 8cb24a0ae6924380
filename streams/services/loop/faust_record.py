"""A Faust event's message shaped like ``confluent_kafka.Message``, so a step reads both alike."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from streams.kafka.records import Headers


@dataclass(frozen=True, slots=True)
class FaustRecord:
    """A Faust event's message, shaped like ``confluent_kafka.Message`` for the handler."""

    message: faust.types.tuples.Message

    def topic(self) -> str:
        return self.message.topic

    def partition(self) -> int:
        return self.message.partition

    def offset(self) -> int:
        return self.message.offset

    def key(self) -> bytes | None:
        return self.message.key

    def value(self) -> bytes | None:
        return self.message.value

    def headers(self) -> Headers:
        return list(self.message.headers or [])

    def timestamp(self) -> tuple[int, int]:
        return (1, int(self.message.timestamp * 1000))
