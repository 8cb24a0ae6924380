"""The STREAMSCORE_* environment: a bad value names its variable, an unknown variable is an error."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from scoring.errors import ConfigError
from streams.environment import NOT_SETTINGS, check_environment, load_settings, variable
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[2]
# unknown on purpose: the examples of this rule, and the setting test_docs adds to a subclass
TYPOS = {"STREAMSCORE_BATCHSIZE", "STREAMSCORE_FOO", "STREAMSCORE_FROBNICATE_INTERVAL_S"}


def test_a_bad_value_names_the_variable_the_value_and_the_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSCORE_BATCH_SIZE", "abc")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == (
        "STREAMSCORE_BATCH_SIZE='abc' is not valid: expected an integer; unset it for the default 2000"
    )


@pytest.mark.parametrize(
    "name, value, says",
    [
        ("STREAMSCORE_PARTITIONS", "0", "STREAMSCORE_PARTITIONS='0' is not valid: expected a number >= 1;"),
        (
            "STREAMSCORE_SCORE_PATH",
            "fast",
            "STREAMSCORE_SCORE_PATH='fast' is not valid: expected 'batch' or 'agent';",
        ),
        (
            "STREAMSCORE_MONITOR_ENABLED",
            "maybe",
            "is not valid: expected true or false; unset it for the default true",
        ),
        (
            "STREAMSCORE_DRIFT_P_VALUE",
            "2",
            "STREAMSCORE_DRIFT_P_VALUE='2' is not valid: expected a number < 1",
        ),
        (
            "STREAMSCORE_ROLES",
            "score,explain",
            "STREAMSCORE_ROLES='score,explain' is not valid: roles must be",
        ),
    ],
)
def test_each_kind_of_bad_value_says_what_it_should_be(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_settings()


def test_a_bad_flag_value_names_the_setting_and_a_rule_across_settings_its_own_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match=r"^web_port='x' is not valid: expected an integer$"):
        load_settings(web_port="x")
    monkeypatch.setenv("STREAMSCORE_APP_ID", "same")
    monkeypatch.setenv("STREAMSCORE_GROUP_ID", "same")
    with pytest.raises(ConfigError, match=r"^group_id 'same' must differ from app_id"):
        load_settings()


def test_an_unknown_variable_is_an_error_naming_the_closest_known_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMSCORE_BATCHSIZE", "500")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    first, advice = str(caught.value).splitlines()
    assert first == "unknown environment variable STREAMSCORE_BATCHSIZE; did you mean STREAMSCORE_BATCH_SIZE?"
    assert "fix or unset it" in advice


def test_an_unknown_variable_far_from_any_known_one_gets_no_guess() -> None:
    with pytest.raises(ConfigError, match=r"^unknown environment variable STREAMSCORE_FOO\n"):
        check_environment({"STREAMSCORE_FOO": "1"})


def test_known_settings_in_any_case_and_the_projects_own_variables_pass() -> None:
    check_environment(
        {"streamscore_batch_size": "5", "STREAMSCORE_DEBUG": "1", "STREAMSCORE_TEST_BROKER": "x"}
    )
    check_environment({"OTHER_TOOL_BATCHSIZE": "1", "KAFKA_BOOTSTRAP": "x"})


def test_every_streamscore_variable_named_in_the_repository_is_known() -> None:
    """CI, tests, docs, compose and benchmarks set these: each must be a setting or on the allow-list."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    named: dict[str, str] = {}
    for path in files.split():
        text = (REPO / path).read_text(errors="ignore") if (REPO / path).is_file() else ""
        for name in re.findall(r"STREAMSCORE_[A-Z0-9_]*[A-Z0-9]\b(?![_*])", text):
            named.setdefault(name, path)
    known = {variable(f) for f in Settings.model_fields} | NOT_SETTINGS.keys()
    unknown = {name: path for name, path in named.items() if name not in known | TYPOS}
    assert len(named) > 50
    assert unknown == {}
