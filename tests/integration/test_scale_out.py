"""Beyond one machine: three workers give the KPIs one gives, a SIGKILL and a restart included.

The same stream of events and labels (labels keyed by entity, like their events, so both
land on the same partition number) goes once through one worker with every role and once
through three workers of one deployment (every role each, one consumer group per role).
The KPIs on ``metrics`` are the merge of every partition's shard: cumulative counts must
be equal, every cumulative KPI equal to 1e-9 and the AUC to 1e-6, and every label joined
once: none counted twice, none lost. The drift windows are cut per partition and merged
(``STREAMSCORE_DRIFT_WINDOWS=partitions``): every window one worker reports, the three
report too, with the same events and the same drifted features (the stream's ``loan``
doubles from the middle of window 5 on).
"""

from __future__ import annotations

import threading
import time

import pytest

from schemas import headers as h
from schemas.drift import DriftReport
from schemas.feedback import MetricsSnapshot
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import loan_frame
from scoring.offline.training import train_bundle
from tests.conditions import budget
from tests.integration.conftest import topics_for
from tests.integration.kafka_tools import WorkerProcess, produce_with_labels, read_topic

pytestmark = pytest.mark.integration

N, DELAY = 100_000, 2_000
BASE_MS = 1_700_000_000_000
PARTITIONS, WINDOW = 4, 10_000  # the test workers' STREAMSCORE_PARTITIONS; 2,500 events per partition window
SHIFTED_WINDOW = 5
SHIFT_FROM = SHIFTED_WINDOW * WINDOW + WINDOW // 2  # the middle of each partition's window 5


@pytest.fixture(scope="module")
def loans(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    """A model of data that behaves like real data: its KPIs are neither 0 nor 1."""
    frame = loan_frame(8_000, seed=5)
    return train_bundle(
        frame, "approved", tmp_path_factory.mktemp("scale") / "loans", name="loans", num_trees=40
    )


def _final_snapshot(bootstrap: str, env: dict, timeout_s: float = 300) -> MetricsSnapshot:
    """The first merged snapshot on ``metrics`` that counts every label."""

    def complete(record) -> bool:
        return MetricsSnapshot.model_validate_json(record.value).labels.matched >= N

    records = read_topic(
        bootstrap, env["STREAMSCORE_TOPIC_METRICS"], 1, timeout_s=timeout_s, counted=complete
    )
    snapshots = [MetricsSnapshot.model_validate_json(r.value) for r in records]
    done = [s for s in snapshots if s.labels.matched >= N]
    last = snapshots[-1].labels if snapshots else None
    assert done, f"no snapshot counted all {N:,} labels within {timeout_s} s; the last: {last}"
    return done[0]


def _workers(
    env: dict, bundle: ModelBundle, tmp_path, workers: list, name: str, count: int
) -> list[WorkerProcess]:
    started = []
    for i in range(count):
        worker = WorkerProcess(env, bundle.path, tmp_path / f"{name}-{i}.log")
        workers.append(worker)
        started.append(worker)
    for worker in started:
        worker.wait_ready(timeout_s=120)
    return started


def _windows_merged(worker: WorkerProcess, timeout_s: float = 120) -> int:
    """The windows a lone worker merged once its drift role read all ``N`` events and 3 s passed."""
    deadline, seen, since = time.monotonic() + timeout_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        drift = worker.get("/stats")["drift"]
        if drift["events"] == N and drift["merged"] == seen and time.monotonic() - since >= 3:
            return seen
        if drift["merged"] != seen:
            seen, since = drift["merged"], time.monotonic()
        time.sleep(0.2)
    raise AssertionError(f"the drift role did not read {N:,} events within {timeout_s} s: {drift}")


def _drift_reports(bootstrap: str, env: dict, windows: int) -> dict[int, list[DriftReport]]:
    """The merged reports on ``drift`` by window, once ``windows`` of them arrived (and 5 s more)."""

    def report(record) -> bool:
        return record.headers.get(h.CE_TYPE) == h.DRIFT_REPORT_CE_TYPE.encode()

    records = read_topic(bootstrap, env["STREAMSCORE_TOPIC_DRIFT"], windows, 180, 5.0, counted=report)
    out: dict[int, list[DriftReport]] = {}
    for record in filter(report, records):
        parsed = DriftReport.model_validate_json(record.value)
        out.setdefault(parsed.window, []).append(parsed)
    return out


def _overall(snapshot: MetricsSnapshot, model: str):
    return next(r for r in snapshot.kpis if r.model == model and r.segment_feature == "all")


def test_three_workers_give_the_kpis_of_one_a_sigkill_included(
    bootstrap, loans: ModelBundle, tmp_path, workers
):
    frame = loan_frame(N, seed=77)
    labels = frame.pop("approved").to_numpy(float)
    frame.loc[SHIFT_FROM:, "loan"] *= 2
    settings = {
        "STREAMSCORE_METRICS_INTERVAL_S": "1",
        "STREAMSCORE_SEGMENT_FEATURES": "elevel",
        "STREAMSCORE_PARTITIONS": str(PARTITIONS),
        "STREAMSCORE_DRIFT_WINDOWS": "partitions",
        "STREAMSCORE_DRIFT_WINDOW_EVENTS": str(WINDOW),
        # a worker may read monitor far ahead of labels: room for every event, none expires
        "STREAMSCORE_LABEL_JOIN_MAX": str(2 * N),
    }

    one_env = {**topics_for(bootstrap, "one-" + tmp_path.name[-6:], str(tmp_path / "one")), **settings}
    (lone,) = _workers(one_env, loans, tmp_path, workers, "one", 1)
    started = time.monotonic()
    produce_with_labels(bootstrap, one_env, frame, labels, DELAY, "so", BASE_MS, labels_by="entity_id")
    alone = _final_snapshot(bootstrap, one_env)
    one_s = time.monotonic() - started
    windows = _windows_merged(lone)
    assert windows >= N // WINDOW - 1, "each partition holds about a quarter of the events"
    drift_alone = _drift_reports(bootstrap, one_env, windows)

    three_env = {**topics_for(bootstrap, "three-" + tmp_path.name[-6:], str(tmp_path / "three")), **settings}
    three = _workers(three_env, loans, tmp_path, workers, "three", 3)
    started = time.monotonic()
    source = threading.Thread(
        target=produce_with_labels,
        args=(bootstrap, three_env, frame, labels, DELAY, "so", BASE_MS),
        kwargs={"labels_by": "entity_id"},
        daemon=True,
    )
    source.start()
    victim = three[0]
    # killed mid-work: once its shards have joined a twentieth of the labels (of about a third they get),
    # whether or not the producer has finished by then (on a busy machine it may have)
    joined = victim.wait(
        lambda: victim.get("/stats")["learn"]["matched"], lambda n: n >= N // 20, "labels joined", budget(N)
    )
    victim.process.kill()  # its shards restart from their checkpoints on whoever gets them
    victim.process.wait(10)
    killed_at = time.monotonic() - started
    _workers(three_env, loans, tmp_path, workers, "three-restarted", 1)
    source.join(300)
    together = _final_snapshot(bootstrap, three_env)
    three_s = time.monotonic() - started
    drift_together = _drift_reports(bootstrap, three_env, windows)

    champion = f"{loans.name}:{loans.version}"
    a, b = _overall(alone, champion), _overall(together, champion)
    print(
        f"one worker: {a.count:,} labelled, cumulative {a.cumulative} ({one_s:.0f} s); three with a SIGKILL: "
        f"{b.count:,} labelled, cumulative {b.cumulative} ({three_s:.0f} s; one SIGKILLed at "
        f"{killed_at:.0f} s with {joined:,} labels joined in its shards); join {together.labels}"
    )
    assert together.labels.matched == alone.labels.matched == N, "every label joined once"
    assert together.labels.unmatched_labels == alone.labels.unmatched_labels == 0
    by_segment = {(r.model, r.segment_feature, r.segment_value): r for r in alone.kpis}
    for row in together.kpis:
        if row.model.startswith("river:"):
            continue  # the challenger learns from partition 0: the same sample either way, compared below
        expected = by_segment[(row.model, row.segment_feature, row.segment_value)]
        assert row.count == expected.count, (row.model, row.segment_value)
        for metric, value in expected.cumulative.items():
            tolerance = 1e-6 if metric == "auc" else 1e-9
            assert row.cumulative[metric] == pytest.approx(value, abs=tolerance), (row.segment_value, metric)

    assert sorted(drift_alone) == list(range(windows)), "one worker: every window once, in order"
    assert all(len(reports) == 1 for reports in drift_alone.values())
    assert set(range(windows)) <= set(drift_together), "three workers: every window one worker reported"
    drifted, identical = {}, 0
    for w in range(windows):
        (one,) = drift_alone[w]
        assert one.events == WINDOW
        for other in drift_together[w]:  # twice only if the merger died between a report and its checkpoint
            assert other.events == WINDOW, w
            assert other.drifted_features == one.drifted_features, w
        drifted[w] = one.drifted_features
        identical += all(o.features == one.features for o in drift_together[w])
    print(
        f"drift: {windows} windows, drifted features per window {drifted}; {identical} of them identical to "
        f"the last digit (the others hold events scored twice after the SIGKILL)"
    )
    assert "loan" in drifted[SHIFTED_WINDOW]
    assert all("loan" in drifted[w] for w in range(SHIFTED_WINDOW + 1, windows))
    assert all("loan" not in drifted[w] for w in range(SHIFTED_WINDOW)), "the shift starts in window 5"
