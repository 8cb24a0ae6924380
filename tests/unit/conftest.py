"""Unit-test settings: hypothesis keeps no example database on disk and has no deadline."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("unit", database=None, deadline=None, max_examples=150)
settings.load_profile("unit")


@pytest.fixture(autouse=True)
def _no_streamscore_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read ``STREAMSCORE_*``; a variable set in the caller's shell must not leak in."""
    for name in list(os.environ):
        if name.startswith("STREAMSCORE_"):
            monkeypatch.delenv(name)
