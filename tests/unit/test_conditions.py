"""The tests' condition helper: it returns what satisfied the condition, or fails saying what it saw."""

from __future__ import annotations

import itertools

import pytest

from tests.conditions import ConditionNotMet, budget, time_scale, wait_for


def test_returns_the_first_value_that_satisfies_the_condition() -> None:
    counter = itertools.count()
    assert wait_for(lambda: next(counter), lambda n: n >= 3, timeout_s=10, what="3", interval_s=0) == 3


def test_fails_past_the_deadline_naming_what_it_waited_for_and_what_it_saw_last() -> None:
    counter = itertools.count()
    with pytest.raises(ConditionNotMet, match=r"waited for 1,000 scored \(.* s\); last saw: \d+\nlog tail"):
        wait_for(
            lambda: next(counter),
            lambda n: n >= 1000,
            timeout_s=0.05,
            what="1,000 scored",
            interval_s=0.01,
            context=lambda: "log tail",
        )


def test_fails_at_once_when_what_it_watches_has_exited() -> None:
    with pytest.raises(ConditionNotMet, match="exited while waiting for ready"):
        wait_for(lambda: False, timeout_s=3600, what="ready", alive=lambda: False)


def test_a_probe_that_cannot_connect_yet_is_tried_again_and_its_error_reported() -> None:
    def refused() -> bool:
        raise ConnectionRefusedError("port 6066")

    with pytest.raises(ConditionNotMet, match="last saw: 'ConnectionRefusedError: port 6066'"):
        wait_for(refused, timeout_s=0.05, what="the web port", interval_s=0.01)


def test_other_errors_of_the_probe_are_not_swallowed() -> None:
    def broken() -> bool:
        raise KeyError("scored")

    with pytest.raises(KeyError):
        wait_for(broken, timeout_s=10, what="a key")


def test_deadlines_scale_with_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert budget(30_000, per_s=1000, floor_s=60) == 90
    monkeypatch.setenv("STREAMSCORE_TEST_TIME_SCALE", "2.5")
    assert time_scale() == 2.5 and budget(30_000, per_s=1000, floor_s=60) == 225
    monkeypatch.setenv("STREAMSCORE_TEST_TIME_SCALE", "fast")
    with pytest.raises(ValueError, match="STREAMSCORE_TEST_TIME_SCALE='fast' is not a number"):
        time_scale()
