"""`make state-key`: the compose stack's checkpoint key is made once, private, and never overwritten."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _make_state_key(folder: Path) -> subprocess.CompletedProcess:
    """The repository's `make state-key`, run with ``folder`` as the checkout it writes into."""
    return subprocess.run(
        [
            "make",
            "-s",
            "-f",
            str(ROOT / "Makefile"),
            "-C",
            str(folder),
            "state-key",
            f"PYTHON={sys.executable}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_make_state_key_makes_a_private_key_once_and_never_overwrites_it(tmp_path: Path) -> None:
    made = _make_state_key(tmp_path)
    assert made.returncode == 0, made.stderr
    key = tmp_path / "deploy" / "secrets" / "state.key"
    assert re.fullmatch(r"[0-9a-f]{64}\n", key.read_text()), "64 hex digits: 32 random bytes"
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(key.stat().st_mode) == 0o644  # mounted as it is for the worker's uid

    first = key.read_text()
    again = _make_state_key(tmp_path)
    assert again.returncode == 0, again.stderr
    assert key.read_text() == first

    key.write_text("an operator's own key\n")  # whatever is there, and however old, stays
    os.utime(key, (0, 0))
    third = _make_state_key(tmp_path)
    assert third.returncode == 0, third.stderr
    assert key.read_text() == "an operator's own key\n"
