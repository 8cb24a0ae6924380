"""A dead letter: the original record (key, value, headers) plus why it failed, in headers.

The same shape on every dead-letter topic (``features.dlq``, ``labels.dlq``, ``monitor.dlq``):
the context in ``streamscore.errors.*`` headers (``schemas.headers``) after the original's
own. It always fits under the producer's message limit: oversized original headers are
dropped (and said so), the value is cut to the room left (and its length said).
"""

from __future__ import annotations

import time

from schemas import headers as h
from streams.kafka.config import OUTPUT_MESSAGE_BYTES
from streams.kafka.records import Emit, Headers, KafkaRecord


def dead_letter(
    record: KafkaRecord,
    stage: str,
    error_class: str,
    message: str,
    emit: Emit,
    topic: str,
    max_value_bytes: int = OUTPUT_MESSAGE_BYTES,
) -> None:
    context = [
        (h.DLQ_CLASS, error_class.encode()),
        (h.DLQ_MESSAGE, message.encode("utf-8", "replace")[:4096]),
        (h.DLQ_STAGE, stage.encode()),
        (h.DLQ_TOPIC, str(record.topic()).encode()),
        (h.DLQ_PARTITION, str(record.partition()).encode()),
        (h.DLQ_OFFSET, str(record.offset()).encode()),
        (h.DLQ_TIME, str(int(time.time() * 1000)).encode()),
    ]
    original = list(record.headers() or [])
    value, key = record.value(), record.key()
    # the dead letter must fit under the producer's limit, or it would stop the loop
    room = OUTPUT_MESSAGE_BYTES - 1024 - _size(context) - len(key or b"")
    if _size(original) > room // 2:
        context.append((h.DLQ_HEADERS_DROPPED, f"{len(original)} headers, {_size(original)} bytes".encode()))
        original = []
    keep = min(max_value_bytes, room - _size(original))
    if value is not None and len(value) > keep:
        # keep the head of the original, and say how long it was
        context.append((h.DLQ_ORIGINAL_SIZE, str(len(value)).encode()))
        value = value[:keep]
    emit(topic, key, value, original + context)


def _size(headers: Headers) -> int:
    return sum(len(name) + len(value or b"") for name, value in headers)
