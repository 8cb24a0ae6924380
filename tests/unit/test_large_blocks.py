"""The worker's large transient blocks go back to the system when freed (glibc's malloc)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# 80 MiB of 400 KiB blocks freed under a small block that stays: what a heap keeps of them shows in RSS
_CHILD = """
import sys, psutil
from streams.worker import give_back_large_blocks
set_here = give_back_large_blocks() if sys.argv[1] == "set" else None
first = b"x" * 400_000
del first  # glibc's own threshold now rises past this size
blocks = [b"x" * 400_000 for _ in range(200)]
pin = b"y" * 10_000  # after them in the heap: it cannot shrink from the top
full = psutil.Process().memory_info().rss
del blocks
print(set_here, (full - psutil.Process().memory_info().rss) / 2**20)
"""


def _given_back(mode: str) -> tuple[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode], env=env, capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    return out[0], float(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_large_blocks_leave_the_rss() -> None:
    set_here, given_back = _given_back("set")
    _, default_given_back = _given_back("default")
    print(f"of 76 MiB freed: {given_back:.1f} MiB left the RSS ({default_given_back:.1f} by glibc's default)")
    assert set_here == "True"
    assert given_back > 60
