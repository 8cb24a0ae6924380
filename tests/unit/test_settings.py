"""Settings: STREAMSCORE_* environment, frozen, distinct groups, secret SASL password."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from streams.kafka.config import client_config
from streams.settings import Role, ScorePath, Settings, UnknownFeatures


def test_environment_variables_with_the_streamscore_prefix_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSCORE_KAFKA_BOOTSTRAP", "broker-1:9093")
    monkeypatch.setenv("STREAMSCORE_BATCH_SIZE", "250")
    monkeypatch.setenv("STREAMSCORE_SCORE_PATH", "agent")
    monkeypatch.setenv("STREAMSCORE_UNKNOWN_FEATURES", "reject")
    monkeypatch.setenv("STREAMSCORE_MONITOR_ENABLED", "false")
    monkeypatch.setenv("STREAMSCORE_MODEL_PATH", "/models/loans")
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "unprefixed:1")  # not ours

    settings = Settings()

    assert settings.kafka_bootstrap == "broker-1:9093"
    assert settings.batch_size == 250
    assert settings.score_path is ScorePath.agent
    assert settings.unknown_features is UnknownFeatures.reject
    assert settings.monitor_enabled is False
    assert settings.model_path == Path("/models/loans")


def test_an_invalid_environment_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSCORE_BATCH_SIZE", "0")
    with pytest.raises(ValidationError, match="batch_size"):
        Settings()


def test_settings_are_frozen() -> None:
    settings = Settings(kafka_bootstrap="x:1")
    with pytest.raises(ValidationError, match="frozen"):
        settings.batch_size = 5  # type: ignore[misc]
    assert settings.batch_size == 2000


@pytest.mark.parametrize("source", ["arguments", "environment"])
def test_group_id_equal_to_app_id_is_refused(monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    if source == "arguments":
        make = lambda: Settings(app_id="same", group_id="same")  # noqa: E731
    else:
        monkeypatch.setenv("STREAMSCORE_APP_ID", "same")
        monkeypatch.setenv("STREAMSCORE_GROUP_ID", "same")
        make = Settings
    with pytest.raises(ValidationError, match="must differ from app_id"):
        make()


def test_default_group_and_app_ids_differ() -> None:
    settings = Settings()
    assert settings.group_id != settings.app_id


def test_sasl_password_is_secret_and_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSCORE_KAFKA_SASL_PASSWORD", "hunter2-very-secret")

    settings = Settings(kafka_sasl_username="svc")

    assert isinstance(settings.kafka_sasl_password, SecretStr)
    assert settings.kafka_sasl_password.get_secret_value() == "hunter2-very-secret"
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert "hunter2-very-secret" not in shown


def test_kafka_client_config_carries_sasl_options_when_set() -> None:
    settings = Settings(
        kafka_bootstrap="b:9096",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc",
        kafka_sasl_password="s3cret",
    )

    assert client_config(settings) == {
        "bootstrap.servers": "b:9096",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": "s3cret",
    }


def test_kafka_client_config_has_no_sasl_options_by_default() -> None:
    assert client_config(Settings(kafka_bootstrap="b:1")) == {
        "bootstrap.servers": "b:1",
        "security.protocol": "PLAINTEXT",
    }


def test_all_topics_are_distinct_by_default() -> None:
    topics = Settings().all_topics()
    assert len(topics) == len(set(topics)) == 14


def test_roles_from_the_environment_and_the_app_id_they_imply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSCORE_ROLES", " drift ")
    drift_only = Settings()
    assert drift_only.role_set == {Role.drift}
    assert drift_only.faust_app_id == "streamscore-drift"
    assert Settings(roles="score,learn,drift").faust_app_id == "streamscore"
    assert Settings(roles="score,drift").faust_app_id == "streamscore-drift-score"
    assert Settings(roles="score").runs(Role.score) and not Settings(roles="score").runs(Role.drift)


@pytest.mark.parametrize("roles", ["", "score,explain", "drift;score"])
def test_unknown_or_empty_roles_are_refused(roles: str) -> None:
    with pytest.raises(ValidationError, match="roles"):
        Settings(roles=roles)


def test_the_state_key_comes_from_a_secret_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key = tmp_path / "state_key"
    key.write_text("ab" * 32 + "\n")  # as `python -c 'print(secrets.token_hex(32))' > FILE` writes it
    monkeypatch.setenv("STREAMSCORE_STATE_KEY_FILE", str(key))
    assert Settings().state_key_bytes() == bytes([0xAB]) * 32
    assert (
        Settings(state_key=SecretStr("cd" * 16)).state_key_bytes() == bytes([0xCD]) * 16
    )  # the variable wins
    assert Settings(state_key_file=None).state_key_bytes() is None  # the worker keeps one in data_dir


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "No such file"),
        ("dir", "Is a directory"),
        ("not hex", "hex digits only"),
        ("abcd", "fewer than 16"),
    ],
)
def test_a_state_key_file_that_holds_no_key_is_refused_with_what_to_do(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    path = tmp_path / "state_key"
    if content == "dir":  # what Docker mounts when a bind source is missing
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ValidationError, match=reason) as refused:
        Settings(state_key_file=path)
    assert "secrets.token_hex(32)" in str(refused.value)
