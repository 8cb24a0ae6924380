"""Labels joined to monitored events, KPIs and the River challenger, without Kafka."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from river import compose, datasets, evaluate, linear_model, metrics, preprocessing

from scoring.checkpoint import binding
from scoring.drift import MonitorColumns
from scoring.feedback.label_join import LabelJoin, ScoredEvent
from scoring.feedback.loop import Learner
from scoring.metrics.holdout import binary_metrics, regression_metrics, roc_auc
from scoring.metrics.kpis import BinaryKpis, KpiBoard, RegressionKpis, histogram_auc
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import agrawal_frame
from scoring.offline.training import train_bundle

BOUND = binding("checkpoints", "app/learn/p0/1", "app")


def columns(
    bundle: ModelBundle, frame: pd.DataFrame, first: int, ids: list[str] | None = None
) -> MonitorColumns:
    matrix = bundle.spec.encode_frame(frame)
    n = len(frame)
    offsets = list(range(first, first + n))
    return MonitorColumns(
        model_name=bundle.name,
        model_version=bundle.version,
        source_topic="features",
        partition=0,
        offsets=offsets,
        event_ids=ids or [f"e{o}" for o in offsets],
        event_times=offsets,
        scores=bundle.predict(matrix),
        rows=matrix,
    )


# ---------------------------------------------------------------- KPIs


def test_binary_kpis_equal_the_batch_metrics() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 3000).astype(float)
    p = np.clip(y * 0.3 + rng.random(3000) * 0.7, 0, 1)
    kpis = BinaryKpis(window=500)
    for label, score in zip(y, p, strict=True):
        kpis.update(label, score)
    whole, last = binary_metrics(y, p), binary_metrics(y[-500:], p[-500:])
    cumulative, rolling = kpis.cumulative(), kpis.rolling()
    for name in ("accuracy", "precision", "recall", "f1", "log_loss"):
        assert cumulative[name] == pytest.approx(whole[name], abs=1e-9)
        assert rolling[name] == pytest.approx(last[name], abs=1e-9)
    assert rolling["auc"] == pytest.approx(last["auc"], abs=1e-9)
    assert cumulative["auc"] == pytest.approx(roc_auc(y, p), abs=2e-3)  # histogram of 1,000 bins


def test_histogram_auc_counts_pairs_in_one_bin_as_ties() -> None:
    assert histogram_auc(np.array([0, 2]), np.array([2, 0])) == 1.0
    assert histogram_auc(np.array([1, 0]), np.array([1, 0])) == 0.5


def test_regression_kpis_equal_the_batch_metrics() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(10, 3, 2000)
    y[::100] = 0.0  # zero targets are left out of MAPE
    pred = y + rng.normal(0, 1, 2000)
    kpis = RegressionKpis(window=300)
    for label, guess in zip(y, pred, strict=True):
        kpis.update(label, guess)
    whole, last = regression_metrics(y, pred), regression_metrics(y[-300:], pred[-300:])
    for name in ("mae", "rmse", "mape", "r2"):
        assert kpis.cumulative()[name] == pytest.approx(whole[name], rel=1e-9)
        assert kpis.rolling()[name] == pytest.approx(last[name], rel=1e-9)


def test_kpi_board_state_round_trips_through_json() -> None:
    import json

    board = KpiBoard("binary", window=50)
    rng = np.random.default_rng(2)
    for i in range(300):
        board.update("m:1", float(i % 2), float(rng.random()), {"region": "north" if i % 3 else "south"})
    again = KpiBoard.from_state(json.loads(json.dumps(board.state())))
    assert again.rows() == board.rows()
    again.update("m:1", 1.0, 0.9, {"region": "north"})
    board.update("m:1", 1.0, 0.9, {"region": "north"})
    assert again.rows() == board.rows()


# ---------------------------------------------------------------- the join


def _event(event_id: str, t: int) -> ScoredEvent:
    return ScoredEvent("m:1", 0.5, b"", "features", 0, t, event_id, t)


def test_join_matches_labels_either_way_round_and_bounds_what_waits() -> None:
    join = LabelJoin(ttl_ms=1000, max_entries=10_000)
    join.add_event(_event("a", 0))
    assert join.add_label("a", 1.0, 5) is not None
    assert join.add_label("b", 0.0, 10) is None  # label first
    assert join.add_event(_event("b", 20)) is not None
    for t in range(100, 5000):
        join.add_event(_event(f"x{t}", t))
    assert join.counts()["pending_events"] <= 1001
    assert join.expired_events >= 3899
    join.add_label("never", 1.0, 0)
    join.add_event(_event("late", 9000))
    assert join.unmatched_labels == 1 and join.matched == 2


# ---------------------------------------------------------------- the learner on a concept change


@pytest.fixture(scope="module")
def loans_f0(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    frame = agrawal_frame(20_000, seed=1, classification_function=0)
    return train_bundle(frame, "approved", tmp_path_factory.mktemp("f0") / "b", name="loans", num_trees=50)


def test_after_a_concept_change_lightgbm_falls_river_recovers_and_the_cusum_fires(
    loans_f0: ModelBundle,
) -> None:
    n, switch, delay = 40_000, 20_000, 1_000
    before = agrawal_frame(n, seed=9, classification_function=0)
    after = agrawal_frame(n, seed=9, classification_function=7)  # same applicants, new labelling
    labels = np.where(np.arange(n) < switch, before["approved"], after["approved"])
    features = before.drop(columns=["approved"])
    learner = Learner(loans_f0.spec, loans_f0.reference, "binary", window=1000, segment_features=("elevel",))
    model = f"{loans_f0.name}:{loans_f0.version}"
    changes, at = [], {}
    for start in range(0, n, 500):
        changes += learner.observe(columns(loans_f0, features.iloc[start : start + 500], start))
        for i in range(max(0, start - delay), max(0, start + 500 - delay)):
            changes += learner.label(f"e{i}", float(labels[i]), i)
        if start + 500 - delay == switch:
            at["switch"] = learner.board.overall(model).rolling()["accuracy"]
    for i in range(n - delay, n):
        changes += learner.label(f"e{i}", float(labels[i]), i)
    lgbm = learner.board.overall(model).rolling()["accuracy"]
    river = learner.board.overall(learner.challenger_name).rolling()["accuracy"]
    print(f"rolling accuracy: LightGBM {at['switch']:.3f} before, {lgbm:.3f} at the end; River {river:.3f}")
    assert at["switch"] > 0.9 and lgbm < at["switch"] - 0.2
    assert river > lgbm + 0.1
    assert all(c.offset >= switch for c in changes), "no change before the switch"
    (cusum, *_) = [c for c in changes if c.detector == "cusum" and c.stream == "error"]
    assert cusum.offset < switch + 2000
    assert cusum.mean_before < 0.1 and cusum.mean_after > cusum.mean_before + 0.2, cusum
    assert learner.join.counts()["matched"] == n
    rows = learner.kpi_rows()
    assert {r["segment_feature"] for r in rows} == {"all", "elevel"}


def test_progressive_validation_equals_rivers_on_phishing(tmp_path) -> None:
    data = list(datasets.Phishing())
    frame = pd.DataFrame([x for x, _ in data]).astype(float)
    frame["y"] = [int(y) for _, y in data]
    bundle = train_bundle(frame, "y", tmp_path / "phish", name="phish", num_trees=10)
    learner = Learner(bundle.spec, bundle.reference, "binary")
    for start in range(0, len(frame), 100):
        part = frame.iloc[start : start + 100]
        learner.observe(columns(bundle, part.drop(columns=["y"]), start))
        for i in range(start, start + len(part)):
            learner.label(f"e{i}", float(frame["y"].iloc[i]), i)
    ours = learner.board.overall(learner.challenger_name).cumulative()["accuracy"]

    names = list(frame.columns[:-1])
    model = compose.Select(*names) | preprocessing.StandardScaler() | linear_model.LogisticRegression()
    theirs = evaluate.progressive_val_score(datasets.Phishing(), model, metrics.Accuracy()).get()
    print(f"progressive accuracy on Phishing: ours {ours:.6f}, river {theirs:.6f}")
    assert math.isclose(ours, theirs, abs_tol=1e-9)


def test_events_waiting_for_labels_survive_checkpoints_in_segments(
    agrawal_bundle: ModelBundle, tmp_path
) -> None:
    """Two checkpoints: the closed segments are written once; the second carries only bitmaps and the
    open segment, and restoring from it gives the same waiting events and then the same KPIs."""
    import orjson

    from scoring import checkpoint
    from scoring.feedback.join_segments import JoinSegments, restore_events

    frame = agrawal_frame(600, seed=9, classification_function=2)
    labels = frame.pop("approved").to_numpy(float)
    frame.loc[frame.index % 5 == 0, "salary"] = np.nan  # missing values must come back as missing
    before = Learner(agrawal_bundle.spec, agrawal_bundle.reference, "binary", segment_features=("elevel",))
    before.observe(columns(agrawal_bundle, frame, 0))
    key = checkpoint.load_or_create_key(tmp_path / "state.key")
    tracker = JoinSegments(size=128)
    written: dict[int, bytes] = {}

    def take_checkpoint() -> tuple[bytes, int, int]:
        """The head, the bytes of new segments, and the bytes of the join's part of the head."""
        plan = tracker.plan(before.join)
        new_bytes = 0
        for sid in plan.new:
            written[sid] = checkpoint.encode(*plan.payload(sid), key, BOUND)
            new_bytes += len(written[sid])
        open_columns, open_rows = plan.open_payload()
        head = {**before.state(), "segments": plan.head(), "open": open_columns}
        join_part = len(orjson.dumps(plan.head())) + len(orjson.dumps(open_columns)) + len(open_rows)
        tracker.done(plan)
        payload = checkpoint.encode(head, {**before.river_objects(), "open_rows": open_rows}, key, BOUND)
        return payload, new_bytes, join_part

    first, first_segments, first_join = take_checkpoint()
    for i in range(0, 600, 3):  # a third of the labels come
        before.label(f"e{i}", labels[i], i)
    second, second_segments, second_join = take_checkpoint()

    state, objects = checkpoint.decode(second, key, BOUND)
    state = orjson.loads(orjson.dumps(state))
    segments = {sid: checkpoint.decode(payload, key, BOUND) for sid, payload in written.items()}

    events, _ = restore_events(state["segments"], segments, (state["open"], objects["open_rows"]))
    after = Learner(agrawal_bundle.spec, agrawal_bundle.reference, "binary", segment_features=("elevel",))
    after.restore(state, objects, events)

    assert list(after.join.events) == list(before.join.events) and len(after.join.events) == 400
    assert [e.row for e in after.join.events.values()] == [e.row for e in before.join.events.values()]
    assert after.join.next_seq == before.join.next_seq == 600
    print(
        f"600 waiting events: first checkpoint {len(first):,} bytes (join part {first_join:,}) + "
        f"{first_segments:,} of segments; after 200 labels: {len(second):,} (join part {second_join:,}) + "
        f"{second_segments:,}"
    )
    assert second_segments == 0, "closed segments are written once"
    assert second_join < first_segments / 4, "later checkpoints carry bitmaps, not the closed segments' rows"
    for learner in (before, after):
        for i, y in enumerate(labels):
            if i % 3:
                learner.label(f"e{i}", y, i)
    assert before.kpi_rows() == after.kpi_rows()


def test_a_restored_event_whose_row_does_not_fit_the_model_is_refused(agrawal_bundle: ModelBundle) -> None:
    """A checkpoint's rows cut short (another model's, a bug's) would be misread by every later label."""
    from scoring.feedback.join_segments import WaitingPart, encode_events
    from scoring.feedback.label_join import ScoredEvent

    learner = Learner(agrawal_bundle.spec, agrawal_bundle.reference, "binary")
    state = learner.state()
    width = 8 * len(agrawal_bundle.spec.names)
    short = ScoredEvent("loans:1", 0.5, b"\0" * (width - 3), "features", 0, 0, "e0", 1)
    with pytest.raises(ValueError, match="row bytes, not"):
        Learner(agrawal_bundle.spec, agrawal_bundle.reference, "binary").restore(
            state, learner.river_objects(), [WaitingPart(*encode_events([short]))]
        )
