"""Drift windows per partition, merged, through a SIGKILL (``STREAMSCORE_DRIFT_WINDOWS=partitions``).

One worker with the score and drift roles reads a stream, is SIGKILLed with windows open
on every partition, and a new one takes over from the checkpoints: every window is
reported once, in order, with exactly ``STREAMSCORE_DRIFT_WINDOW_EVENTS`` events, and the
events of the windows open at the kill are neither lost nor counted twice.
"""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from schemas import headers as h
from schemas.drift import DriftReport
from scoring import checkpoint
from scoring.drift import WindowPartial
from tests.conditions import budget
from tests.integration.kafka_tools import WorkerProcess, feature_events, produce, read_topic

pytestmark = pytest.mark.integration

PARTITIONS, WINDOW = 4, 2_000  # 500 events per partition window


def _reports(bootstrap: str, env: dict, count: int) -> list[DriftReport]:
    def report(record) -> bool:
        return record.headers.get(h.CE_TYPE) == h.DRIFT_REPORT_CE_TYPE.encode()

    records = read_topic(bootstrap, env["STREAMSCORE_TOPIC_DRIFT"], count, budget(), 3.0, counted=report)
    return [DriftReport.model_validate_json(r.value) for r in records if report(r)]


def _drift(worker: WorkerProcess, events: int) -> dict:
    """The drift role's figures once it has read ``events`` and every read is in a checkpoint."""
    return worker.wait(
        lambda: worker.get("/stats")["drift"],
        lambda drift: drift["events"] >= events and drift["unsaved"] == 0,
        f"{events:,} events read and checkpointed (the shards and the merge, every 5 s)",
        budget(events),
    )


def test_windows_survive_a_sigkill_once_each(bootstrap, topic_env, agrawal_bundle_dir, tmp_path, workers):
    env = {
        **topic_env,
        "STREAMSCORE_ROLES": "drift,score",
        "STREAMSCORE_PARTITIONS": str(PARTITIONS),
        "STREAMSCORE_DRIFT_WINDOWS": "partitions",
        "STREAMSCORE_DRIFT_WINDOW_EVENTS": str(WINDOW),
    }
    events = feature_events(12_000, seed=4, prefix="dp")
    first = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "first.log")
    workers.append(first)
    first.wait_ready(timeout_s=120)
    produce(bootstrap, env["STREAMSCORE_TOPIC_DRIFT_PARTIALS"], _untrusted())
    produce(bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], events[:5_000])
    before = _drift(first, 5_000)
    assert before["merging"] and before["partitions_owned"] == list(range(PARTITIONS))
    assert before["refused_partials"] == len(_untrusted()), "unsigned, forged or garbled: refused"
    assert before["open_window_events"] > 0, "windows open at the kill"
    first.process.kill()
    first.process.wait(10)

    second = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "second.log")
    workers.append(second)
    second.wait_ready(timeout_s=120)
    produce(bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], events[5_000:])
    counts = Counter(
        r.partition for r in read_topic(bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], len(events))
    )
    quota = WINDOW // PARTITIONS
    windows = min(counts[p] for p in range(PARTITIONS)) // quota
    still_open = sum(counts[p] % quota for p in range(PARTITIONS))
    after = _settled(second, still_open)
    reports = _reports(bootstrap, env, windows)

    print(f"per partition {dict(counts)}; before the kill {before}; after {after}")
    assert after["restored"] == PARTITIONS, "every partition resumed from its checkpoint"
    assert [r.window for r in reports] == list(range(windows)), "each window once, in order"
    assert all(r.events == WINDOW for r in reports)
    spans = {(s.partition, s.first_offset, s.last_offset) for r in reports for s in r.spans}
    for p in range(PARTITIONS):  # the windows of each partition cover its offsets without a gap
        covered = sorted((first, last) for q, first, last in spans if q == p)
        assert all(a[1] < b[0] for a, b in itertools.pairwise(covered)), p


def _untrusted() -> list[tuple[bytes, bytes]]:
    """What anyone able to write the partials topic could put there: none of it may count."""
    partial = WindowPartial(
        "loans", "1", 0, PARTITIONS, 0, WINDOW // PARTITIONS, 1, 2, (), (), np.zeros((1, 9)), np.zeros(1)
    )
    bound = checkpoint.binding("drift-partials", "loans:1/w0/p0", "another-app")
    return [
        (b"loans:1/w0/p0", b"not a partial"),
        (b"loans:1/w0/p0", partial.to_bytes()),  # well formed, not signed
        (b"loans:1/w0/p0", checkpoint.sign(partial.to_bytes(), b"another deployment's key..", bound)),
        (b"x", b"\xff" * 64),
    ]


def _settled(worker: WorkerProcess, still_open: int) -> dict:
    """The worker's drift figures once its open windows hold ``still_open`` events: all read."""
    return worker.wait(
        lambda: worker.get("/stats")["drift"],
        lambda drift: drift["open_window_events"] == still_open,
        f"{still_open:,} events in open windows",
        budget(12_000),
    )
