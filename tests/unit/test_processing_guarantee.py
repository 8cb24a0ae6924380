"""Processing guarantee: exactly_once needs a stable instance id and makes the producer transactional."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.kafka.config import (
    group_consumer_config,
    producer_config,
)
from streams.settings import ProcessingGuarantee, Settings


def test_at_least_once_is_the_default_and_its_producer_is_not_transactional() -> None:
    settings = Settings(kafka_bootstrap="b:1")

    assert settings.processing_guarantee is ProcessingGuarantee.at_least_once
    assert settings.transactional_id is None
    config = producer_config(settings)
    assert "transactional.id" not in config and "transaction.timeout.ms" not in config
    assert config["enable.idempotence"] is True and config["acks"] == "all"


def test_exactly_once_from_the_environment_names_a_transactional_id_per_instance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMSCORE_PROCESSING_GUARANTEE", "exactly_once")
    monkeypatch.setenv("STREAMSCORE_INSTANCE_ID", "scorer-0")
    monkeypatch.setenv("STREAMSCORE_GROUP_ID", "loans-scorer")

    settings = Settings()

    assert settings.exactly_once
    assert producer_config(settings, transactional=True)["transactional.id"] == "loans-scorer.scorer-0"
    # the side services' producers (drift, learn) never share the score path's transactional id
    assert "transactional.id" not in producer_config(settings)
    # stable across restarts of one instance, distinct between instances
    assert Settings().transactional_id == settings.transactional_id
    monkeypatch.setenv("STREAMSCORE_INSTANCE_ID", "scorer-1")
    assert Settings().transactional_id == "loans-scorer.scorer-1"


def test_exactly_once_without_an_instance_id_is_refused() -> None:
    with pytest.raises(ValidationError, match="instance_id"):
        Settings(processing_guarantee="exactly_once")


def test_exactly_once_on_the_agent_path_is_refused() -> None:
    with pytest.raises(ValidationError, match="batch score path only"):
        Settings(processing_guarantee="exactly_once", instance_id="a", score_path="agent")


def test_an_unknown_guarantee_is_refused() -> None:
    with pytest.raises(ValidationError, match="processing_guarantee"):
        Settings(processing_guarantee="at_most_once")


def test_the_consumer_reads_committed_input_and_commits_by_hand_under_either_guarantee() -> None:
    for settings in (Settings(), Settings(processing_guarantee="exactly_once", instance_id="a")):
        config = group_consumer_config(settings, "g")
        assert config["enable.auto.commit"] is False
        # librdkafka's default, stated so a transactional upstream's aborted input is never scored
        assert config["isolation.level"] == "read_committed"
