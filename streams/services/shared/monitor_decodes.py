"""A monitoring record decoded once per process, for the drift and the learn role both.

A worker running both roles reads every ``monitor`` record twice, once per role's consumer.
Decoding (``schemas.monitor.decode_monitor``: JSON, every field bounded, rows to numpy)
was 15% of the every-role worker's samples under bench/throughput.py (py-spy), paid twice.
The first role to come to a record decodes it and leaves the result here; the other role
takes it (and it is dropped), waiting for it if it comes while the record is being decoded
(the two roles' consumers often read in step). A result is reused only for the same bytes
at the same position (``==`` on the value, not a hash), the same broker timestamp and the
same clock-skew bound, so it is what decoding would give. A refusal (``MonitorRejected``)
is kept too: the second role refuses without decoding again, and ``Refusals.first`` still
dead-letters it once.

What the other role has not taken is dropped oldest first past ``max_bytes`` of record
values (the roles' consumers run apart, after a restart or a rebalance): that role then
decodes for itself, and keeps nothing a role already past that position would need.
Results are shared between threads read-only: the decoded arrays are marked not
writeable, and no role changes the lists.

A worker whose score role runs beside them skips most decoding: the score role leaves each
monitoring record it writes here with the columns it wrote it from (``wrote``), and a role
reading a record equal byte for byte (``==`` on the whole value) to one it left takes those
columns, the event times clamped against the record's broker timestamp as decoding does. The
columns pass the codec's bounds first (``written_problem``, below); a record that would
not is decoded (and refused) as any other. Records written by another worker, or not read within
``max_written_bytes`` of later writes, are decoded: this changes what a record costs, never what
a role gets from it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from schemas.messages import EPOCH_MS_MAX, INT64_MAX, MAX_IDENTIFIER_LENGTH
from schemas.monitor import MonitorColumns, MonitorRejected, clamp_times, decode_monitor
from streams.kafka.records import KafkaRecord

MAX_BYTES = 32 * 2**20  # record values held for the other role, at most
MAX_WRITTEN_BYTES = 16 * 2**20  # record values the score role wrote, held until a reader takes them
# a written record is looked up by its length and first bytes (which hold its first offsets), then compared
HEAD_BYTES = 256
WAIT_S = 1.0  # longest wait for the other reader's decoding of a record before decoding it here


@dataclass(frozen=True, slots=True)
class Written:
    """A monitoring record the score role wrote: its value and the columns it wrote it from."""

    value: bytes
    columns: MonitorColumns
    entity_ids: list[str]  # in the record, not in the columns
    shadow_model: tuple[str, str] | None  # (name, version) of a shadow challenger, in the record


@dataclass(frozen=True, slots=True)
class _Decoded:
    value: bytes
    written_ms: int | None
    skew_ms: int
    result: MonitorColumns | MonitorRejected
    reader: int  # id() of the intake that decoded it


class MonitorDecodes:
    """Decoded monitoring records held until the other reader in the process takes them."""

    def __init__(
        self, readers: int = 2, max_bytes: int = MAX_BYTES, max_written_bytes: int = MAX_WRITTEN_BYTES
    ) -> None:
        self.readers = readers  # roles reading monitor in this process: 1 holds nothing for another
        self.max_bytes = max_bytes
        self.max_written_bytes = max_written_bytes
        self.decoded = 0  # records decoded here
        self.shared = 0  # records handed to the other reader without decoding
        self.from_score = 0  # records taken as this process's score role wrote them, without decoding
        self._written: OrderedDict[tuple[int, bytes], list[Written]] = OrderedDict()
        self._written_bytes = 0
        self._held: OrderedDict[tuple[str, int, int], _Decoded] = OrderedDict()
        self._bytes = 0
        self._reached: dict[tuple[str, int], dict[int, int]] = {}  # (topic, partition) -> reader -> offset
        self._decoding: dict[tuple[str, int, int], tuple[threading.Event, int]] = {}  # being decoded, by whom
        self._lock = threading.Lock()

    def decode(
        self, record: KafkaRecord, written_ms: int | None, skew_ms: int, reader: object
    ) -> MonitorColumns:
        """``decode_monitor`` of ``record``, or what another reader's decoding of it gave (waiting for
        it while the other reader is decoding it: the two roles' consumers often read in step)."""
        value = record.value()
        key = (record.topic(), record.partition(), record.offset())
        me = id(reader)
        for _ in range(2):
            with self._lock:
                self._reached.setdefault(key[:2], {})[me] = key[2]
                taken = self._take(key, value, written_ms, skew_ms, me)
                if taken is not None:
                    return _result(taken)
                busy = self._decoding.get(key)
                if busy is None or busy[1] == me:
                    done = threading.Event()
                    self._decoding[key] = (done, me)
                    break
            busy[0].wait(WAIT_S)  # the other reader is decoding it: take its result, then
        else:
            done = threading.Event()  # it did not come in time: decode it here, for this reader only
        try:
            result: MonitorColumns | MonitorRejected | None = self._own(value, written_ms, skew_ms)
            taken = result is not None
            if result is None:
                result = _read_only(decode_monitor(value, written_ms, skew_ms))
        except MonitorRejected as exc:
            result, taken = exc, False
        finally:
            with self._lock:
                if self._decoding.get(key, (None, None))[0] is done:
                    del self._decoding[key]
        with self._lock:
            if taken:
                self.from_score += 1
            else:
                self.decoded += 1
            reached = self._reached[key[:2]]
            passed = any(r != me and offset > key[2] for r, offset in reached.items())
            if self.readers > 1 and value is not None and len(value) <= self.max_bytes and not passed:
                old = self._held.pop(key, None)
                self._bytes += len(value) - (len(old.value) if old is not None else 0)
                self._held[key] = _Decoded(value, written_ms, skew_ms, result, me)
                while self._bytes > self.max_bytes:
                    _, dropped = self._held.popitem(last=False)
                    self._bytes -= len(dropped.value)
        done.set()
        return _result(result)

    def wrote(self, written: Written) -> None:
        """The score role wrote this record (called after its produce; the columns are not changed after)."""
        value = written.value
        if len(value) > self.max_written_bytes:
            return
        key = (len(value), value[:HEAD_BYTES])
        with self._lock:
            self._written.setdefault(key, []).append(written)
            self._written_bytes += len(value)
            while self._written_bytes > self.max_written_bytes:
                _, dropped = self._written.popitem(last=False)
                self._written_bytes -= sum(len(w.value) for w in dropped)

    def _own(self, value: bytes | None, written_ms: int | None, skew_ms: int) -> MonitorColumns | None:
        """The columns this process's score role wrote ``value`` from, clamped as decoding would; None if
        it did not write these bytes (or not recently), or they would not pass the codec's bounds."""
        if value is None or not self._written:
            return None
        key = (len(value), value[:HEAD_BYTES])
        with self._lock:
            candidates = self._written.get(key)
            if not candidates:
                return None
            for i, written in enumerate(candidates):
                if written.value == value:
                    del candidates[i]
                    self._written_bytes -= len(value)
                    break
            else:
                return None
            if not candidates:
                del self._written[key]
        if written_problem(written.columns, written.entity_ids, written.shadow_model) is not None:
            return None
        return _read_only(clamp_times(written.columns, written_ms, skew_ms))

    def _take(
        self, key: tuple[str, int, int], value: bytes | None, written_ms: int | None, skew_ms: int, me: int
    ) -> MonitorColumns | MonitorRejected | None:
        """The other reader's result for these bytes at this position (dropped once taken); None if none."""
        held = self._held.get(key)
        if held is None or held.reader == me:
            return None
        del self._held[key]
        self._bytes -= len(held.value)
        if held.value == value and held.written_ms == written_ms and held.skew_ms == skew_ms:
            self.shared += 1
            return held.result
        return None


def _result(result: MonitorColumns | MonitorRejected) -> MonitorColumns:
    if isinstance(result, MonitorRejected):
        raise MonitorRejected(*result.args)
    return result


def _read_only(columns: MonitorColumns) -> MonitorColumns:
    arrays = (columns.scores, columns.rows, columns.shadow_scores, columns.probabilities)
    for array in (*arrays, columns.shadow_probabilities):
        if array is not None:
            array.flags.writeable = False
    return columns


def written_problem(
    columns: MonitorColumns, entity_ids: Sequence[str], shadow_model: tuple[str, str] | None
) -> str | None:
    """Why ``decode_monitor`` would refuse the record ``columns`` were written as; None if it reads it
    back to equal columns.

    The score role writes its monitoring records from columns it holds (``emit_monitor``); a
    worker whose drift or learn role reads a record byte for byte as its own score role wrote it
    takes those columns instead of decoding the text (``MonitorDecodes``). This applies the
    codec's bounds to the columns, so a record the codec would refuse is decoded (and refused)
    as any other. ``entity_ids`` and the shadow challenger's (name, version) are what the record
    carries beside the columns. A multiclass shadow challenger's probabilities are not handed
    over (their nulls are per row): such records are always decoded.
    """
    n = len(columns.scores)
    names = list(columns.feature_names)
    identifiers = [columns.model_name, columns.model_version, columns.source_topic, *names]
    if shadow_model is not None:
        identifiers += shadow_model
    if not _identifiers(identifiers) or not _identifiers(columns.event_ids) or not _identifiers(entity_ids):
        return "an identifier out of bounds"
    if not (
        len(columns.event_ids) == len(entity_ids) == len(columns.offsets) == len(columns.event_times) == n
    ):
        return "columns of different lengths"
    if type(columns.partition) is not int or not 0 <= columns.partition < 2**31:
        return "partition out of range"
    if not _bounded(columns.offsets, INT64_MAX) or not _bounded(columns.event_times, EPOCH_MS_MAX):
        return "an offset or an event time out of range"
    if not _floats(columns.scores, (n,)) or not np.isfinite(columns.scores).all():
        return "scores not finite"
    if not _floats(columns.rows, (n, len(names))) or np.isinf(columns.rows).any():
        return "rows not finite"
    if (columns.shadow_scores is None) != (shadow_model is None) or columns.shadow_probabilities is not None:
        return "a shadow challenger's columns this check does not hand over"
    if columns.shadow_scores is not None and (
        not _floats(columns.shadow_scores, (n,)) or np.isinf(columns.shadow_scores).any()
    ):
        return "shadow scores not finite"
    classes = list(columns.classes)
    if columns.probabilities is None:
        return "classes without probabilities" if classes else None
    if len(classes) < 2 or len(set(classes)) != len(classes) or not _identifiers(classes):
        return "classes out of bounds"
    if not _floats(columns.probabilities, (n, len(classes))) or not np.isfinite(columns.probabilities).all():
        return "probabilities not finite"
    return None


def _identifiers(values: Sequence) -> bool:
    """Strings of 1 to ``MAX_IDENTIFIER_LENGTH`` characters (``all``: no empty string among them)."""
    if not set(map(type, values)) <= {str}:
        return False
    return not values or (all(values) and max(map(len, values)) <= MAX_IDENTIFIER_LENGTH)


def _bounded(values: Sequence, upper: int) -> bool:
    """Integers in [0, ``upper``]."""
    if not set(map(type, values)) <= {int}:
        return False
    return not values or (min(values) >= 0 and max(values) <= upper)


def _floats(array: object, shape: tuple[int, ...]) -> bool:
    return isinstance(array, np.ndarray) and array.dtype == np.float64 and array.shape == shape
