"""The learner's checkpoints on the compacted ``checkpoints`` topic: written in chunks, read back whole.

Keys under the learner's prefix ``P``:

- ``P/G/i``: chunk ``i`` of head generation ``G`` (the learner's state, signed), and
  ``P/head``: a ``CheckpointHead`` naming the generation and its chunk count, written
  after its chunks; the previous generation's chunks get tombstones, so compaction drops them.
- ``P/seg/S/i`` and ``P/seg/S``: the payload of segment ``S`` of waiting events and its own
  head (``scoring.feedback.join_segments``): written once when the segment closes, tombstoned when
  nothing in it waits any more.

Restoring never raises: a missing, incomplete, undecodable or forged checkpoint means a
fresh start, said in the log and in ``restore_problem`` (the learn service raises an alert).
Every payload is signed for where it is written (``scoring.checkpoint.binding``): the head
for ``P/G`` (its generation), a segment for ``P/seg/S``, so a copy under another prefix,
partition or generation does not verify.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from schemas.checkpoint import CheckpointHead
from scoring import checkpoint
from scoring.errors import CheckpointRejected
from streams.kafka.readers import read_latest
from streams.kafka.records import Emit
from streams.services.shared.state_intake import StateRefusal
from streams.settings import Settings

log = logging.getLogger(__name__)

CHUNK_BYTES = 800_000  # a payload larger than this is split over several messages
RESTORE_IDLE_S = 2.0  # the checkpoint topic is read until it stays quiet this long


def challenger_key(settings: Settings) -> bytes:
    """Where the exported challenger is kept on the checkpoints topic (one learn worker per app)."""
    return f"{settings.app_id}/challenger-model".encode()


@dataclass
class Restored:
    state: dict
    objects: dict
    head: CheckpointHead
    segments: dict[int, tuple[dict, bytes]] = field(default_factory=dict)  # id -> (columns, rows)


def bound(settings: Settings, topic: str, record_key: str) -> bytes:
    """What a state record of this deployment under ``record_key`` on ``topic`` is signed for."""
    return checkpoint.binding(topic, record_key, settings.app_id)


def state_key(settings: Settings) -> bytes:
    """The key signing this deployment's state: from the settings, else the data dir's (made once)."""
    key = settings.state_key_bytes()
    if key is None:
        key = checkpoint.load_or_create_key(Path(settings.data_dir) / "state.key")
    return key


class CheckpointStore:
    """Writes and reads one learner's checkpoints under ``prefix`` on the checkpoints topic."""

    def __init__(self, settings: Settings, prefix: str, key: bytes) -> None:
        self.settings = settings
        self.prefix = prefix
        self.key = key
        self.generation = 0
        self._previous_chunks = 0
        self._segment_chunks: dict[int, int] = {}
        self._stale: list[str] = []  # keys found at restore that no head names: tombstoned at the next write
        self.restore_problem: str | None = None
        self.restore_refusal = StateRefusal.shape  # what kind of problem ``restore_problem`` is

    def encode(self, state: dict, objects: object) -> bytes:
        """A head payload, signed for the generation the next ``write`` gives it."""
        return checkpoint.encode(
            state, objects, self.key, self._bound(f"{self.prefix}/{self.generation + 1}")
        )

    def encode_segment(self, sid: int, state: dict, objects: object) -> bytes:
        """Segment ``sid``'s payload, signed for its key."""
        return checkpoint.encode(state, objects, self.key, self._bound(f"{self.prefix}/seg/{sid}"))

    def _bound(self, record_key: str) -> bytes:
        return bound(self.settings, self.settings.topic_checkpoints, record_key)

    def write(self, head: bytes, out: Emit, segments: Iterable[tuple[int, bytes]], dropped: list[int]) -> int:
        """New segments, then the head's chunks and the head, then tombstones; returns the bytes written.

        ``segments`` may be made as they are written (a generator), so that only one is held at a time.
        """
        topic, written, keys = self.settings.topic_checkpoints, 0, set()

        def emit(topic: str, key: bytes | None, value: bytes | None, headers, partition=None) -> None:
            keys.add(key)
            out(topic, key, value, headers)

        for sid, payload in segments:
            written += self._chunks(f"{self.prefix}/seg/{sid}", payload, sid + 1, emit)
            self._segment_chunks[sid] = -(-len(payload) // CHUNK_BYTES) or 1
        previous = self.generation
        self.generation += 1
        written += self._chunks(self.prefix, head, self.generation, emit)
        for i in range(self._previous_chunks):
            emit(topic, f"{self.prefix}/{previous}/{i}".encode(), None, None)
        self._previous_chunks = -(-len(head) // CHUNK_BYTES) or 1
        for sid in dropped:
            for i in range(self._segment_chunks.pop(sid, 0)):
                emit(topic, f"{self.prefix}/seg/{sid}/{i}".encode(), None, None)
            emit(topic, f"{self.prefix}/seg/{sid}".encode(), None, None)
        for key in self._stale:
            if key.encode() not in keys:  # not one this write just made
                emit(topic, key.encode(), None, None)
        self._stale.clear()
        return written

    def _chunks(self, base: str, payload: bytes, generation: int, emit: Emit) -> int:
        """``payload`` in chunks under ``base/...``, then the head record naming them at ``base/head``."""
        topic = self.settings.topic_checkpoints
        chunks = [payload[i : i + CHUNK_BYTES] for i in range(0, len(payload), CHUNK_BYTES)] or [b""]
        where = base if base != self.prefix else f"{base}/{generation}"
        for i, chunk in enumerate(chunks):
            emit(topic, f"{where}/{i}".encode(), chunk, None)
        head = CheckpointHead(generation=generation, chunks=len(chunks)).model_dump_json().encode()
        emit(topic, (f"{base}/head" if base == self.prefix else base).encode(), head, None)
        return len(payload) + len(head)

    def restore(self) -> Restored | None:
        """The latest complete, correctly signed checkpoint; None (and ``restore_problem``) otherwise."""
        latest, _ = read_latest(
            self.settings, self.settings.topic_checkpoints, RESTORE_IDLE_S, self.prefix + "/"
        )
        return self.restore_from(latest)

    def restore_from(self, latest: dict[str, bytes]) -> Restored | None:
        """``restore`` of the latest value per key under this prefix, as read from the topic.

        ``latest`` may hold other stores' keys too (one read serves every shard that comes):
        only this store's own keys are ever tombstoned by it.
        """
        latest = {k: v for k, v in latest.items() if k.startswith(f"{self.prefix}/")}
        if f"{self.prefix}/head" not in latest:
            log.info("no checkpoint under %s: starting fresh", self.prefix)
            self._stale = sorted(latest)
            return None
        try:
            head, payload = self._read(latest, self.prefix, f"{self.prefix}/head")
            state, objects = checkpoint.decode(
                payload, self.key, self._bound(f"{self.prefix}/{head.generation}")
            )
            segments = {}
            for sid in (int(s) for s in state.get("segments", {}).get("segments", {})):
                _, seg_payload = self._read(latest, f"{self.prefix}/seg/{sid}", f"{self.prefix}/seg/{sid}")
                segments[sid] = checkpoint.decode(
                    seg_payload, self.key, self._bound(f"{self.prefix}/seg/{sid}")
                )
                self._segment_chunks[sid] = -(-len(seg_payload) // CHUNK_BYTES) or 1
        except CheckpointRejected as exc:
            self.restore_refusal = StateRefusal.signature
            return self._fresh(f"the checkpoint is refused: {exc}", latest)
        except _Unreadable as exc:
            return self._fresh(str(exc), latest)
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with it, the learner starts fresh
            return self._fresh(f"the checkpoint cannot be read ({type(exc).__name__}: {exc})", latest)
        self.generation, self._previous_chunks = head.generation, head.chunks
        named = {f"{self.prefix}/{head.generation}/{i}" for i in range(head.chunks)} | {f"{self.prefix}/head"}
        for sid in segments:
            named |= {f"{self.prefix}/seg/{sid}"} | {
                f"{self.prefix}/seg/{sid}/{i}" for i in range(self._segment_chunks[sid])
            }
        self._stale = sorted(set(latest) - named)
        return Restored(state, objects, head, segments)

    def _read(self, latest: dict[str, bytes], base: str, head_key: str) -> tuple[CheckpointHead, bytes]:
        try:
            head = CheckpointHead.model_validate_json(latest[head_key])
        except (KeyError, ValidationError) as exc:
            raise _Unreadable(
                f"{head_key} is missing or not a checkpoint head ({type(exc).__name__})"
            ) from None
        where = base if base != self.prefix else f"{base}/{head.generation}"
        parts = [latest.get(f"{where}/{i}") for i in range(head.chunks)]
        if any(p is None for p in parts):
            raise _Unreadable(f"checkpoint {where} is incomplete")
        return head, b"".join(parts)  # type: ignore[arg-type]

    def _fresh(self, problem: str, latest: dict[str, bytes]) -> None:
        self.restore_problem = problem
        self._stale = sorted(latest)  # the next checkpoint replaces all of it
        log.error("%s: starting fresh", problem)
        return None


class _Unreadable(Exception):
    pass
