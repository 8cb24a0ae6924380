"""The one settings object of a streamscore process.

Read once at the entry point (the command line) from ``STREAMSCORE_*`` environment
variables and flags, then passed down; no other module reads the environment.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ScorePath(StrEnum):
    """How the score agent consumes ``features``.

    ``batch``: a group-managed confluent-kafka consumer driven by a Faust service
    inside the worker, consuming and producing in batches (the fast path).
    ``agent``: a plain Faust agent over ``stream.take()`` (Faust's own consumer).
    """

    batch = "batch"
    agent = "agent"


class UnknownFeatures(StrEnum):
    ignore = "ignore"
    reject = "reject"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STREAMSCORE_", frozen=True, extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None

    app_id: str = "streamscore"
    group_id: str = "streamscore-scorer"

    topic_features: str = "features"
    topic_predictions: str = "predictions"
    topic_dlq: str = "features.dlq"
    topic_monitor: str = "monitor"
    topic_labels: str = "labels"
    topic_drift: str = "drift"
    topic_metrics: str = "metrics"
    topic_model_updates: str = "model-updates"
    partitions: int = Field(4, ge=1)
    replication_factor: int = Field(1, ge=1)

    model_path: Path | None = None

    score_path: ScorePath = ScorePath.batch
    batch_size: int = Field(2000, ge=1, description="Most events scored in one LightGBM call.")
    batch_linger_ms: float = Field(10.0, ge=0, description="Longest wait to fill a batch.")
    predict_threads: int = Field(1, ge=1, description="LightGBM num_threads per predict call.")
    unknown_features: UnknownFeatures = UnknownFeatures.ignore
    max_message_bytes: int = Field(1_000_000, ge=1, description="Larger payloads are dead-lettered unread.")
    prediction_headers: bool = Field(True, description="CloudEvents ce_* headers on predictions.")
    monitor_enabled: bool = True

    session_timeout_s: float = Field(6.0, gt=0, description="Consumer group session timeout.")
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    shutdown_timeout_s: float = Field(10.0, gt=0)
    data_dir: Path = Path(".streamscore")

    @model_validator(mode="after")
    def _distinct_groups(self) -> Settings:
        if self.group_id == self.app_id:
            raise ValueError(
                f"group_id {self.group_id!r} must differ from app_id "
                "(Faust's own consumer group is named after the app id)"
            )
        return self

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka (confluent-kafka) connection and security options."""
        config = {
            "bootstrap.servers": self.kafka_bootstrap,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username:
            config["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password:
            config["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        return config

    def all_topics(self) -> list[str]:
        return [
            self.topic_features,
            self.topic_predictions,
            self.topic_dlq,
            self.topic_monitor,
            self.topic_labels,
            self.topic_drift,
            self.topic_metrics,
            self.topic_model_updates,
        ]
