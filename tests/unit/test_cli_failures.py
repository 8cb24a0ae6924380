"""The lines a failed command prints: the project's own message, or a summary; never a traceback."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from scoring.errors import ConfigError
from streams.cli import failures, main
from streams.kafka.errors import BrokerUnreachable, DeliveryFailed


def test_the_projects_errors_print_their_message_and_advice_indented(capsys: pytest.CaptureFixture) -> None:
    assert failures.report(BrokerUnreachable("b:9092", "Connection refused")) == 1

    first, second = capsys.readouterr().err.splitlines()
    assert first == "streamscore: error: no Kafka broker answered at b:9092 (Connection refused)"
    assert second.startswith("  start one with `streamscore broker`")


def test_delivery_failures_say_why_and_what_to_check() -> None:
    lines = failures.lines_for(DeliveryFailed(100, "features", "b:1", "Local: Message timed out"))
    assert lines == [
        "100 records were not delivered to features at b:1: Local: Message timed out",
        "is the broker still up? `streamscore status --bootstrap b:1` asks it",
    ]


def test_kafka_os_and_unexpected_errors_are_summarised() -> None:
    kafka = KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata"))
    assert failures.lines_for(kafka)[0] == "Kafka: Failed to get metadata"
    assert failures.lines_for(PermissionError(13, "Permission denied", "out.csv")) == [
        "out.csv: Permission denied"
    ]
    bug = failures.lines_for(ZeroDivisionError("division by zero"))
    assert bug == [
        "unexpected ZeroDivisionError: division by zero",
        "this is a bug; run again with --debug for the traceback and report it",
    ]


def test_main_returns_1_with_the_error_and_raises_it_with_debug(
    tmp_path, capsys: pytest.CaptureFixture
) -> None:
    missing = str(tmp_path / "none.csv")
    assert main(["train", missing, "--target", "y", "--out", str(tmp_path / "b")]) == 1
    assert capsys.readouterr().err == f"streamscore: error: {missing}: no such file\n"

    with pytest.raises(ConfigError, match="no such file"):
        main(["--debug", "train", missing, "--target", "y", "--out", str(tmp_path / "b")])
