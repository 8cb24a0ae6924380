"""The shape of a Kafka record as the services read it, and of what they emit."""

from __future__ import annotations

from typing import Protocol

Headers = list[tuple[str, bytes]]


class Emit(Protocol):
    """Queue one outgoing record: topic, key, value, headers; ``partition`` None lets the key choose.

    The score path sends monitoring records to the partition of their source (the learn
    role's shards are co-partitioned with ``features``); everything else goes by key.
    """

    def __call__(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        partition: int | None = None,
        /,
    ) -> None: ...


class KafkaRecord(Protocol):
    """The read side of a Kafka message, shaped like ``confluent_kafka.Message``."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Headers | None: ...
    def timestamp(self) -> tuple[int, int]: ...
