"""What the benchmarks measure with: CPU and RSS of process trees, and outputs read back with their times."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson
import psutil
from common import partition_count, unique
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition


@dataclass
class Usage:
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0


class TreeSampler:
    """Samples CPU seconds and RSS of process trees every ``interval_s`` in a thread.

    CPU is the sum over every process seen of its last sampled user+system time
    (minus what it had used when sampling began); peak RSS is the largest sum of
    RSS over the trees at one sample.
    """

    def __init__(self, pids: Sequence[int], interval_s: float = 0.2) -> None:
        self._roots = list(pids)
        self._interval = interval_s
        self._cpu: dict[int, float] = {}
        self._procs: dict[int, psutil.Process] = {}
        self._base: dict[int, float] = {}
        self.usage = Usage()
        self._stop = threading.Event()
        self._sample()
        self._base = dict(self._cpu)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _proc(self, pid: int) -> psutil.Process:
        if pid not in self._procs:
            self._procs[pid] = psutil.Process(pid)
        return self._procs[pid]

    def _sample(self) -> None:
        rss = 0
        for root in self._roots:
            try:
                proc = self._proc(root)
                tree = [proc, *(self._proc(c.pid) for c in proc.children(recursive=True))]
            except psutil.NoSuchProcess:
                continue
            for p in tree:
                try:
                    with p.oneshot():
                        t = p.cpu_times()
                        rss += p.memory_info().rss
                    self._cpu[p.pid] = t.user + t.system
                except psutil.NoSuchProcess:
                    pass
        cpu = sum(v - self._base.get(pid, 0.0) for pid, v in self._cpu.items())
        self.usage = Usage(cpu, max(self.usage.peak_rss_mb, rss / 2**20))

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def stop(self) -> Usage:
        """Take a last sample, stop sampling, and return the totals."""
        self._stop.set()
        self._thread.join()
        self._sample()
        return self.usage


# ---------------------------------------------------------------- reading output


@dataclass
class ReadResult:
    count: int = 0
    first_at: float | None = None  # time.time() when the first fetch with messages was read
    first_count: int = 0  # messages in that first fetch
    done_at: float | None = None  # ... when the target count was reached
    done_count: int = 0  # messages read by then
    values: list[bytes] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # read time of each value (keep_times)

    def rate(self) -> float:
        """Events per second after the first fetch up to the target message.

        The messages of the first fetch are left out of the count: they piled up
        while the reader waited for it, so counting them would inflate the rate.
        """
        if self.first_at is None or self.done_at is None or self.done_at <= self.first_at:
            return 0.0
        return (self.done_count - self.first_count) / (self.done_at - self.first_at)


# Tansu 0.6.0 answers a fetch only when fetch.wait.max.ms runs out (new data does not
# wake it), so read times are late by up to that wait: 100 ms for throughput, 5 ms for
# latency. While a fetch waits, Tansu spends CPU in proportion to the record batches
# in the partition, so tailing a topic written one message per batch (Faust) costs
# the broker most of a core: the tables report broker CPU beside each contender.
THROUGHPUT_FETCH = {"fetch.wait.max.ms": 100}
LATENCY_FETCH = {"fetch.wait.max.ms": 5}


class OutputReader:
    """Reads a topic from the beginning in a thread (assigned partitions, no group join).

    Keeps every value (and with ``keep_times`` the wall time it was read);
    ``wait_for`` blocks until ``target`` messages were read. ``latency`` selects
    frequent short fetches for read times within a few ms.
    """

    def __init__(
        self, bootstrap: str, topic: str, target: int = 0, keep_times: bool = False, latency: bool = False
    ) -> None:
        self.topic = topic
        self.target = target
        self.result = ReadResult()
        self._keep_times = keep_times
        self._timeout = 0.002 if latency else 0.01
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": unique("bench-reader"),
                "enable.auto.commit": False,
                **(LATENCY_FETCH if latency else THROUGHPUT_FETCH),
            }
        )
        n = partition_count(bootstrap, topic)
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(n)])
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        res = self.result
        while not self._stop.is_set():
            msgs = self._consumer.consume(10_000, self._timeout)
            if not msgs:
                continue
            now = time.time()
            good = [m.value() for m in msgs if m.error() is None]
            with self._cond:
                if res.first_at is None and good:
                    res.first_at, res.first_count = now, len(good)
                res.values.extend(good)
                if self._keep_times:
                    res.times.extend([now] * len(good))
                res.count += len(good)
                if res.done_at is None and self.target and res.count >= self.target:
                    res.done_at, res.done_count = now, res.count
                self._cond.notify_all()
        self._consumer.close()

    def wait_for(
        self, idle_timeout_s: float, start_timeout_s: float, alive: Callable[[], bool] = lambda: True
    ) -> bool:
        """Wait for ``target`` messages; False on a stall, a slow start, or a dead contender."""
        started = time.monotonic()
        seen, seen_at = 0, time.monotonic()
        with self._cond:
            while self.result.count < self.target:
                self._cond.wait(0.2)
                now = time.monotonic()
                if self.result.count != seen:
                    seen, seen_at = self.result.count, now
                elif not alive():
                    return False
                if seen == 0 and now - started > start_timeout_s:
                    return False
                if seen > 0 and now - seen_at > idle_timeout_s:
                    return False
            return True

    def count(self) -> int:
        with self._cond:
            return self.result.count

    def stop(self) -> ReadResult:
        self._stop.set()
        self._thread.join(10)
        return self.result


def distinct_event_ids(values: Sequence[bytes]) -> int:
    ids = set()
    for v in values:
        with contextlib.suppress(orjson.JSONDecodeError):
            ids.add(orjson.loads(v).get("event_id"))
    return len(ids)
