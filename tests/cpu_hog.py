"""``--cpu-hog``: a process holding one core at 100% for the whole test session (``make test-busy``).

Tests that pass only on a quiet machine fail under it: the suite is run as on a machine
busy with other work. The hog is a child of the pytest process that was given the option
(the controller under pytest-xdist, not its workers); it starts when the session is
configured and is stopped when the session finishes, whether tests passed, failed or were
interrupted. Should pytest itself be killed, the hog sees its parent change and exits
within milliseconds. The summary says how much CPU it took over the run.
"""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

# spins in slices of about a millisecond, checking between slices that pytest still runs
HOG = """
import os
parent = os.getppid()
while os.getppid() == parent:
    for _ in range(50_000):
        pass
"""


class CpuHog:
    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", HOG])
        self.started = time.monotonic()
        self.report: str | None = None

    def stop(self) -> None:
        if self.process.poll() is None:
            cpu = psutil.Process(self.process.pid).cpu_times()
            wall = time.monotonic() - self.started
            busy = cpu.user + cpu.system
            self.report = (
                f"CPU hog (pid {self.process.pid}): {busy:,.0f} s of CPU over the {wall:,.0f} s run "
                f"({busy / wall:.0%} of one core)"
            )
            self.process.kill()
        self.process.wait(10)


_KEY = pytest.StashKey[CpuHog]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cpu-hog",
        action="store_true",
        help="run a process that holds one core at 100% for the whole session (make test-busy)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--cpu-hog") and not hasattr(config, "workerinput"):  # not in xdist's workers
        config.stash[_KEY] = CpuHog()


def pytest_sessionfinish(session: pytest.Session) -> None:
    hog = session.config.stash.get(_KEY, None)
    if hog is not None:
        hog.stop()


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    hog = config.stash.get(_KEY, None)
    if hog is not None and hog.report:
        terminalreporter.write_line(hog.report)


def pytest_unconfigure(config: pytest.Config) -> None:
    hog = config.stash.get(_KEY, None)
    if hog is not None:  # stopped already unless the session never finished
        hog.stop()
