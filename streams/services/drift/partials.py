"""The drift partials topic: a partial written signed and in chunks, and one read back and checked.

A partial is written under ``name:version/wW/pP`` on ``drift-partials``, signed for that
key, the topic and the deployment (``scoring.checkpoint``), in chunks of at most
``CHUNK_BYTES`` with a ``streamscore-chunk: i/n`` header. Read back (``PartialsMerger``
puts the chunks together through ``shared.state_intake``), it must verify for the key it
came under, be the partial that key names, be cut like this merger's windows, and hold
what the topic and the clock allow (``scoring.drift.bounds``); else ``StateRejected``
says why.
"""

from __future__ import annotations

import re
import time

from scoring import checkpoint
from scoring.drift.bounds import EndOffset, partial_problem
from scoring.drift.merge import WindowMerger
from scoring.drift.partial import PartialRejected, WindowPartial
from scoring.errors import CheckpointRejected
from streams.kafka.records import Emit
from streams.services.shared.checkpoints import bound
from streams.services.shared.state_intake import (
    CHUNK_BYTES,
    CHUNK_HEADER,
    StateRefusal,
    StateRejected,
    partition_number,
)
from streams.settings import Settings

_KEY = re.compile(r"(?P<model>[^/]+:[^/]+)/w(?P<window>0|[1-9][0-9]{0,18})/p(?P<partition>[0-9]+)")
SETTINGS_HINT = (
    "every drift worker of a deployment needs the same STREAMSCORE_STATE_KEY or STREAMSCORE_STATE_KEY_FILE, "
    "STREAMSCORE_APP_ID, STREAMSCORE_PARTITIONS and STREAMSCORE_DRIFT_WINDOW_EVENTS"
)


def partial_key(partial: WindowPartial) -> str:
    """The record key a partial is written and signed under."""
    return f"{partial.model_name}:{partial.model_version}/w{partial.window}/p{partial.partition}"


def publish_partial(settings: Settings, partial: WindowPartial, key: bytes, emit: Emit) -> int:
    """The partial on the partials topic, signed for its key and in chunks; returns the bytes written."""
    name = partial_key(partial)
    data = checkpoint.sign(partial.to_bytes(), key, bound(settings, settings.topic_drift_partials, name))
    chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]
    for i, chunk in enumerate(chunks):
        emit(
            settings.topic_drift_partials,
            name.encode(),
            chunk,
            [(CHUNK_HEADER, f"{i}/{len(chunks)}".encode())],
        )
    return len(data)


def check_key(key: str, partitions: int) -> None:
    """``StateRejected`` (``key``) unless ``key`` is ``name:version/wW/pP`` with P a partition of P's."""
    match = _KEY.fullmatch(key)
    if match is None:
        raise StateRejected(StateRefusal.key, f"key {key[:80]!r} is not name:version/wW/pP")
    partition_number(match["partition"], partitions)


def read_partial(
    settings: Settings, state_key: bytes, key: str, signed: bytes, merger: WindowMerger, end_offset: EndOffset
) -> WindowPartial:
    """The partial in ``signed`` if signed here for ``key``, that key's own, cut as ``merger``'s, possible."""
    try:
        data = checkpoint.verify(signed, state_key, bound(settings, settings.topic_drift_partials, key))
    except CheckpointRejected as exc:
        raise StateRejected(StateRefusal.signature, f"{key}: {exc} ({SETTINGS_HINT})") from None
    try:
        partial = WindowPartial.from_bytes(data)
    except PartialRejected as exc:
        raise StateRejected(StateRefusal.shape, f"{key}: {exc}") from None
    if partial_key(partial) != key:
        raise StateRejected(StateRefusal.shape, f"the partial {partial_key(partial)} under the key {key}")
    if (partial.partitions, partial.quota) != (merger.partitions, merger.quota):
        raise StateRejected(
            StateRefusal.shape,
            f"{key} cut over {partial.partitions} partitions of {partial.quota} events, this merger over "
            f"{merger.partitions} of {merger.quota} ({SETTINGS_HINT})",
        )
    now_ms, skew_ms = int(time.time() * 1000), int(settings.max_clock_skew_s * 1000)
    problem = partial_problem(partial, settings.topic_features, now_ms, skew_ms, end_offset)
    if problem is not None:
        raise StateRejected(StateRefusal.content, f"{key}: {problem}")
    return partial
