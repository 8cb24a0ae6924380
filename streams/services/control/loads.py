"""Model updates prepared off the control loop: a slow bundle source delays only its own update.

Each update's bundles are loaded and gated on a thread of their own (a remote registry can
be slow, or never answer). The control loop keeps reading ``model-updates`` and collects
what finished: an update that took longer than ``timeout_s`` is given up (its thread is
left to end on its own; its result is dropped), and an update that finishes after a newer
one was applied is dropped as superseded, so the newest update on the topic wins.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from schemas.lifecycle import ModelUpdate
from scoring.errors import BundleError
from scoring.lifecycle.decisions import Serving

T = TypeVar("T")


@dataclass
class Load:
    seq: int
    update: ModelUpdate
    started: float
    serving: Serving | None = None
    error: Exception | None = None
    done: threading.Event = field(default_factory=threading.Event)
    timed_out: bool = False


class PendingLoads:
    """Updates being prepared, in arrival order; ``finished`` hands back each one once."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._seq = 0
        self._loads: list[Load] = []

    def start(self, update: ModelUpdate, prepare: Callable[[ModelUpdate], Serving]) -> Load:
        self._seq += 1
        load = Load(self._seq, update, time.monotonic())

        def run() -> None:
            try:
                load.serving = prepare(update)
            except Exception as exc:  # noqa: BLE001 - the caller turns it into an alert
                load.error = exc
            finally:
                load.done.set()

        threading.Thread(target=run, name=f"model-load-{load.seq}", daemon=True).start()
        self._loads.append(load)
        return load

    def finished(self) -> list[Load]:
        """Loads done or past the timeout since the last call, in arrival order."""
        now, out, still = time.monotonic(), [], []
        for load in self._loads:
            if load.done.is_set():
                out.append(load)
            elif now - load.started > self.timeout_s:
                load.timed_out = True
                out.append(load)
            else:
                still.append(load)
        self._loads = still
        return out

    def __len__(self) -> int:
        return len(self._loads)


def load_within(load: Callable[[], T], timeout_s: float, what: str) -> T:
    """``load()`` on a thread of its own, given up (``BundleError``) after ``timeout_s``; the thread is
    left to end on its own. What ``load`` raises is raised here."""
    result: list = []

    def run() -> None:
        try:
            result.append((True, load()))
        except Exception as exc:  # noqa: BLE001 - raised again on the caller's thread
            result.append((False, exc))

    thread = threading.Thread(target=run, name=f"load-{what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not result:
        raise BundleError(f"loading {what} took over {timeout_s:.0f} s: given up")
    ok, value = result[0]
    if not ok:
        raise value
    return value
