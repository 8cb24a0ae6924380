"""The locks against pyproject.toml and against the environment the tests run in.

``requirements-dev.txt`` (runtime and dev dependencies resolved together) is what
``make install`` and CI install; ``requirements.txt`` (its runtime part) is what the image
installs. Both are made by ``make lock`` (uv); the last test runs it again on copies and
needs the package index (marked ``tools``: ``make unit`` leaves it out).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ("requirements-dev.txt", "requirements.txt")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", re.MULTILINE)


def pins(path: Path) -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in _PIN.findall(path.read_text())}


def declared() -> tuple[list[Requirement], list[Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = [Requirement(r) for r in project["dependencies"]]
    return runtime, [Requirement(r) for r in project["optional-dependencies"]["dev"]]


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    runtime, dev = declared()
    for lock, requirements in (("requirements-dev.txt", runtime + dev), ("requirements.txt", runtime)):
        locked = pins(ROOT / lock)
        for req in requirements:
            name = canonicalize_name(req.name)
            assert name in locked, f"{req.name} is not in {lock}: run `make lock`"
            assert req.specifier.contains(locked[name], prereleases=True), (
                f"{lock} pins {req.name}=={locked[name]} outside {req.specifier}: run `make lock`"
            )


def test_the_image_gets_the_runtime_versions_the_tests_run() -> None:
    dev, image = pins(ROOT / "requirements-dev.txt"), pins(ROOT / "requirements.txt")
    differ = {name: (v, dev.get(name)) for name, v in image.items() if dev.get(name) != v}
    assert differ == {}
    dev_only = {canonicalize_name(r.name) for r in declared()[1]}
    assert not dev_only & image.keys(), "a dev tool is in the image's lock"
    assert {"faust-streaming", "lightgbm", "river", "confluent-kafka"} <= image.keys()


def test_this_environment_runs_the_locked_versions() -> None:
    installed = {}
    for name in pins(ROOT / "requirements-dev.txt"):
        try:
            installed[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed[name] = None
    locked = pins(ROOT / "requirements-dev.txt")
    differ = {name: (locked[name], installed[name]) for name in locked if installed[name] != locked[name]}
    assert differ == {}, f"(locked, installed) differ: run `make install`: {differ}"


@pytest.mark.tools  # the package index
def test_the_locks_are_what_make_lock_makes_from_pyproject(tmp_path: Path) -> None:
    """Recompiles copies (uv keeps what they pin where pyproject admits it): a change is a stale lock."""
    for lock in LOCKS:
        shutil.copy(ROOT / lock, tmp_path / lock)
    done = subprocess.run(
        ["make", "-s", "--no-print-directory", "-o", ".venv/.installed", "lock", f"LOCK_DIR={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for lock in LOCKS:
        committed, fresh = pins(ROOT / lock), pins(tmp_path / lock)
        changed = sorted(set(committed.items()) ^ set(fresh.items()))
        assert changed == [], f"{lock} is out of date with pyproject.toml (run `make lock`): {changed}"
