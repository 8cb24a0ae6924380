"""Multiclass KPIs from labels (issue 28, phase B: done when), on the embedded broker.

A 3-class model with string class names is served by a worker with every role: 20,000 events,
each labelled with its class name 1,000 events later (labels keyed by entity, like the events).
The cumulative KPIs on ``metrics`` are scikit-learn's computed offline from the published
predictions and the labels: accuracy, macro F1 and log loss to 1e-9; the one-vs-rest macro AUC
(from per-class histograms of 1,000 bins) within 1e-4, the difference printed. The same stream
through two workers sharing the partitions gives the same KPIs, every label joined once.
"""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

from schemas.feedback import MetricsSnapshot
from schemas.messages import Prediction
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import MULTICLASS_TARGET, multiclass_frame
from tests.integration.conftest import topics_for
from tests.integration.kafka_tools import WorkerProcess, produce_with_labels, read_topic

pytestmark = pytest.mark.integration

N, DELAY = 20_000, 1_000
BASE_MS = 1_700_000_000_000
AUC_TOLERANCE = 1e-4  # pairs within one 1e-3 bin count as ties; 1.3e-6 measured in the unit test
SETTINGS = {
    "STREAMSCORE_METRICS_INTERVAL_S": "1",
    "STREAMSCORE_PARTITIONS": "4",
    "STREAMSCORE_SEGMENT_FEATURES": "channel",
    "STREAMSCORE_LABEL_JOIN_MAX": str(2 * N),  # room for every event: none expires
}


def _run(bootstrap: str, name: str, bundle: ModelBundle, tmp_path, workers: list, count: int, frame, labels):
    """The stream through ``count`` workers of one deployment: their env, the snapshot of every label."""
    env = {**topics_for(bootstrap, f"{name}-{tmp_path.name[-6:]}", str(tmp_path / name)), **SETTINGS}
    started = []
    for i in range(count):
        worker = WorkerProcess(env, bundle.path, tmp_path / f"{name}-{i}.log")  # every role
        workers.append(worker)
        started.append(worker)
    for worker in started:
        worker.wait_ready(timeout_s=120)
    produce_with_labels(bootstrap, env, frame, labels, DELAY, name, BASE_MS, labels_by="entity_id")

    def complete(record) -> bool:
        return MetricsSnapshot.model_validate_json(record.value).labels.matched >= N

    records = read_topic(bootstrap, env["STREAMSCORE_TOPIC_METRICS"], 1, timeout_s=300, counted=complete)
    snapshots = [MetricsSnapshot.model_validate_json(r.value) for r in records]
    return env, next(s for s in snapshots if s.labels.matched >= N), started


def _gauges(worker: WorkerProcess, model: str) -> dict[str, float]:
    """``streamscore_kpi_cumulative`` of ``model`` over every event, by metric, from /metrics."""
    out = {}
    for family in text_string_to_metric_families(worker.get_text("/metrics")):
        for sample in family.samples if family.name == "streamscore_kpi_cumulative" else []:
            if sample.labels["model"] == model and sample.labels["segment_feature"] == "all":
                out[sample.labels["metric"]] = sample.value
    return out


def _row(snapshot: MetricsSnapshot, model: str):
    row = snapshot.overall(model)
    assert row is not None, f"no KPI row of {model}: {snapshot.kpis}"
    return row


def test_multiclass_kpis_equal_scikit_learns_from_one_worker_and_from_two(
    bootstrap, queues_bundle: ModelBundle, tmp_path, workers
) -> None:
    frame = multiclass_frame(N, seed=61)
    labels = frame.pop(MULTICLASS_TARGET).to_numpy()
    model = f"{queues_bundle.name}:{queues_bundle.version}"

    env, alone, (lone,) = _run(bootstrap, "one", queues_bundle, tmp_path, workers, 1, frame, labels)
    published = [Prediction.model_validate_json(r.value) for r in read_topic(
        bootstrap, env["STREAMSCORE_TOPIC_PREDICTIONS"], N)]  # fmt: skip
    by_id = {p.event_id: p for p in published}
    assert len(by_id) == N
    classes = [str(c) for c in queues_bundle.classes]
    ordered = [by_id[f"one-{i}"] for i in range(N)]
    probabilities = np.array([[p.probabilities[c] for c in classes] for p in ordered])
    y = np.array([classes.index(str(label)) for label in labels])
    served = np.array([classes.index(str(p.label)) for p in ordered])
    expected = {
        "accuracy": accuracy_score(y, served),
        "f1_macro": f1_score(y, served, average="macro"),
        "f1_weighted": f1_score(y, served, average="weighted"),
        "log_loss": log_loss(y, probabilities, labels=[0, 1, 2]),
    }
    auc = roc_auc_score(y, probabilities, multi_class="ovr", average="macro")

    one = _row(alone, model)
    assert alone.task == "multiclass" and one.count == N and alone.labels.matched == N
    for name, value in expected.items():
        assert one.cumulative[name] == pytest.approx(value, abs=1e-9), name
    print(
        f"one worker, {N:,} labels: {one.cumulative}; scikit-learn {expected}, OvR macro AUC {auc:.10f} "
        f"(histograms differ by {abs(one.cumulative['auc_macro_ovr'] - auc):.3g})"
    )
    assert abs(one.cumulative["auc_macro_ovr"] - auc) < AUC_TOLERANCE
    gauges = _gauges(lone, model)  # /metrics: every KPI of the last snapshot, by name
    for name in ("accuracy", "f1_macro", "log_loss", "precision:fraud"):
        assert gauges[name] == pytest.approx(one.cumulative[name], abs=1e-9), name

    _, together, two = _run(bootstrap, "two", queues_bundle, tmp_path, workers, 2, frame, labels)
    assert together.labels.matched == N and together.labels.unmatched_labels == 0, "every label joined once"
    shared = [w.get("/stats")["learn"]["matched"] for w in two]
    assert all(shared) and sum(shared) == N, f"labels joined per worker: {shared}"
    by_segment = {(r.model, r.segment_feature, r.segment_value): r for r in alone.kpis}
    assert {(r.model, r.segment_feature, r.segment_value) for r in together.kpis} == set(by_segment)
    for row in together.kpis:
        expected_row = by_segment[(row.model, row.segment_feature, row.segment_value)]
        assert row.count == expected_row.count, row.segment_value
        for metric, value in expected_row.cumulative.items():
            if value is None:
                assert row.cumulative[metric] is None, (row.segment_value, metric)
            else:
                assert row.cumulative[metric] == pytest.approx(value, abs=1e-9), (row.segment_value, metric)
    print(f"two workers (labels joined {shared}): {_row(together, model).cumulative}; {together.labels}")
