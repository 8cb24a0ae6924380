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
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from schemas.monitor import MonitorColumns, MonitorRejected, decode_monitor
from streams.kafka.records import KafkaRecord

MAX_BYTES = 32 * 2**20  # record values held for the other role, at most
WAIT_S = 1.0  # longest wait for the other reader's decoding of a record before decoding it here


@dataclass(frozen=True, slots=True)
class _Decoded:
    value: bytes
    written_ms: int | None
    skew_ms: int
    result: MonitorColumns | MonitorRejected
    reader: int  # id() of the intake that decoded it


class MonitorDecodes:
    """Decoded monitoring records held until the other reader in the process takes them."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.decoded = 0  # records decoded here
        self.shared = 0  # records handed to the other reader without decoding
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
            result: MonitorColumns | MonitorRejected = _read_only(decode_monitor(value, written_ms, skew_ms))
        except MonitorRejected as exc:
            result = exc
        finally:
            with self._lock:
                if self._decoding.get(key, (None, None))[0] is done:
                    del self._decoding[key]
        with self._lock:
            self.decoded += 1
            reached = self._reached[key[:2]]
            passed = any(r != me and offset > key[2] for r, offset in reached.items())
            if value is not None and len(value) <= self.max_bytes and not passed:
                old = self._held.pop(key, None)
                self._bytes += len(value) - (len(old.value) if old is not None else 0)
                self._held[key] = _Decoded(value, written_ms, skew_ms, result, me)
                while self._bytes > self.max_bytes:
                    _, dropped = self._held.popitem(last=False)
                    self._bytes -= len(dropped.value)
        done.set()
        return _result(result)

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
