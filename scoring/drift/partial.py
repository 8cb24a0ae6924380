"""One partition's share of a drift window, as state a merge can use and as bytes for a topic.

A ``WindowPartial`` keeps what a merge needs to give exactly the report one
``VersionMonitor`` gives for the union of the partitions' windows: the encoded rows and
the scores themselves (so KS stays exact and PSI, chi-square and missing rates are
recounted from the same values), the earliest and latest event times, the offset spans,
and the score-detector changes seen on that partition. Keeping raw values rather than bin
counts and a KS sketch costs memory and bytes, but no error bound to state.

Size: ``8 * (features + 1)`` bytes per event (float64 rows and scores), plus a JSON header
of a few hundred bytes (more with detector changes): 168 bytes per event for a 20-feature
model, 420 kB for a 2,500-event partition window. A multiclass model's partial also holds
every event's class probabilities (``8 * classes`` bytes more per event; the header says
``classes``, which the partials of other models leave out: their bytes are as before).

Wire format (``to_bytes``; ``from_bytes`` reads it back exactly, NaN bits included)::

    b"SSWP"  format (u8 = 1)  header length (u32 LE)  crc32 of header length and all after (u32 LE)
    header (JSON)  rows (events x features float64 LE, row-major)  scores (events float64 LE)
    [multiclass: probabilities (events x classes float64 LE, row-major)]

Partials come from a Kafka topic, so untrusted: ``from_bytes`` raises ``PartialRejected``
(a ``ValueError``) saying what is wrong, and nothing else, on any input.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.drift import DetectorChange, PartitionSpan
from schemas.messages import EPOCH_MS_MAX, INT64_MAX, MAX_IDENTIFIER_LENGTH
from scoring.model.metadata import MAX_CLASSES

MAGIC = b"SSWP"
FORMAT = 1
_PREFIX = struct.Struct("<4sBII")  # magic, format, header length, crc32 of the header length and the rest
MAX_PARTIAL_BYTES = 64 << 20
MAX_HEADER_BYTES = 4 << 20
MAX_FEATURES = 100_000
MAX_PARTITIONS = 100_000
_F8 = np.dtype("<f8")

Identifier = Annotated[str, Field(min_length=1, max_length=MAX_IDENTIFIER_LENGTH)]
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
EpochMs = Annotated[int, Field(ge=0, le=EPOCH_MS_MAX)]


class PartialRejected(ValueError):
    """Bytes that are not a well-formed window partial."""


class _Header(BaseModel):
    """Everything of a partial but its arrays; checked field by field on the way in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: Identifier
    model_version: Identifier
    partition: int = Field(ge=0, lt=MAX_PARTITIONS)
    partitions: int = Field(ge=1, le=MAX_PARTITIONS)
    window: Count
    quota: int = Field(ge=1, le=INT64_MAX, description="events per partition window")
    events: int = Field(ge=1, le=INT64_MAX)
    features: int = Field(ge=1, le=MAX_FEATURES)
    classes: int = Field(0, ge=0, le=MAX_CLASSES, description="multiclass: probabilities per event")
    start_time: EpochMs
    end_time: EpochMs
    spans: list[PartitionSpan] = Field(min_length=1)
    changes: list[DetectorChange]

    @model_validator(mode="after")
    def _consistent(self) -> _Header:
        if self.partition >= self.partitions:
            raise ValueError(f"partition {self.partition} of {self.partitions} partitions")
        if self.classes == 1:
            raise ValueError("a multiclass model has at least 2 classes")
        if self.events > self.quota:
            raise ValueError(f"{self.events} events in a window of {self.quota} per partition")
        if self.start_time > self.end_time:
            raise ValueError(f"start time {self.start_time} after end time {self.end_time}")
        for span in self.spans:
            if not 0 <= span.first_offset <= span.last_offset <= INT64_MAX or span.partition < 0:
                raise ValueError(
                    f"span {span.topic}[{span.partition}] {span.first_offset}-{span.last_offset}"
                )
        for change in self.changes:
            if change.model_version != self.model_version or change.stream != "score":
                raise ValueError("a detector change of another version or stream")
        return self


@dataclass(frozen=True, eq=False)
class WindowPartial:
    """Partition ``partition``'s ``window``-th window of one model version: its events and whereabouts."""

    model_name: str
    model_version: str
    partition: int  # of the topic windows are cut over (monitor); its records may name other sources
    partitions: int  # P: the window is complete with partitions 0..P-1
    window: int
    quota: int  # events per partition window, ceil(window_events / P)
    start_time: int  # earliest event time, epoch ms
    end_time: int  # latest
    spans: tuple[PartitionSpan, ...]
    changes: tuple[DetectorChange, ...]
    rows: np.ndarray  # events x features float64, NaN = missing
    scores: np.ndarray  # events float64
    probabilities: np.ndarray | None = None  # multiclass: events x classes float64

    @property
    def events(self) -> int:
        return len(self.scores)

    @property
    def key(self) -> tuple[str, str, int, int]:
        """What makes a partial unique: (name, version, window, partition); a second copy is a duplicate."""
        return (self.model_name, self.model_version, self.window, self.partition)

    def to_bytes(self) -> bytes:
        rows = np.ascontiguousarray(self.rows, dtype=_F8)
        classes = {} if self.probabilities is None else {"classes": self.probabilities.shape[1]}
        header = orjson.dumps(
            {
                "model_name": self.model_name,
                "model_version": self.model_version,
                "partition": self.partition,
                "partitions": self.partitions,
                "window": self.window,
                "quota": self.quota,
                "events": self.events,
                "features": rows.shape[1] if rows.ndim == 2 else 0,
                **classes,
                "start_time": self.start_time,
                "end_time": self.end_time,
                "spans": [s.model_dump() for s in self.spans],
                "changes": [c.model_dump() for c in self.changes],
            }
        )
        rest = header + rows.tobytes() + np.ascontiguousarray(self.scores, dtype=_F8).tobytes()
        if self.probabilities is not None:
            rest += np.ascontiguousarray(self.probabilities, dtype=_F8).tobytes()
        return _PREFIX.pack(MAGIC, FORMAT, len(header), _crc(len(header), rest)) + rest

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview | None) -> WindowPartial:
        """The partial in ``data``, or ``PartialRejected`` saying why it is not one."""
        if data is None:
            raise PartialRejected("window partial: no bytes (null value)")
        data = bytes(data)
        if len(data) < _PREFIX.size:
            raise PartialRejected(f"window partial truncated: {len(data)} bytes, less than its prefix")
        if len(data) > MAX_PARTIAL_BYTES:
            raise PartialRejected(f"window partial of {len(data)} bytes exceeds {MAX_PARTIAL_BYTES}")
        magic, version, header_length, crc = _PREFIX.unpack_from(data)
        if magic != MAGIC:
            raise PartialRejected(f"not a window partial: starts with {magic!r}, not {MAGIC!r}")
        if version != FORMAT:
            raise PartialRejected(f"window partial format {version}, this reader knows {FORMAT}")
        rest = memoryview(data)[_PREFIX.size :]
        if _crc(header_length, rest) != crc:
            raise PartialRejected("window partial garbled or truncated: checksum mismatch")
        if header_length > min(len(rest), MAX_HEADER_BYTES):
            raise PartialRejected(f"window partial header of {header_length} bytes in {len(rest)}")
        header = _header(bytes(rest[:header_length]))
        cells, n, k = header.events * header.features, header.events, header.classes
        if len(rest) != header_length + 8 * (cells + n + n * k):
            raise PartialRejected(
                f"window partial of {len(data)} bytes does not hold {n} events x {header.features} features"
                + (f" and {k} class probabilities" if k else "")
            )
        rows = np.frombuffer(rest, _F8, cells, header_length).astype(np.float64).reshape(n, header.features)
        scores = np.frombuffer(rest, _F8, n, header_length + 8 * cells).astype(np.float64)
        if not np.isfinite(scores).all():
            raise PartialRejected("window partial: scores must be finite")
        if np.isinf(rows).any():
            raise PartialRejected("window partial: row values must be finite or NaN (missing)")
        probabilities = None
        if k:
            at = header_length + 8 * (cells + n)
            probabilities = np.frombuffer(rest, _F8, n * k, at).astype(np.float64).reshape(n, k)
            if not ((probabilities >= 0) & (probabilities <= 1)).all():  # NaN fails both
                raise PartialRejected("window partial: class probabilities must be within [0, 1]")
        return cls(
            model_name=header.model_name,
            model_version=header.model_version,
            partition=header.partition,
            partitions=header.partitions,
            window=header.window,
            quota=header.quota,
            start_time=header.start_time,
            end_time=header.end_time,
            spans=tuple(header.spans),
            changes=tuple(header.changes),
            rows=rows,
            scores=scores,
            probabilities=probabilities,
        )


def _crc(header_length: int, rest: bytes | memoryview) -> int:
    return zlib.crc32(rest, zlib.crc32(header_length.to_bytes(4, "little")))


def _header(raw: bytes) -> _Header:
    try:
        return _Header.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in error["loc"]) or "header"
        raise PartialRejected(f"window partial header invalid: {where}: {error['msg']}") from None
