"""CPU seconds per thread group of a process tree, read from ``/proc/PID/task/TID/stat`` (Linux).

A streamscore worker names each role's thread after the role (``score``, ``drift``, ``learn``,
``control``; ``streams.services.loop.supervisor.name_os_thread``); threads a role starts
(LightGBM's OpenMP pool) inherit its name. librdkafka names its own threads ``rdk:*``; they
serve every client of the process, so they are one group. The main thread (Faust, asyncio,
the web pages) is ``main``; anything else ``other``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

TICKS = os.sysconf("SC_CLK_TCK")
ROLES = ("score", "drift", "learn", "control")


def group_of(pid: int, tid: int, comm: str) -> str:
    if comm in ROLES:
        return comm
    if comm.startswith("rdk:"):
        return "librdkafka"
    if tid == pid:
        return "main"
    return "other"


def _threads(pid: int) -> dict[int, tuple[str, float]]:
    """tid -> (group, CPU seconds) of one process's threads; {} when it is gone."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for name in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{name}/stat").read_text()
        except OSError:
            continue
        # the comm is in parentheses and may hold spaces; fields after it are space separated
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        utime, stime = int(fields[11]), int(fields[12])
        tid = int(name)
        out[tid] = (group_of(pid, tid, comm), (utime + stime) / TICKS)
    return out


class ThreadSampler:
    """Samples thread CPU times of process trees every ``interval_s``; ``stop()`` returns seconds per group.

    Each thread counts from its first sample to its last (a thread that exits between
    samples loses at most one interval of CPU). ``steady`` (a count of events done) marks
    the first sample at which it is above 0 (the first output read): ``stop()`` also gives
    the CPU from that sample on, and the events done in between, so start-up is left out.
    """

    def __init__(
        self, pids: Sequence[int], interval_s: float = 0.2, steady: Callable[[], int] | None = None
    ) -> None:
        self._roots = list(pids)
        self._interval = interval_s
        self._first: dict[tuple[int, int], float] = {}
        self._last: dict[tuple[int, int], tuple[str, float]] = {}
        self._steady = steady
        self._mark: dict[tuple[int, int], float] | None = None
        self._mark_count = 0
        self.steady_s: dict[str, float] = {}
        self.steady_events = 0
        self._stop = threading.Event()
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _pids(self) -> list[int]:
        pids = []
        for root in self._roots:
            try:
                proc = psutil.Process(root)
                pids += [root, *(c.pid for c in proc.children(recursive=True))]
            except psutil.NoSuchProcess:
                continue
        return pids

    def _sample(self) -> None:
        count = self._steady() if self._steady is not None and self._mark is None else 0
        for pid in self._pids():
            for tid, (group, cpu) in _threads(pid).items():
                self._first.setdefault((pid, tid), cpu)
                self._last[(pid, tid)] = (group, cpu)
        if count > 0:
            self._mark = {key: cpu for key, (_, cpu) in self._last.items()}
            self._mark_count = count

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def stop(self) -> dict[str, float]:
        """A last sample, then CPU seconds per group since sampling began."""
        self._stop.set()
        self._thread.join()
        count = self._steady() if self._steady is not None else 0
        self._sample()
        out: dict[str, float] = {}
        for key, (group, cpu) in self._last.items():
            out[group] = out.get(group, 0.0) + cpu - self._first[key]
        if self._mark is not None:
            self.steady_events = count - self._mark_count
            for key, (group, cpu) in self._last.items():
                self.steady_s[group] = (
                    self.steady_s.get(group, 0.0) + cpu - self._mark.get(key, self._first[key])
                )
        return out
