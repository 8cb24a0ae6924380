"""The one settings object of a streamscore process.

Read once at the entry point (the command line, through ``streams.environment.load_settings``)
from ``STREAMSCORE_*`` environment variables and flags, then passed down; no other module
reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from streams.connection import SECURITY_PROTOCOLS, KafkaConnection
from streams.modes import DriftWindows, ProcessingGuarantee, Role, ScorePath, UnknownFeatures

__all__ = [
    "SECURITY_PROTOCOLS",
    "DriftWindows",
    "KafkaConnection",
    "ProcessingGuarantee",
    "Role",
    "ScorePath",
    "Settings",
    "UnknownFeatures",
    "read_key_file",
]


def read_key_file(path: Path) -> bytes:
    """A state key file: hex digits of at least 16 bytes (``secrets.token_hex(32)`` makes one)."""
    make = "python3 -c 'import secrets; print(secrets.token_hex(32))' > FILE"
    try:
        key = bytes.fromhex(path.read_text().strip())
    except OSError as exc:
        raise ValueError(f"state key file {path}: {exc.strerror}; make one with {make}") from None
    except ValueError:
        raise ValueError(f"state key file {path} must hold hex digits only; make one with {make}") from None
    if len(key) < 16:
        raise ValueError(f"state key file {path} holds {len(key)} bytes, fewer than 16; make one with {make}")
    return key


class Settings(KafkaConnection):
    model_config = SettingsConfigDict(env_prefix="STREAMSCORE_", frozen=True, extra="ignore")

    app_id: str = Field("streamscore", description="Faust app id; a worker of some roles only adds them.")
    group_id: str = Field("streamscore-scorer", description="Consumer group of the score path (not app_id).")

    topic_features: str = Field("features", description="Feature events in (key: entity_id).")
    topic_predictions: str = Field("predictions", description="Predictions out.")
    topic_dlq: str = Field("features.dlq", description="Events that cannot be scored, with the reason.")
    topic_monitor: str = Field("monitor", description="A monitoring record per scored batch and partition.")
    topic_labels: str = Field("labels", description="Ground truth (Label records) of scored events.")
    topic_labels_dlq: str = Field(
        "labels.dlq", description="Labels the learn role cannot use, with the reason."
    )
    topic_monitor_dlq: str = Field(
        "monitor.dlq", description="Monitoring records the drift and learn roles cannot use, with the reason."
    )
    topic_drift: str = Field("drift", description="Drift reports and alerts, performance estimates.")
    topic_metrics: str = Field("metrics", description="KPI snapshots of the learn role.")
    topic_model_updates: str = Field("model-updates", description="The serving state per model (compacted).")
    topic_checkpoints: str = Field("checkpoints", description="Signed state of learn and drift (compacted).")
    topic_drift_partials: str = Field("drift-partials", description="Partials of partition windows.")
    topic_alerts: str = Field("alerts", description="Model updates applied or refused; checkpoints refused.")
    topic_retrain: str = Field("retrain-requests", description="Requests to retrain, on drift or KPIs.")
    partitions: int = Field(4, ge=1, description="Partitions of the topics a worker creates.")
    replication_factor: int = Field(1, ge=1, description="Replicas of the topics a worker creates.")

    model_path: Path | None = Field(None, description="Bundle (--model); serves if model-updates has none.")
    registry: str = Field(
        "", description="Model registry root, a path or fsspec URL; default data_dir/registry."
    )
    control_token: SecretStr | None = Field(
        None, description="Bearer token of the /control endpoints; they are off while unset."
    )
    infer_token: SecretStr | None = Field(
        None, description="Bearer token the /v2 model endpoints require; unset: they are open."
    )
    infer_max_bytes: int = Field(
        4_194_304, ge=1024, description="Largest /v2 infer request body; larger ones get 413 unread."
    )
    infer_max_rows: int = Field(
        100_000, ge=1, description="Most rows in one /v2 infer request; more get 413."
    )
    infer_max_in_flight: int = Field(
        4, ge=1, description="/v2 infer requests answered at once; more get 503 with Retry-After."
    )
    infer_predictions: bool = Field(
        False,
        description="Also write each /v2 answer to the predictions topic (header streamscore.origin: api).",
    )
    model_sources: str = Field(
        "",
        description="Comma list of extra places bundles may be loaded from (directories or URL prefixes), "
        "besides the registry and the worker's own --model directory.",
    )
    model_fetch_timeout_s: float = Field(
        60.0, gt=0, description="Longest wait for one model update's bundles."
    )
    auto_promote: bool = Field(False, description="Promote a challenger that wins `model compare`.")
    promote_min_pairs: int = Field(1000, ge=10, description="Labelled events both models scored, at least.")
    promote_p_value: float = Field(0.01, gt=0, lt=1, description="Significance a winner must reach.")
    retrain_kpi_threshold: float | None = Field(
        None,
        description="Ask for retraining when the champion's rolling primary KPI (accuracy, MAE) crosses it.",
    )
    roles: str = Field(
        "drift,learn,score", description="What this worker runs, a comma list of: score, drift, learn."
    )

    score_path: ScorePath = Field(ScorePath.batch, description="batch: own consumer; agent: a Faust agent.")
    processing_guarantee: ProcessingGuarantee = Field(
        ProcessingGuarantee.at_least_once,
        description="exactly_once (batch path): a Kafka transaction per batch, outputs and offsets together.",
    )
    instance_id: str | None = Field(
        None,
        description="Stable name of this worker instance (same across its restarts); "
        "under exactly_once its transactional.id is <group_id>.<instance_id>.",
    )
    batch_size: int = Field(2000, ge=1, description="Most events scored in one LightGBM call.")
    batch_linger_ms: float = Field(
        10.0,
        ge=0,
        description="Longest wait for a first record when none is fetched; a batch never waits to fill.",
    )
    # 100, not 10: Kafka answers a fetch as soon as data is there, so while events flow the wait costs
    # nothing and idle it is 10 fetches/s, not 100; Tansu served 2,000 events/s with p99 118 ms at 100
    # against 410 ms at 10 (docs/benchmarks.md, "Latency ... issue 19")
    fetch_wait_max_ms: int = Field(
        100, ge=0, description="Consumer fetch.wait.max.ms: how long the broker may hold a fetch for data."
    )
    predict_threads: int = Field(1, ge=1, description="LightGBM num_threads per predict call.")
    unknown_features: UnknownFeatures = Field(UnknownFeatures.ignore, description="reject: dead-letter them.")
    max_message_bytes: int = Field(1_000_000, ge=1, description="Larger payloads are dead-lettered unread.")
    prediction_headers: bool = Field(True, description="CloudEvents ce_* headers on predictions.")
    monitor_enabled: bool = Field(True, description="Write monitoring records (drift and learn read them).")
    explain_share: float = Field(
        0.0, ge=0, le=1, description="Share of predictions carrying feature contributions (by event_id hash)."
    )
    explain_top_k: int = Field(5, ge=1, description="Contributions attached per explained prediction.")

    drift_path: ScorePath = Field(
        ScorePath.batch, description="batch: own confluent-kafka consumer; agent: a Faust agent."
    )
    drift_windows: DriftWindows = Field(
        DriftWindows.stream,
        description="stream: one drift worker; partitions: several, windows per partition by count, merged.",
    )
    drift_window_events: int = Field(10_000, ge=1, description="A drift window closes after this many events")
    drift_window_seconds: float = Field(300.0, gt=0, description="... or this span of event time.")
    drift_version_wait_s: float = Field(
        60.0,
        gt=0,
        description="How long a drift partial of a version this worker does not watch waits, then refused.",
    )
    # alert thresholds chosen from bench/alerts.py's table; docs/alerts.md says what each means
    drift_p_value: float = Field(0.001, gt=0, lt=1, description="Family-wise level of a window's tests.")
    drift_correction: Literal["holm", "bonferroni"] = Field("holm", description="... corrected this way.")
    drift_psi_floor: float = Field(0.02, ge=0, description="PSI a significant test needs to flag a feature.")
    drift_psi_threshold: float = Field(0.2, gt=0, description="A flagged PSI this high makes it critical.")
    concept_detectors: str = Field(
        "cusum", pattern=r"^(cusum|adwin|page_hinkley)(,(cusum|adwin|page_hinkley))*$",
        description="Detectors on each model's error stream, a comma list of: cusum, adwin, page_hinkley.",
    )  # fmt: skip
    concept_threshold: float = Field(15.0, gt=0, description="CUSUM threshold, a log-likelihood ratio.")
    concept_shift_rate: float = Field(0.10, gt=0, lt=1, description="Binary: the error-rate rise to detect.")
    concept_shift_sd: float = Field(0.25, gt=0, description="Regression: the MAE rise to detect, in sd.")
    concept_warmup: int = Field(2000, ge=2, description="Labels a CUSUM learns its baseline from.")
    concept_merge_seconds: float = Field(300.0, gt=0, description="Shard detections this close are one.")
    alert_cooldown_seconds: float = Field(3600.0, ge=0, description="Least time between two firings.")

    kpi_window: int = Field(1000, ge=1, description="Labelled events in the rolling KPIs.")
    segment_features: str = Field("", description="Comma list of features to break KPIs down by.")
    segment_gap: float = Field(0.1, gt=0, description="A segment this far from overall is flagged.")
    challenger: str = Field("default", description="'default' or a river estimator class path.")
    max_clock_skew_s: float = Field(
        300.0,
        ge=0,
        description="An event or label time this far past its record's broker timestamp is clamped there "
        "(one clock far ahead cannot move the event-time clock of the join or of a drift window).",
    )
    label_ttl_seconds: float = Field(600.0, gt=0, description="Event time an event waits for its label.")
    label_join_max: int = Field(200_000, ge=1, description="Most events (and early labels) kept waiting.")
    metrics_every_labels: int = Field(1000, ge=1, description="A KPI snapshot and checkpoint per N labels")
    metrics_interval_s: float = Field(10.0, gt=0, description="... and every this many seconds.")
    state_key: SecretStr | None = Field(
        None, description="Hex key signing checkpoints; else state_key_file; else data_dir/state.key"
    )
    state_key_file: Path | None = Field(
        None, description="File holding the hex state key, e.g. a compose or Kubernetes secret."
    )
    state_assembly_max_bytes: int = Field(
        128 << 20,
        ge=1 << 20,
        description="Chunks of unfinished drift partials held at once; the oldest dropped.",
    )

    lag_interval_s: float = Field(5.0, gt=0, description="How often /metrics' consumer lag is sampled.")
    dashboard_interval_s: float = Field(1.0, gt=0, description="How often /dashboard samples the counters.")
    dashboard_points: int = Field(300, ge=2, description="Samples each /dashboard chart keeps.")

    # alert thresholds: the dashboard's and deploy/prometheus/rules.yml's (a test holds them equal)
    alert_lag_records: int = Field(10_000, ge=1, description="Consumer lag, in records, that alerts.")
    alert_lag_seconds: float = Field(60.0, gt=0, description="Age of the oldest unread record that alerts.")
    alert_dead_letter_ratio: float = Field(
        0.05, gt=0, le=1, description="Share of consumed events dead-lettered over 5 minutes that alerts."
    )
    alert_kpi_metric: str = Field("accuracy", description="Rolling KPI of the serving model watched.")
    alert_kpi_min: float = Field(
        0.7,
        description="... alerting below this; so does its estimate per drift window (above it: mae, rmse).",
    )

    session_timeout_s: float = Field(6.0, gt=0, description="Consumer group session timeout (joins in ~3 s).")
    web_port: int = Field(6066, description="Port of /health, /ready, /stats, /metrics, /dashboard, /v2.")
    web_host: str = Field("127.0.0.1", description="Address they listen on.")
    shutdown_timeout_s: float = Field(
        9.0, gt=0, description="A stop (SIGTERM) ends within this even with the broker gone (then exit 1)."
    )
    data_dir: Path = Field(Path(".streamscore"), description="Faust data, the default registry and key.")

    @model_validator(mode="after")
    def _distinct_groups(self) -> Settings:
        if self.group_id == self.app_id:
            raise ValueError(
                f"group_id {self.group_id!r} must differ from app_id "
                "(Faust's own consumer group is named after the app id)"
            )
        return self

    @model_validator(mode="after")
    def _exactly_once_needs_an_instance(self) -> Settings:
        if self.processing_guarantee is not ProcessingGuarantee.exactly_once:
            return self
        if self.score_path is not ScorePath.batch:
            raise ValueError("processing_guarantee exactly_once is implemented on the batch score path only")
        if not self.instance_id:
            raise ValueError(
                "processing_guarantee exactly_once needs instance_id (STREAMSCORE_INSTANCE_ID), the same "
                "across restarts of one worker and different between workers: it names the "
                "transactional.id that fences a previous incarnation's open transaction"
            )
        return self

    @model_validator(mode="after")
    def _partition_windows_need_the_service(self) -> Settings:
        if self.drift_windows is DriftWindows.partitions and self.drift_path is not ScorePath.batch:
            raise ValueError("drift_windows partitions is implemented on the batch drift path only")
        return self

    @field_validator("state_key_file")
    @classmethod
    def _key_file_holds_a_key(cls, path: Path | None) -> Path | None:
        if path is not None:
            read_key_file(path)
        return path

    def state_key_bytes(self) -> bytes | None:
        """The key from ``state_key`` or ``state_key_file``; None: the worker keeps one in data_dir."""
        if self.state_key is not None:
            return bytes.fromhex(self.state_key.get_secret_value())
        return read_key_file(self.state_key_file) if self.state_key_file is not None else None

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: str) -> str:
        parts = [part.strip() for part in value.split(",") if part.strip()]
        unknown = sorted(set(parts) - {r.value for r in Role})
        if unknown or not parts:
            known = ", ".join(r.value for r in Role)
            raise ValueError(f"roles must be a comma list of {known}; got {value!r}")
        return ",".join(sorted(set(parts)))

    @property
    def role_set(self) -> frozenset[Role]:
        return frozenset(Role(part) for part in self.roles.split(","))

    @property
    def faust_app_id(self) -> str:
        """The Faust app id (also its consumer group): one per set of roles.

        Faust assigns partitions as if every worker of an app ran the same agents,
        so a drift-only worker must not share the app id of a worker that scores.
        """
        if self.role_set == frozenset(Role):
            return self.app_id
        return "-".join([self.app_id, *sorted(r.value for r in self.role_set)])

    def runs(self, role: Role) -> bool:
        return role in self.role_set

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee is ProcessingGuarantee.exactly_once

    @property
    def transactional_id(self) -> str | None:
        """The batch score path's transactional.id: one per worker instance, stable across its restarts."""
        if not self.exactly_once:
            return None
        return f"{self.group_id}.{self.instance_id}"

    @property
    def registry_root(self) -> str:
        return self.registry or str(self.data_dir / "registry")

    def all_topics(self) -> list[str]:
        return [
            self.topic_features,
            self.topic_predictions,
            self.topic_dlq,
            self.topic_monitor,
            self.topic_labels,
            self.topic_labels_dlq,
            self.topic_monitor_dlq,
            self.topic_drift,
            self.topic_metrics,
            self.topic_model_updates,
            self.topic_checkpoints,
            self.topic_drift_partials,
            self.topic_alerts,
            self.topic_retrain,
        ]
