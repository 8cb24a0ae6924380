"""Waiting on conditions, never on fixed sleeps: poll until a deadline, fail with what was last seen.

A test that sleeps and then asserts passes only where the machine was quick enough; one that
polls a condition waits exactly as long as the work takes. ``wait_for`` polls a probe (a
``/stats`` read, a count of records) until its value satisfies a predicate and returns that
value; past the deadline it fails with what it waited for and the value it saw last, so a
failure says how far the work got.

Deadlines are derived from the work (``budget``: a floor for process start and group joins,
plus the items at a rate a busy 2-core machine still reaches) and multiplied by
``STREAMSCORE_TEST_TIME_SCALE`` (default 1), which a slower machine may raise. A wall-clock
bound stays only where the bound is the product's promise (shutdown); those tests give the
setting's value and a margin.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class ConditionNotMet(AssertionError):
    """A condition did not hold by its deadline (or what it watched died first)."""


def time_scale() -> float:
    """``STREAMSCORE_TEST_TIME_SCALE``: how much longer than the defaults this machine may take."""
    raw = os.environ.get("STREAMSCORE_TEST_TIME_SCALE", "1")
    try:
        scale = float(raw)
    except ValueError:
        raise ValueError(f"STREAMSCORE_TEST_TIME_SCALE={raw!r} is not a number") from None
    if scale <= 0:
        raise ValueError(f"STREAMSCORE_TEST_TIME_SCALE={raw!r} must be above 0")
    return scale


def budget(items: int = 0, per_s: float = 1000.0, floor_s: float = 60.0) -> float:
    """Seconds to allow for ``items`` of work done at ``per_s`` a second, after ``floor_s`` of start-up.

    ``per_s`` is a rate the machine reaches while busy (a worker scores tens of thousands of
    events a second when quiet; 1,000 a second is far below that), so the deadline is
    generous; scaled by ``STREAMSCORE_TEST_TIME_SCALE``.
    """
    return (floor_s + items / per_s) * time_scale()


def wait_for(
    probe: Callable[[], T],
    until: Callable[[T], bool] = bool,
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.1,
    alive: Callable[[], bool] | None = None,
    context: Callable[[], str] | None = None,
    retry_on: tuple[type[BaseException], ...] = (OSError,),
) -> T:
    """Call ``probe`` until ``until(value)`` holds; return that value.

    ``timeout_s`` is scaled by ``STREAMSCORE_TEST_TIME_SCALE``. A probe that raises one of
    ``retry_on`` (a web port not answering yet) is tried again, the error kept as what was
    last seen. ``alive`` false (the process watched has exited) fails at once. Either
    failure names ``what``, the seconds waited, the last value seen and ``context()`` (a
    log tail).
    """
    deadline_s = timeout_s * time_scale()
    started = time.monotonic()
    last: object = "nothing yet"
    while True:
        try:
            value = probe()
        except retry_on as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if until(value):
                return value
            last = value
        waited = time.monotonic() - started
        if alive is not None and not alive():
            raise ConditionNotMet(_message(f"exited while waiting for {what}", waited, last, context))
        if waited >= deadline_s:
            raise ConditionNotMet(_message(f"waited for {what}", waited, last, context))
        time.sleep(min(interval_s, max(0.0, deadline_s - waited)))


def _message(head: str, waited: float, last: object, context: Callable[[], str] | None) -> str:
    text = f"{head} ({waited:.1f} s); last saw: {last!r}"
    if context is not None:
        text += "\n" + context()
    return text
