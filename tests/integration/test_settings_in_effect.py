"""What a starting worker sets up, as the README says: its topics, and the group session it keeps.

- Topics are created by the worker with ``STREAMSCORE_PARTITIONS`` partitions; ``model-updates``
  and ``checkpoints`` compacted (a model's serving state and the learner's checkpoint are the
  latest record per key: rollback and restore depend on it), ``checkpoints`` and
  ``drift-partials`` one partition each.
- ``STREAMSCORE_SESSION_TIMEOUT_S`` is the consumer-group session: a worker that stops
  answering keeps its partitions until it runs out, then another worker of the group takes them.
"""

from __future__ import annotations

import ast
import signal
import time

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from streams.kafka.embedded.broker import start_broker
from tests.conditions import budget
from tests.integration.kafka_tools import WorkerProcess, settings_of

pytestmark = pytest.mark.integration


def test_the_worker_creates_its_topics_with_the_documented_partitions_and_compaction(
    bootstrap, topic_env, agrawal_bundle_dir, tmp_path, workers
):
    env = {**topic_env, "STREAMSCORE_PARTITIONS": "3"}
    worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready()
    settings = settings_of(env)
    topics = settings.all_topics()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(timeout=30).topics
    partitions = {topic: len(metadata[topic].partitions) for topic in topics if topic in metadata}
    resources = [ConfigResource(ResourceType.TOPIC, topic) for topic in topics]
    configs = {r.name: f.result(30) for r, f in admin.describe_configs(resources, request_timeout=30).items()}
    compacted = sorted(
        t for t, c in configs.items() if "cleanup.policy" in c and c["cleanup.policy"].value == "compact"
    )
    print(f"partitions: {partitions}; compacted: {compacted}")

    one = {settings.topic_checkpoints, settings.topic_drift_partials}
    assert partitions == {topic: 1 if topic in one else 3 for topic in topics}, (
        "every topic, as many partitions"
    )
    assert compacted == sorted([settings.topic_model_updates, settings.topic_checkpoints])


def _assigned(worker: WorkerProcess) -> list[tuple[str, int]]:
    """The partitions the worker's score loop holds now, from its log (``score: assigned [...]``)."""
    last: list[tuple[str, int]] = []
    for line in worker.log_path.read_text(errors="replace").splitlines():
        if "score: assigned [" in line:
            last = ast.literal_eval(line.split("score: assigned ", 1)[1].strip())
        elif "score: revoked [" in line or "score: lost [" in line:
            last = []
    return last


def test_a_stalled_workers_partitions_move_once_the_session_timeout_has_passed(
    topic_env, agrawal_bundle_dir, tmp_path, workers
):
    """Two scorers in one group; one stops answering (SIGSTOP). The broker gives its partitions to the
    other only once its session (``STREAMSCORE_SESSION_TIMEOUT_S``, 20 s here, 6 s by default) has
    run out since its last heartbeat (one every third of the session), so not before S - S/3."""
    session_s, partitions = 20.0, 4
    broker = start_broker(log_path=tmp_path / "broker.log")  # our own: the long session slows no other test
    try:
        env = {
            **topic_env,
            "STREAMSCORE_KAFKA_BOOTSTRAP": broker.bootstrap,
            "STREAMSCORE_ROLES": "score",
            "STREAMSCORE_PARTITIONS": str(partitions),
            "STREAMSCORE_SESSION_TIMEOUT_S": str(session_s),
        }
        first = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "first.log")
        workers.append(first)
        first.wait_ready(budget(floor_s=3 * session_s))
        second = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "second.log")
        workers.append(second)
        second.wait_ready(budget(floor_s=3 * session_s))
        held = first.wait(
            lambda: (_assigned(first), _assigned(second)),
            lambda both: len(both[0]) + len(both[1]) == partitions and all(both),
            "the two workers to share the partitions",
            budget(floor_s=3 * session_s),
        )
        second.process.send_signal(signal.SIGSTOP)
        stalled_at = time.monotonic()
        try:
            first.wait(lambda: _assigned(first), lambda mine: len(mine) == partitions,
                       "the first worker to hold every partition", budget(floor_s=3 * session_s))  # fmt: skip
            took = time.monotonic() - stalled_at
        finally:
            second.process.send_signal(signal.SIGCONT)
        print(
            f"partitions {held[0]} and {held[1]}; the second stalled: the first held all {partitions} "
            f"{took:.1f} s later (STREAMSCORE_SESSION_TIMEOUT_S={session_s:g})"
        )
        assert took >= session_s - session_s / 3, "the partitions moved before the session ran out"
    finally:
        broker.stop()
