"""Backpressure: when the output path stalls, the worker's memory stops growing instead of buffering input.

A proxy in front of the test's own broker holds back every Produce request while
fetches, heartbeats and commits pass, with a backlog of events waiting on
``features``. The batch path does not score the next batch until the previous one's
outputs are acknowledged, so what the worker can hold is one pending batch, one
handled batch and librdkafka's prefetch queue (``queued.max.messages.kbytes``, 64 MiB
by default); the producer's 1 GiB ``queue.buffering.max.kbytes`` is never approached.
"""

from __future__ import annotations

import time

import psutil
import pytest

from streams.kafka.embedded.broker import free_port, start_broker
from tests.conditions import budget
from tests.integration.kafka_tools import (
    ProduceStallProxy,
    WorkerProcess,
    distinct_event_ids,
    event_id_of,
    feature_events,
    produce,
    read_topic,
    wait_scored,
)

pytestmark = pytest.mark.integration

MIB = 1 << 20
STALL_S = 45
LEVEL_S, LEVEL_MIB = 10.0, 16  # level: the RSS sampled over the last 10 s spans less than 16 MiB


def _level(samples: list[tuple[float, int, int]]) -> bool:
    """True once the samples of the last ``LEVEL_S`` seconds (and that long has been watched) are level."""
    last = samples[-1][0]
    recent = [rss for t, rss, _ in samples if t >= last - LEVEL_S]
    return last >= LEVEL_S and max(recent) - min(recent) < LEVEL_MIB * MIB


def test_a_stalled_output_path_keeps_worker_memory_bounded(topic_env, agrawal_bundle_dir, tmp_path, workers):
    broker_port = free_port()
    proxy = ProduceStallProxy(broker_port).start()
    broker = start_broker(broker_port, log_path=tmp_path / "broker.log", advertised_port=proxy.port)
    try:
        bootstrap = f"127.0.0.1:{proxy.port}"
        n = 300_000
        env = {
            **topic_env,
            "STREAMSCORE_KAFKA_BOOTSTRAP": bootstrap,
            "STREAMSCORE_ROLES": "score",
            # the lag sampler's consumers come and go every 5 s (+24 to +36 MiB for a moment,
            # measured here); off, so that what is left is the score path's own memory
            "STREAMSCORE_LAG_INTERVAL_S": "3600",
        }
        worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "worker.log")
        workers.append(worker)
        worker.wait_ready(90)
        process = psutil.Process(worker.process.pid)
        rss_idle = process.memory_info().rss
        produce(bootstrap, topic_env["STREAMSCORE_TOPIC_FEATURES"], feature_events(n, seed=76, prefix="bp"))
        wait_scored(worker, 20_000)

        proxy.stall()
        stalled_at = time.monotonic()
        rss_at_stall = process.memory_info().rss
        samples: list[tuple[float, int, int]] = []  # seconds into the stall, RSS, scored

        def sample() -> list[tuple[float, int, int]]:
            samples.append(
                (time.monotonic() - stalled_at, process.memory_info().rss, worker.get("/stats")["scored"])
            )
            return samples

        # the prefetch fills, then memory levels off: wait for that (however long a busy machine takes
        # to fill it), then keep watching, to the end of the stall and at least LEVEL_S: it must stay level
        level = worker.wait(sample, _level, f"RSS level over {LEVEL_S:g} s", STALL_S - LEVEL_S, 0.5)
        leveled_at = level[-1][0]
        while time.monotonic() - stalled_at < max(STALL_S, leveled_at + LEVEL_S):
            time.sleep(0.5)
            sample()
        held = proxy.held
        proxy.release()

        scored = [s for _, _, s in samples]
        level_rss = max(rss for t, rss, _ in samples if leveled_at - LEVEL_S <= t <= leveled_at)
        after = max(rss for t, rss, _ in samples if t > leveled_at)
        peak = max(rss for _, rss, _ in samples)
        print(
            f"output path stalled {STALL_S} s with {n - scored[0]:,} events waiting: worker RSS "
            f"{rss_idle / MIB:.0f} MiB idle before the backlog, {rss_at_stall / MIB:.0f} MiB at the stall, "
            f"level at {level_rss / MIB:.0f} MiB {leveled_at:.0f} s into it, at most {after / MIB:.0f} MiB "
            f"after that, peak {peak / MIB:.0f} MiB (+{(peak - rss_at_stall) / MIB:.0f}); "
            f"scored {scored[0]:,} -> {scored[-1]:,} during it; {held} produce request(s) held"
        )
        print("  RSS MiB each second: " + " ".join(f"{rss / MIB:.0f}" for _, rss, _ in samples[1::2]))
        assert held > 0, "the output path must have been stalled"
        assert scored[-1] - scored[0] <= 2 * 2000, "no more than two batches scored without acknowledgements"
        assert after - level_rss < LEVEL_MIB * MIB, "memory grew again after it had levelled off"
        assert peak - rss_at_stall < 256 * MIB

        counted = distinct_event_ids()
        records = read_topic(
            bootstrap,
            topic_env["STREAMSCORE_TOPIC_PREDICTIONS"],
            n,
            timeout_s=budget(n),
            counted=counted,
        )
        missing = n - len({event_id_of(r) for r in records})
        released_s = time.monotonic() - stalled_at - STALL_S
        print(
            f"after the release: {n - missing:,} of {n:,} predicted and read back within {released_s:.0f} s"
        )
        assert missing == 0
        assert worker.alive()
    finally:
        broker.stop()
        proxy.stop()
