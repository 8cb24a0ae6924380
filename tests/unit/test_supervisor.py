"""A supervised role restarts after a failure, shows it in its health, and leaves the other roles alone."""

from __future__ import annotations

import threading
import time

from streams.services.loop.supervisor import Fatal, State, SupervisedService
from tests.conditions import wait_for


def _wait(probe, until, what: str) -> None:
    """Poll a condition (a busy machine may take seconds to schedule the role's thread)."""
    wait_for(probe, until, timeout_s=30, what=what, interval_s=0.01)


class _Backoffs(threading.Event):
    """The supervisor's stop event, recording each timed wait it is asked for: the backoffs."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None:
            self.asked.append(timeout)
        return super().wait(timeout)


def test_a_failing_role_is_restarted_with_backoff_and_its_health_says_so() -> None:
    runs: list[float] = []

    def flaky(stopping: threading.Event) -> None:
        runs.append(time.monotonic())
        if len(runs) < 3:
            raise OverflowError(f"run {len(runs)} failed")
        stopping.wait()

    service = SupervisedService("learn", flaky, join_timeout_s=1, backoff_first_s=0.05, backoff_max_s=0.2)
    service.stopping = backoffs = _Backoffs()
    thread = threading.Thread(target=service.supervise)
    thread.start()
    try:
        _wait(lambda: (service.health.state, len(runs)), lambda seen: seen == (State.running, 3),
              "(state, runs) to be (running, 3)")  # fmt: skip
        assert service.health.restarts == 2
        assert service.health.last_error == "OverflowError: run 2 failed"
        assert backoffs.asked == [0.05, 0.1], "the wait doubles"
        # and each was waited out (a slow scheduler only makes a wait longer)
        assert runs[1] - runs[0] >= 0.05 and runs[2] - runs[1] >= 0.1
    finally:
        service.stopping.set()
        thread.join(2)
    assert service.health.state is State.stopped


def test_one_role_failing_does_not_stop_another() -> None:
    steady_turns = []

    def steady(stopping: threading.Event) -> None:
        while not stopping.wait(0.01):
            steady_turns.append(1)

    def broken(stopping: threading.Event) -> None:
        raise ValueError("bad record")

    roles = [
        SupervisedService("score", steady, join_timeout_s=1),
        SupervisedService("learn", broken, join_timeout_s=1, backoff_first_s=0.01, backoff_max_s=0.02),
    ]
    threads = [threading.Thread(target=r.supervise) for r in roles]
    for t in threads:
        t.start()
    try:
        _wait(lambda: roles[1].health.restarts, lambda n: n >= 5, "five restarts of the broken role")
        seen = len(steady_turns)
        _wait(lambda: len(steady_turns), lambda n: n > seen + 5, "the score role to keep going")
        assert roles[0].health.state is State.running and roles[0].health.restarts == 0
    finally:
        for r in roles:
            r.stopping.set()
        for t in threads:
            t.join(2)


def test_a_fatal_failure_is_not_retried() -> None:
    calls = []

    def fenced(stopping: threading.Event) -> None:
        calls.append(1)
        raise Fatal("transactional producer fenced")

    service = SupervisedService("score", fenced, join_timeout_s=1, backoff_first_s=0.01)
    service.supervise()

    assert calls == [1]
    assert service.health.state is State.failed
    assert "fenced" in service.health.last_error
