"""A multiclass model's estimates checked against its realized KPIs (issue 28, phase D): the learner
hands each labelled event's class and probabilities to the ledger, which settles a window into an
``EstimateCheck`` of accuracy, macro F1 and macro one-vs-rest AUC, as for a binary model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from schemas.drift import PartitionSpan
from schemas.estimation import MetricEstimate, PerformanceEstimate
from schemas.monitor import MonitorColumns
from scoring.estimation import PerformanceEstimator
from scoring.estimation.ledger import EstimateLedger
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import MULTICLASS_TARGET, multiclass_frame
from streams.services.learn.estimates import EstimateChecks
from streams.services.learn.shard import learner_for
from streams.settings import Settings

SETTINGS = Settings(kafka_bootstrap="x:1")
HISTOGRAM_AUC = 2e-3  # the realized AUC counts pairs within one of 1,000 bins as ties


def _estimate(bundle: ModelBundle, probabilities: np.ndarray, window: int, first: int) -> PerformanceEstimate:
    estimator = PerformanceEstimator.from_bundle(bundle)
    assert estimator is not None
    last = first + len(probabilities) - 1
    estimate = estimator.estimate(
        probabilities.max(axis=1), probabilities=probabilities, window=window, start_event_time=first,
        end_event_time=last,
    )  # fmt: skip
    spans = [PartitionSpan(topic="features", partition=0, first_offset=first, last_offset=last)]
    return estimate.model_copy(update={"spans": spans})


def test_the_learner_pairs_each_multiclass_window_estimate_with_its_realized_kpis(
    queues_bundle: ModelBundle,
) -> None:
    labelled = multiclass_frame(1_500, seed=71)
    rows = queues_bundle.spec.encode_frame(labelled.drop(columns=[MULTICLASS_TARGET]))
    p = queues_bundle.predict(rows)
    names = labelled[MULTICLASS_TARGET].tolist()
    y = np.array([queues_bundle.class_index(n) for n in names])
    learner, checks = learner_for(SETTINGS, queues_bundle), EstimateChecks()
    checks.follow(learner)
    offsets = list(range(1_500))
    learner.observe(
        MonitorColumns("queues", "1", "features", 0, offsets, [f"e{o}" for o in offsets], offsets,
                       p.max(axis=1), rows, classes=list(queues_bundle.class_names), probabilities=p)
    )  # fmt: skip
    for i in range(0, 300):  # labels before their window's estimate wait for it
        learner.label(f"e{i}", names[i], i)
    checks.ledger.add(_estimate(queues_bundle, p[:1_000], 0, 0))
    checks.ledger.add(_estimate(queues_bundle, p[1_000:], 1, 1_000))
    for i in range(300, 1_250):
        learner.label(f"e{i}", names[i], i)

    settled = checks.settle(learner.snapshot([]), newest_time=1_499, ttl_ms=600_000).estimate_checks
    assert [(c.window, c.labelled) for c in settled] == [(0, 1_000)]  # window 1 waits for its labels
    by_metric = {c.metric: c for c in settled[0].checks}
    assert set(by_metric) == {"accuracy", "f1_macro", "auc_macro_ovr"}
    predicted = p[:1_000].argmax(axis=1)
    assert by_metric["accuracy"].realized == pytest.approx(accuracy_score(y[:1_000], predicted), abs=1e-9)
    assert by_metric["f1_macro"].realized == pytest.approx(
        f1_score(y[:1_000], predicted, average="macro"), abs=1e-9
    )
    auc = roc_auc_score(y[:1_000], p[:1_000], multi_class="ovr", average="macro")
    assert by_metric["auc_macro_ovr"].realized == pytest.approx(auc, abs=HISTOGRAM_AUC)
    print(settled[0].message)
    assert not settled[0].disagree, "a stationary stream: estimate and labels agree"

    restored = EstimateChecks()  # the pending window, its 250 labels, through a checkpoint
    restored.restore(json.loads(json.dumps(checks.state())))
    late = restored.ledger.settle(newest_event_time=10_000_000, ttl_ms=600_000)
    assert [(c.window, c.labelled) for c in late] == [(1, 250)]
    rest = slice(1_000, 1_250)
    assert {c.metric: c.realized for c in late[0].checks}["accuracy"] == pytest.approx(
        accuracy_score(y[rest], p[rest].argmax(axis=1)), abs=1e-9
    )


def test_a_hand_made_window_whose_labels_fall_short_of_its_estimate_disagrees() -> None:
    def metric(name: str, value: float) -> MetricEstimate:
        return MetricEstimate(metric=name, estimate=value, std=0.01, lower=value - 0.03, upper=value + 0.03,
                              method="cbpe", uncertainty="analytic")  # fmt: skip

    estimate = PerformanceEstimate(
        model_name="q", model_version="1", task="multiclass", window=4, end_event_time=10,
        spans=[PartitionSpan(topic="features", partition=0, first_offset=0, last_offset=5)], events=6,
        band_z=3.0, metrics=[metric("accuracy", 0.9), metric("f1_macro", 0.9), metric("auc_macro_ovr", 0.9)],
        created_at=0,
    )  # fmt: skip
    ledger = EstimateLedger()
    ledger.add(estimate)
    probabilities = [(0.8, 0.1, 0.1), (0.1, 0.8, 0.1), (0.1, 0.1, 0.8)] * 2
    labels = [0, 2, 1, 1, 0, 2]  # two of six right
    assert all(ledger.labelled("q:1", "features", 0, i, max(p), k, p) for i, (p, k) in
               enumerate(zip(probabilities, labels, strict=True)))  # fmt: skip
    assert not ledger.labelled("q:1", "features", 0, 1, 0.8, 5, (0.8, 0.1, 0.1)), "the window is complete"
    (check,) = ledger.settle(newest_event_time=10, ttl_ms=1_000)
    realized = {c.metric: c.realized for c in check.checks}
    assert realized["accuracy"] == pytest.approx(2 / 6) and check.disagree
    assert "accuracy realized 0.3333 vs estimated 0.9000" in check.message
    wrong_width = EstimateLedger()
    wrong_width.add(estimate)
    wrong_width.labelled("q:1", "features", 0, 0, 0.8, 0, (0.8, 0.1, 0.1))
    assert not wrong_width.labelled("q:1", "features", 0, 1, 0.8, 0, (0.8, 0.2)), "other classes: not counted"
