"""A ``mode.Service`` that runs a blocking loop on a thread of its own and restarts it when it fails.

The Faust worker starts and stops it with everything else; the loop (a confluent-kafka
consumer, per-event Python work) stays off the event loop. One role failing is not the
end of the process: the failure is logged and counted, the role shows as ``restarting``
in ``/health`` and ``/ready``, and its loop starts again with new clients after a backoff
(1 s, doubling to 30 s; back to 1 s after a run that lasted a minute). The other roles
keep running meanwhile.

``Fatal`` is the one exception that is not retried (a transactional producer fenced by a
newer incarnation of the same instance): the role shows as ``failed`` and ``/health``
answers 503 so an orchestrator replaces the process.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from mode import Service

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
HEALTHY_RUN_S = 60.0  # a run this long resets the backoff


class Fatal(Exception):
    """A failure that restarting the role cannot mend."""


class State(StrEnum):
    starting = "starting"
    running = "running"
    restarting = "restarting"  # failed; waiting out the backoff before the next start
    failed = "failed"  # gave up (Fatal)
    stopped = "stopped"


@dataclass
class Health:
    """One supervised role as ``/health`` shows it."""

    state: State = State.starting
    restarts: int = 0
    last_error: str | None = None
    since: float = 0.0

    def as_dict(self) -> dict:
        return {
            "state": self.state.value,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "since": round(self.since, 3),
        }


class SupervisedService(Service):
    """Runs ``run(stopping)`` on a thread until ``stopping`` is set, restarting it after a failure."""

    def __init__(
        self,
        name: str,
        run: Callable[[threading.Event], None],
        join_timeout_s: float,
        backoff_first_s: float = BACKOFF_FIRST_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self._work = run
        self._join_timeout_s = join_timeout_s
        self._backoff = (backoff_first_s, backoff_max_s)
        self.stopping = threading.Event()
        self.health = Health(since=time.time())
        self._thread: threading.Thread | None = None

    @property
    def label(self) -> str:  # mode's name for the service in its logs
        return f"{type(self).__name__}[{self.name}]"

    async def on_start(self) -> None:
        self._thread = threading.Thread(target=self.supervise, name=self.name, daemon=True)
        self._thread.start()

    async def on_stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, self._join_timeout_s)

    def supervise(self) -> None:
        """Run the work until stopped; after a failure, wait and run it again."""
        name_os_thread(self.name)
        delay = self._backoff[0]
        while not self.stopping.is_set():
            started = time.monotonic()
            self._set(State.running)
            try:
                self._work(self.stopping)
            except Fatal as exc:
                log.exception("%s failed and will not be restarted", self.name)
                self.health.last_error = _describe(exc)
                self._set(State.failed)
                return
            except Exception as exc:
                log.exception("%s failed; restarting in %.0f s", self.name, delay)
                self.health.restarts += 1
                self.health.last_error = _describe(exc)
                self._set(State.restarting)
                if time.monotonic() - started >= HEALTHY_RUN_S:
                    delay = self._backoff[0]
                self.stopping.wait(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            if not self.stopping.is_set():  # returned by itself: run it again
                log.warning("%s returned without being stopped; starting it again", self.name)
                self.stopping.wait(self._backoff[0])
        self._set(State.stopped)

    def _set(self, state: State) -> None:
        self.health.state = state
        self.health.since = time.time()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


_PR_SET_NAME = 15


def name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` in the OS too (Linux, 15 bytes), so ``top -H``, py-spy and
    ``/proc/PID/task/TID/comm`` show which role a thread's CPU is; a no-op where that is not possible."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
    except (OSError, AttributeError):
        pass
