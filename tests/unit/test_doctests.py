"""The examples in docstrings run: every module of scoring/ and schemas/, and the dashboard's quantile.

A docstring example that no test runs goes stale without anyone noticing; here each
module's examples are run with ``doctest`` and must all pass.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import schemas
import scoring

EXTRA = ["streams.web.dashboard"]  # outside scoring/ and schemas/, a module with an example


def _modules() -> list[str]:
    names = [package.__name__ for package in (scoring, schemas)]
    for package in (scoring, schemas):
        names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    return sorted(names) + EXTRA


def _run(name: str) -> doctest.TestResults:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        runner.run(test)
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("name", _modules())
def test_the_docstring_examples_of_a_module_pass(name: str) -> None:
    result = _run(name)

    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (see above)"


def test_the_examples_are_found() -> None:
    attempted = {name: _run(name).attempted for name in ("streams.web.dashboard", "scoring.drift.windows")}

    assert attempted["streams.web.dashboard"] == 2  # histogram_quantile's two
    assert attempted["scoring.drift.windows"] >= 5
