"""The lifecycle of a multiclass model without Kafka (issue 28, phase D1).

``model compare``'s tests on right/wrong (the served class is the label's) against a count by
hand; a shadow challenger's probabilities on ``monitor`` (the codec takes what the model takes),
measured by the learner per version and tallied against the champion; a checkpointed board of
other classes refused (the shard starts fresh, the StateAlert path), a checkpoint of phase B (rows
without the shadow's columns) restored; ``STREAMSCORE_ALERT_KPI_METRIC=f1`` watching a multiclass
model's macro F1.
"""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

from schemas.checkpoint import CheckpointHead
from schemas.estimation import MetricEstimate, PerformanceEstimate
from schemas.lifecycle import ChallengerMode
from schemas.messages import MonitorBatch
from schemas.monitor import decode_monitor
from scoring.errors import TrainingError
from scoring.feedback.class_compare import compare_classes_paired, compare_classes_unpaired
from scoring.feedback.join_segments import WaitingPart
from scoring.feedback.loop import Learner
from scoring.lifecycle.retrain import EstimateWatch
from scoring.model.bundle import ModelBundle
from scoring.model.monitor_rows import RecordShape
from scoring.offline.synthetic import MULTICLASS_TARGET, events_from_frame, multiclass_frame
from scoring.offline.training import train_bundle
from streams.services.learn.shard import Shard, learner_for
from streams.services.score.handler import ScoreHandler
from streams.services.shared.checkpoints import CheckpointStore, Restored
from streams.settings import Settings
from tests.unit.fake_kafka import FakeRecord
from tests.unit.test_monitor_codec import _both, _same
from tests.unit.test_multiclass_messages import BASE_MONITOR_V2

SETTINGS = Settings(kafka_bootstrap="x:1")
N = 900


def _hand_served(row: list[float]) -> int:
    """The served class, by hand: the first index holding the largest probability."""
    best = 0
    for k, v in enumerate(row):
        if v > row[best]:
            best = k
    return best


def _three_classes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, a weak champion's and a better challenger's probabilities; a few rows tie."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    weak = rng.dirichlet([1, 1, 1], n)
    strong = rng.dirichlet([1, 1, 1], n)
    strong[np.arange(n), y] += rng.uniform(0, 0.6, n)  # the true class more often on top
    strong /= strong.sum(axis=1, keepdims=True)
    weak[:5] = strong[:5] = [0.4, 0.4, 0.2]  # ties: the first class is served
    return y, weak, strong


def test_compare_on_three_classes_counts_right_and_wrong_as_by_hand() -> None:
    y, weak, strong = _three_classes(400, seed=3)
    champion_right = [_hand_served(list(r)) == t for r, t in zip(weak.tolist(), y.tolist(), strict=True)]
    challenger_right = [_hand_served(list(r)) == t for r, t in zip(strong.tolist(), y.tolist(), strict=True)]
    b = sum(a and not c for a, c in zip(champion_right, challenger_right, strict=True))
    c = sum(cr and not a for a, cr in zip(champion_right, challenger_right, strict=True))

    paired = compare_classes_paired(y, weak, strong, ("q:1", "q:2"))
    assert paired.detail == {"only_champion_right": b, "only_challenger_right": c}
    statistic = (abs(b - c) - 1) ** 2 / (b + c)
    assert paired.statistic == pytest.approx(statistic) and paired.p_value == pytest.approx(
        stats.chi2.sf(statistic, 1)
    )
    assert paired.winner == "challenger" and paired.paired and paired.n_champion == 400
    for kpis, p in ((paired.champion_kpis, weak), (paired.challenger_kpis, strong)):
        served = np.array([_hand_served(list(r)) for r in p.tolist()])
        assert kpis["accuracy"] == pytest.approx(accuracy_score(y, served), abs=1e-12)
        assert kpis["f1_macro"] == pytest.approx(f1_score(y, served, average="macro"), abs=1e-12)
        assert kpis["log_loss"] == pytest.approx(log_loss(y, p, labels=[0, 1, 2]), abs=1e-12)
        assert kpis["auc_macro_ovr"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr"), abs=1e-12)
    lines = "\n".join(paired.lines())
    assert (
        "McNemar on the served class right or wrong" in lines and "winner at alpha 0.01: challenger" in lines
    )

    few = compare_classes_paired(y[:12], weak[:12], strong[:12], ("q:1", "q:2"))  # under 25 discordant
    counts = few.detail
    assert few.test.endswith("(exact)") and few.p_value == pytest.approx(
        stats.binomtest(counts["only_champion_right"], sum(counts.values()), 0.5).pvalue
    )
    same = compare_classes_paired(y, weak, weak.copy(), ("q:1", "q:2"))
    assert same.p_value == 1.0 and same.winner is None

    split = compare_classes_unpaired((y[:200], weak[:200]), (y[200:], strong[200:]), ("q:1", "q:2"))
    right_a, right_b = sum(champion_right[:200]), sum(challenger_right[200:])
    pooled = (right_a + right_b) / 400
    z = (right_b / 200 - right_a / 200) / np.sqrt(pooled * (1 - pooled) * (2 / 200))
    assert not split.paired and split.statistic == pytest.approx(z)
    assert split.p_value == pytest.approx(2 * stats.norm.sf(abs(z))) and split.winner == "challenger"
    with pytest.raises(ValueError, match="not \\(events, classes\\)"):
        compare_classes_paired(y, weak[:, 0], strong, ("q:1", "q:2"))


@pytest.fixture(scope="module")
def shadow_run(queues_bundle: ModelBundle) -> dict:
    """A champion (the session's 3-class model) and a challenger in shadow: what the scorer writes."""
    challenger = train_bundle(
        multiclass_frame(3000, seed=71), MULTICLASS_TARGET, task="multiclass", name="queues", version="2",
        num_trees=30,
    )  # fmt: skip
    frame = multiclass_frame(N, seed=72)
    truth = frame.pop(MULTICLASS_TARGET).tolist()
    handler = ScoreHandler(SETTINGS, queues_bundle)
    handler.swap(queues_bundle, challenger, ChallengerMode.shadow)
    records: list[bytes] = []
    events = list(events_from_frame(frame, prefix="s"))
    handler.handle(
        [FakeRecord("features", 0, i, value_=orjson.dumps(e)) for i, e in enumerate(events)],
        lambda topic, key, value, headers, partition=None: topic == "monitor" and records.append(value),
    )
    return {"challenger": challenger, "frame": frame, "truth": truth, "records": records}


def test_a_shadow_multiclass_challenger_is_measured_and_tallied_against_the_champion(
    queues_bundle: ModelBundle, shadow_run: dict
) -> None:
    challenger, truth = shadow_run["challenger"], shadow_run["truth"]
    columns = [decode_monitor(v) for v in shadow_run["records"]]
    for value, c in zip(shadow_run["records"], columns, strict=True):
        model = MonitorBatch.model_validate_json(value)
        assert model.shadow_probabilities is not None and c.shadow_model == "queues:2"
        np.testing.assert_array_equal(c.shadow_probabilities, np.asarray(model.shadow_probabilities))
    shadow = np.concatenate([c.shadow_probabilities for c in columns])
    champion = np.concatenate([c.probabilities for c in columns])
    expected = challenger.booster.predict(challenger.spec.encode_frame(shadow_run["frame"]))
    assert np.abs(shadow - expected).max() <= 1e-12, "the challenger's own predict"

    learner = learner_for(SETTINGS, queues_bundle)
    ids = [e for c in columns for e in c.event_ids]
    for c in columns:
        learner.observe(c)
    for event_id, label in zip(ids, truth, strict=True):
        learner.label(event_id, label, columns[-1].event_times[-1])

    y = np.array([queues_bundle.class_index(t) for t in truth])
    snapshot = learner.snapshot([])
    for model, p in (("queues:1", champion), ("queues:2", shadow)):
        row = snapshot.overall(model)
        assert row is not None and row.count == N, model
        assert row.cumulative["accuracy"] == pytest.approx(accuracy_score(y, p.argmax(axis=1)), abs=1e-9)
        assert row.cumulative["log_loss"] == pytest.approx(log_loss(y, p, labels=[0, 1, 2]), abs=1e-9)
    (tally,) = learner.tallies.values()
    a = [_hand_served(list(r)) == t for r, t in zip(champion.tolist(), y.tolist(), strict=True)]
    b = [_hand_served(list(r)) == t for r, t in zip(shadow.tolist(), y.tolist(), strict=True)]
    print(f"shadow tally: {vars(tally)}; accuracy {np.mean(a):.4f} -> {np.mean(b):.4f}")
    assert (tally.champion, tally.challenger, tally.pairs) == ("queues:1", "queues:2", N)
    assert tally.only_champion_right == sum(x and not z for x, z in zip(a, b, strict=True))
    assert tally.only_challenger_right == sum(z and not x for x, z in zip(a, b, strict=True))


SHADOW = {"shadow_model_name": "q", "shadow_model_version": "2", "shadow_scores": [0.6, None]}
SHADOW_MUTATIONS = {
    "as written": {"shadow_probabilities": [[0.3, 0.6, 0.1], None]},
    "every row": {"shadow_probabilities": [[0.3, 0.6, 0.1], [0.2, 0.2, 0.6]]},
    "without shadow scores": {"shadow_scores": None, "shadow_probabilities": [[0.3, 0.6, 0.1], None]},
    "a row short": {"shadow_probabilities": [[0.3, 0.7], None]},
    "a row missing": {"shadow_probabilities": [[0.3, 0.6, 0.1]]},
    "a value null": {"shadow_probabilities": [[None, 0.6, 0.1], None]},
    "a value as text": {"shadow_probabilities": [["0.3", 0.6, 0.1], None]},
    "a value as bool": {"shadow_probabilities": [[True, 0.6, 0.1], None]},
    "not a list": {"shadow_probabilities": {"a": 1}},
    "in a version 1 record": {"schema_version": 1, "classes": None, "probabilities": None,
                              "shadow_probabilities": [[0.3, 0.6, 0.1], None]},
}  # fmt: skip


@pytest.mark.parametrize("change", SHADOW_MUTATIONS.values(), ids=SHADOW_MUTATIONS.keys())
def test_the_codec_takes_exactly_the_shadow_probabilities_the_model_takes(change: dict) -> None:
    fast, model = _both({**BASE_MONITOR_V2, **SHADOW, **change})
    assert (fast is None) == (model is None)
    if model is not None:
        _same(fast, model)
        rows = model.shadow_probabilities
        expected = None if rows is None else [[np.nan] * 3 if r is None else r for r in rows]
        np.testing.assert_array_equal(fast.shadow_probabilities, expected)


def _restored(learner: Learner, partition: int = 0) -> tuple[Restored, WaitingPart]:
    """The learner's checkpoint as a shard restores it, and its waiting events."""
    _, slots = learner.join.waiting()
    columns, rows = learner.join.take(slots).payload()
    state = {**json.loads(json.dumps(learner.state())), "partition": partition, "positions": {}}
    head = CheckpointHead.model_construct(generation=1)
    return Restored(state, {}, head), WaitingPart(columns, rows)


def test_a_checkpointed_board_of_other_classes_is_refused_and_the_shard_starts_fresh(
    queues_bundle: ModelBundle, shadow_run: dict
) -> None:
    learner = learner_for(SETTINGS, queues_bundle)
    columns = [decode_monitor(v) for v in shadow_run["records"]]
    learner.observe(columns[0])
    learner.label(columns[0].event_ids[0], shadow_run["truth"][0], columns[0].event_times[0])
    restored, part = _restored(learner)
    reordered = Learner(
        queues_bundle.spec, queues_bundle.reference, "multiclass", classes=["support", "billing", "fraud"]
    )
    with pytest.raises(ValueError, match="a board of classes \\['billing', 'fraud', 'support'\\]"):
        reordered.restore(restored.state, None, [part])

    store = CheckpointStore(SETTINGS, "app/learn", b"k" * 32)
    fresh = Learner(queues_bundle.spec, queues_bundle.reference, "multiclass", classes=["support", "fraud"])
    shard = Shard(0, reordered, store)
    assert not shard.resume(restored, fresh) and shard.learner is fresh
    assert "a board of classes" in str(store.restore_problem) and store.restore_refusal.value == "content"
    own = Shard(0, learner_for(SETTINGS, queues_bundle), store)
    assert own.resume(restored, learner_for(SETTINGS, queues_bundle)), "its own classes: taken"
    assert own.learner.board.overall("queues:1").n == 1


def test_a_checkpoint_of_rows_without_the_shadow_columns_is_restored(
    queues_bundle: ModelBundle, shadow_run: dict
) -> None:
    learner = learner_for(SETTINGS, queues_bundle)
    columns = [decode_monitor(v) for v in shadow_run["records"]]
    for c in columns:
        learner.observe(c)
    _, slots = learner.join.waiting()
    batch = learner.join.take(slots)
    features, k = len(queues_bundle.spec.names), 3
    assert batch.rows.shape[1] == features + 2 * k
    cols, _ = batch.payload()
    old_rows = np.ascontiguousarray(batch.rows[:, : features + k]).tobytes()  # as phase B wrote them
    again = learner_for(SETTINGS, queues_bundle)
    again.restore(json.loads(json.dumps(learner.state())), None, [WaitingPart(cols, old_rows)])
    event_id = columns[0].event_ids[0]
    again.label(event_id, shadow_run["truth"][0], columns[-1].event_times[-1])
    assert again.board.overall("queues:1").n == 1 and again.board.overall("queues:2") is None
    assert again.join.counts()["pending_events"] == N - 1


def test_alert_kpi_metric_f1_watches_a_multiclass_models_macro_f1() -> None:
    def window(i: int, f1: float) -> PerformanceEstimate:
        m = MetricEstimate(metric="f1_macro", estimate=f1, std=0.01, lower=f1 - 0.03, upper=f1 + 0.03,
                           method="cbpe", uncertainty="analytic")  # fmt: skip
        return PerformanceEstimate(model_name="q", model_version="1", task="multiclass", window=i, events=500,
                                   band_z=3, metrics=[m], created_at=0, end_event_time=i)  # fmt: skip

    watch = EstimateWatch("f1", 0.7)
    alerts = [watch.check(window(i, f1)) for i, f1 in enumerate([0.8, 0.6, 0.75])]
    assert [a.status if a else None for a in alerts] == [None, "firing", "resolved"]
    assert alerts[1].metric == "f1_macro" and "estimated f1_macro 0.6000" in alerts[1].message


def test_a_retrain_keeps_the_live_models_classes_in_its_order_even_one_the_events_never_name() -> None:
    frame = multiclass_frame(1500, seed=5)
    frame = frame[frame[MULTICLASS_TARGET] != "fraud"]  # the labelled events name two of the three
    live_order = ("support", "billing", "fraud")  # an imported model's order, not sorted
    bundle = train_bundle(frame, MULTICLASS_TARGET, task="multiclass", num_trees=5, classes=live_order)
    assert bundle.classes == live_order
    assert bundle.booster.predict(bundle.spec.encode_frame(frame[:3])).shape == (3, 3)
    assert bundle.metadata.origin.classes_from == "given, in that order"
    with pytest.raises(TrainingError, match="it holds 'refunds', not one of the classes"):
        train_bundle(frame.assign(queue="refunds"), MULTICLASS_TARGET, task="multiclass", classes=live_order)


def test_a_shadow_probability_outside_zero_one_is_refused_with_the_reason(queues_bundle: ModelBundle) -> None:
    shape = RecordShape(queues_bundle.spec, queues_bundle.class_names)
    rows = [[0.0] * len(queues_bundle.spec.names)] * 2
    body = {**BASE_MONITOR_V2, **SHADOW, "feature_names": queues_bundle.spec.names, "rows": rows,
            "classes": list(queues_bundle.class_names)}  # fmt: skip
    good = decode_monitor(orjson.dumps({**body, "shadow_probabilities": [[0.3, 0.6, 0.1], None]}))
    assert shape.problem(good) is None
    bad = decode_monitor(orjson.dumps({**body, "shadow_probabilities": [[0.3, 1.6, 0.1], None]}))
    assert shape.problem(bad) == "a shadow challenger's class probability outside [0, 1]"
