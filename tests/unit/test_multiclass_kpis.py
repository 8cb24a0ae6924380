"""Multiclass KPIs (issue 28, phase B) against scikit-learn, and merged across shards.

The streaming board keeps counts and sums (a confusion matrix, the log-loss sum, per-class score
histograms): accuracy, F1, per-class precision and recall and the log loss equal scikit-learn's to
1e-9; the one-vs-rest macro AUC from histograms of 1,000 bins differs only by pairs within one bin
(counted as ties), measured here; the rolling KPIs (exact ranks) equal scikit-learn's AUC.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score, roc_auc_score

from scoring.metrics.kpis import KpiBoard
from scoring.metrics.multiclass import MulticlassKpis
from streams.services.learn.merge import partial_problem

CLASSES = ["billing", "fraud", "support"]
HISTOGRAM_AUC_ERROR = 1e-4  # measured below: 1.3e-6 on 5,000 events (pairs within one 1e-3 bin count half)


def _stream(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and softmax probabilities of a model that is right about 70% of the time."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    p[:5] = [1.0, 0.0, 0.0]  # certain, and wrong for those not billing: the log loss clips them
    return y, p


def _board(y: np.ndarray, p: np.ndarray, window: int = 100_000) -> KpiBoard:
    board = KpiBoard("multiclass", window, classes=CLASSES)
    for label, row in zip(y.tolist(), p, strict=True):
        board.update("queues:1", label, row, {})
    return board


def _expected(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    predicted = p.argmax(axis=1)
    out = {
        "accuracy": accuracy_score(y, predicted),
        "f1_macro": f1_score(y, predicted, average="macro"),
        "f1_weighted": f1_score(y, predicted, average="weighted"),
        "log_loss": log_loss(y, p, labels=[0, 1, 2]),
    }
    precision = precision_score(y, predicted, average=None, labels=[0, 1, 2])
    recall = recall_score(y, predicted, average=None, labels=[0, 1, 2])
    for k, name in enumerate(CLASSES):
        out[f"precision:{name}"], out[f"recall:{name}"] = precision[k], recall[k]
    return out


def test_multiclass_kpis_equal_scikit_learns() -> None:
    y, p = _stream(5000, seed=1)
    kpis = _board(y, p).overall("queues:1")
    assert isinstance(kpis, MulticlassKpis)
    cumulative, rolling = kpis.cumulative(), kpis.rolling()
    for name, value in _expected(y, p).items():
        assert cumulative[name] == pytest.approx(value, abs=1e-9), name
        assert rolling[name] == pytest.approx(value, abs=1e-9), name
    auc = roc_auc_score(y, p / p.sum(axis=1, keepdims=True), multi_class="ovr", average="macro")
    assert rolling["auc_macro_ovr"] == pytest.approx(auc, abs=1e-9)
    difference = abs(cumulative["auc_macro_ovr"] - auc)
    print(f"OvR macro AUC: histograms {cumulative['auc_macro_ovr']:.10f}, scikit-learn {auc:.10f}")
    assert difference < HISTOGRAM_AUC_ERROR


def test_a_class_never_predicted_has_no_precision_and_counts_zero_in_macro_f1() -> None:
    y = np.array([0, 1, 2, 2, 0])
    p = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7], [0.5, 0.1, 0.4], [0.9, 0.05, 0.05]])
    cumulative = _board(y, p).overall("queues:1").cumulative()
    assert cumulative["precision:fraud"] is None and cumulative["recall:fraud"] == 0.0
    assert cumulative["f1_macro"] == pytest.approx(f1_score(y, p.argmax(axis=1), average="macro"), abs=1e-9)


def test_shards_merged_equal_one_board_and_survive_json() -> None:
    y, p = _stream(3000, seed=2)
    shard_of = np.random.default_rng(3).integers(0, 3, len(y))
    parts = []
    for shard in range(3):
        mine = shard_of == shard
        state = json.loads(json.dumps(_board(y[mine], p[mine], window=200).state()))
        assert partial_problem({"partition": shard, "join": {}, "board": state}, shard) is None
        parts.append(KpiBoard.from_state(state))
    merged = KpiBoard.merged(parts).overall("queues:1")
    one = _board(y, p, window=200).overall("queues:1")
    assert merged.cumulative() == one.cumulative() and merged.n == one.n == 3000
    assert merged.confusion == one.confusion and merged.pos_hist == one.pos_hist


def test_a_partial_whose_counts_do_not_add_up_or_fit_the_classes_is_refused() -> None:
    y, p = _stream(50, seed=4)
    state = _board(y, p).state()
    kpis = state["kpis"][0][1]
    kpis["confusion"][0] += 1
    assert "confusion matrix does not add up" in _problem(state)
    kpis["confusion"] = kpis["confusion"][:4]
    assert "not a KPI board" in _problem(state)
    other = _board(y, p).state()
    other["kpis"][0][1]["classes"] = ["a", "b", "c"]
    assert "not a KPI board" in _problem(other)


def _problem(board: dict) -> str:
    return str(partial_problem({"partition": 0, "join": {}, "board": board}, 0))
