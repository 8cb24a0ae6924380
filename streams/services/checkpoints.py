"""The learner's checkpoints on the compacted ``checkpoints`` topic: written in chunks, read back whole.

A checkpoint is one signed payload (``scoring.checkpoint``) split into chunks under
generation keys (``PREFIX/G/i``), then a head (``PREFIX/head``) naming the generation and
its chunk count, then tombstones for the previous generation's chunks, so compaction
drops them. A reader that finds the head finds every chunk it names, or starts fresh.

Restoring never raises: a missing, incomplete, undecodable or forged checkpoint means a
fresh start, said in the log and in ``restore_problem`` (the learn service raises an alert).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import ValidationError

from schemas.checkpoint import CheckpointHead
from scoring import checkpoint
from scoring.errors import CheckpointRejected
from streams.kafka.readers import read_latest
from streams.kafka.records import Emit
from streams.settings import Settings

log = logging.getLogger(__name__)

CHUNK_BYTES = 800_000  # a checkpoint larger than this is split over several messages
RESTORE_IDLE_S = 2.0  # the checkpoint topic is read until it stays quiet this long


@dataclass
class Restored:
    state: dict
    objects: dict
    head: CheckpointHead


class CheckpointStore:
    """Writes and reads one learner's checkpoints under ``prefix`` on the checkpoints topic."""

    def __init__(self, settings: Settings, prefix: str, key: bytes) -> None:
        self.settings = settings
        self.prefix = prefix
        self.key = key
        self.generation = 0
        self._previous_chunks = 0
        self.restore_problem: str | None = None

    def write(self, payload: bytes, emit: Emit) -> int:
        """Chunks under a new generation, then the head, then tombstones for the last; returns bytes."""
        topic, previous = self.settings.topic_checkpoints, self.generation
        self.generation += 1
        chunks = [payload[i : i + CHUNK_BYTES] for i in range(0, len(payload), CHUNK_BYTES)] or [b""]
        for i, chunk in enumerate(chunks):
            emit(topic, f"{self.prefix}/{self.generation}/{i}".encode(), chunk, None)
        head = CheckpointHead(generation=self.generation, chunks=len(chunks))
        emit(topic, f"{self.prefix}/head".encode(), head.model_dump_json().encode(), None)
        for i in range(self._previous_chunks):
            emit(topic, f"{self.prefix}/{previous}/{i}".encode(), None, None)
        self._previous_chunks = len(chunks)
        return len(payload)

    def encode(self, state: dict, objects: dict) -> bytes:
        return checkpoint.encode(state, objects, self.key)

    def restore(self) -> Restored | None:
        """The latest complete, correctly signed checkpoint; None (and ``restore_problem``) otherwise."""
        latest, _ = read_latest(
            self.settings, self.settings.topic_checkpoints, RESTORE_IDLE_S, self.prefix + "/"
        )
        raw_head = latest.get(f"{self.prefix}/head")
        if raw_head is None:
            log.info("no learner checkpoint under %s: starting fresh", self.prefix)
            return None
        try:
            head = CheckpointHead.model_validate_json(raw_head)
        except ValidationError as exc:
            return self._fresh(f"the checkpoint head is not readable ({_first_error(exc)})")
        parts = [latest.get(f"{self.prefix}/{head.generation}/{i}") for i in range(head.chunks)]
        if any(p is None for p in parts):
            return self._fresh(f"checkpoint generation {head.generation} is incomplete")
        try:
            state, objects = checkpoint.decode(b"".join(parts), self.key)  # type: ignore[arg-type]
        except CheckpointRejected:
            return self._fresh("the checkpoint's signature does not match the state key")
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with it, the learner starts fresh
            return self._fresh(f"the checkpoint cannot be read ({type(exc).__name__}: {exc})")
        # the next write replaces this generation and tombstones its chunks
        self.generation, self._previous_chunks = head.generation, head.chunks
        return Restored(state, objects, head)

    def _fresh(self, problem: str) -> None:
        self.restore_problem = problem
        log.error("%s: starting fresh", problem)
        return None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(str(p) for p in error['loc']) or 'value'}: {error['msg']}"
