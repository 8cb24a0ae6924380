"""Registry, gate, lifecycle transitions, traffic split and shadow scoring, without Kafka."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest

from schemas import MonitorBatch, Prediction
from schemas.lifecycle import ChallengerMode, Check, ModelRef
from scoring.lifecycle import decisions as lifecycle
from scoring.lifecycle.decisions import LifecycleError, Serving, apply_update
from scoring.lifecycle.gate import GateRefused, admit
from scoring.lifecycle.registry import ModelRegistry, load_ref
from scoring.lifecycle.routing import to_challenger
from scoring.model.bundle import MANIFEST_FILE, MODEL_FILE, ModelBundle
from scoring.offline.synthetic import agrawal_frame, events_from_frame, numeric_frame
from scoring.offline.training import train_bundle
from streams.services.score.handler import ScoreHandler
from streams.settings import Settings
from tests.unit.test_handler import Record, Sink

SETTINGS = Settings(kafka_bootstrap="unit:0")


def _rewrite_manifest(directory: Path) -> None:
    """Make the manifest agree with whatever the files now hold (a consistent but broken bundle)."""
    import hashlib

    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    for name in manifest["files"]:
        manifest["files"][name] = hashlib.sha256((directory / name).read_bytes()).hexdigest()
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))


# ------------------------------------------------------------------ registry


@pytest.mark.parametrize("remote", [False, True], ids=["local path", "fsspec memory URL"])
def test_registry_registers_lists_describes_and_loads(agrawal_bundle_dir, v2_dir, tmp_path, remote):
    root = f"memory://registry-{tmp_path.name}" if remote else str(tmp_path / "registry")
    registry = ModelRegistry(root)
    v1 = registry.register(agrawal_bundle_dir)
    v2 = registry.register(v2_dir)
    assert (v1.name, v1.version, v2.version) == ("loans", "1", "2")
    assert [m.ref.version for m in registry.models("loans")] == ["1", "2"]
    assert registry.describe("loans", "2")["metadata"]["version"] == "2"
    assert registry.register(v2_dir) == v2  # the same bundle again: nothing changes
    loaded = load_ref(v2)
    assert (loaded.name, loaded.version) == ("loans", "2")
    with pytest.raises(Exception, match="not in the registry"):
        registry.ref("loans", "9")


def test_registry_refuses_other_contents_under_a_registered_version(agrawal_bundle_dir, tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    registry.register(agrawal_bundle_dir)
    other = tmp_path / "other"
    train_bundle(agrawal_frame(500, seed=5, classification_function=2), "approved", other, name="loans")
    with pytest.raises(Exception, match="already registered with other contents"):
        registry.register(other)


# ------------------------------------------------------------------ gate


def test_gate_admits_a_compatible_version(agrawal_bundle, v2_dir):
    candidate = admit(lambda: ModelBundle.load(v2_dir), agrawal_bundle)
    assert candidate.version == "2"


def test_gate_refuses_a_bad_manifest(agrawal_bundle, v2_dir, tmp_path):
    bad = Path(shutil.copytree(v2_dir, tmp_path / "bad-manifest"))
    (bad / MODEL_FILE).write_text((bad / MODEL_FILE).read_text() + "\n")  # one byte more
    with pytest.raises(GateRefused) as refused:
        admit(lambda: ModelBundle.load(bad), agrawal_bundle)
    assert refused.value.check == "manifest"
    assert "does not match the manifest" in refused.value.reason


def test_gate_refuses_a_model_lightgbm_cannot_load(agrawal_bundle, v2_dir, tmp_path):
    broken = Path(shutil.copytree(v2_dir, tmp_path / "broken"))
    (broken / MODEL_FILE).write_text("tree\nversion=v4\nnot a model at all\n")
    _rewrite_manifest(broken)  # the manifest agrees: only loading can tell
    with pytest.raises(GateRefused) as refused:
        admit(lambda: ModelBundle.load(broken), agrawal_bundle)
    assert refused.value.check == "load"


def test_gate_refuses_other_features(agrawal_bundle, tmp_path):
    other = train_bundle(numeric_frame(500, n_features=4, seed=2), "y", tmp_path / "nums", name="loans")
    with pytest.raises(GateRefused) as refused:
        admit(lambda: other, agrawal_bundle)
    assert refused.value.check == "features"
    assert "lacks" in refused.value.reason and "f00" in refused.value.reason


def test_gate_refuses_a_model_that_fails_the_smoke_prediction(agrawal_bundle, v2_dir):
    class Raising(ModelBundle):
        def predict(self, matrix, num_threads=1):
            raise RuntimeError("segfault avoided")

    loaded = ModelBundle.load(v2_dir)
    raising = Raising(**{f: getattr(loaded, f) for f in loaded.__dataclass_fields__})
    with pytest.raises(GateRefused) as refused:
        admit(lambda: raising, agrawal_bundle)
    assert refused.value.check == "smoke"


# ------------------------------------------------------------------ transitions


def _ref(version: str) -> ModelRef:
    return ModelRef(name="loans", version=version, uri=f"/r/loans/{version}")


def test_deploy_rollback_promote_keep_a_history():
    first = lifecycle.deploy(None, _ref("1"))
    second = lifecycle.deploy(first, _ref("2"))
    assert second.champion.version == "2" and [r.version for r in second.history] == ["1"]
    back = lifecycle.rollback(second)
    assert back.champion.version == "1" and back.history == []
    with pytest.raises(LifecycleError, match="nothing to roll back"):
        lifecycle.rollback(back)
    trial = lifecycle.set_challenger(second, _ref("3"), ChallengerMode.shadow, 0.5)
    assert trial.challenger.version == "3" and trial.challenger_share == 0.0
    promoted = lifecycle.promote(trial)
    assert promoted.champion.version == "3" and promoted.challenger is None
    assert [r.version for r in promoted.history] == ["1", "2"]
    with pytest.raises(LifecycleError, match="between 0 and 1"):
        lifecycle.set_challenger(second, _ref("3"), ChallengerMode.split, 1.5)


def test_apply_update_reuses_loaded_bundles_and_gates_new_ones(agrawal_bundle, v2_dir):
    loads: list[str] = []

    def load(ref: ModelRef) -> ModelBundle:
        loads.append(ref.version)
        return ModelBundle.load(v2_dir)

    v1 = ModelRef(name="loans", version="1", uri="unused")
    update = lifecycle.set_challenger(lifecycle.deploy(None, v1), _ref("2"), ChallengerMode.split, 0.3)
    serving = apply_update(update, Serving(agrawal_bundle), load)
    assert serving.champion is agrawal_bundle and serving.challenger.version == "2"
    assert (serving.mode, serving.share, loads) == (ChallengerMode.split, 0.3, ["2"])


# ------------------------------------------------------------------ routing and the handler


def test_split_sends_each_entity_to_one_model_within_1_percent_of_the_share():
    entities = [f"customer-{i}" for i in range(20_000)]
    first = to_challenger(entities, 0.5)
    again = to_challenger(list(reversed(entities)), 0.5)[::-1]
    assert (first == again).all()
    share = first.mean()
    print(f"50/50 split over 20,000 entities: challenger share {share:.4f}")
    assert abs(share - 0.5) <= 0.01
    assert abs(to_challenger(entities, 0.1).mean() - 0.1) <= 0.01


def _records(n: int, seed: int, entities: int) -> list[Record]:
    frame = agrawal_frame(n, seed=seed, classification_function=2).drop(columns=["approved"])
    events = list(events_from_frame(frame, prefix=f"s{seed}", n_entities=entities))
    return [Record(orjson.dumps(e), e["entity_id"].encode(), offset_=i) for i, e in enumerate(events)]


def test_handler_split_names_the_version_and_keeps_entities_on_one_model(agrawal_bundle, v2_dir):
    v2 = ModelBundle.load(v2_dir)
    handler = ScoreHandler(SETTINGS, agrawal_bundle)
    handler.swap(agrawal_bundle, v2, ChallengerMode.split, 0.5)
    model_of: dict[str, set[str]] = {}
    sink = Sink()
    for seed in (1, 2, 3):  # three batches, the same 300 entities in each
        handler.handle(_records(900, seed, 300), sink.emit)
    predictions = [Prediction.model_validate_json(o.value) for o in sink.on("predictions")]
    assert len(predictions) == 2700
    for p in predictions:
        model_of.setdefault(p.entity_id, set()).add(p.model_version)
    assert all(len(v) == 1 for v in model_of.values())
    versions = Counter(next(iter(v)) for v in model_of.values())
    assert set(versions) == {"1", "2"}
    monitors = [MonitorBatch.model_validate_json(o.value) for o in sink.on("monitor")]
    assert {m.model_version for m in monitors} == {"1", "2"}
    assert sum(len(m.event_ids) for m in monitors) == 2700
    for m in monitors:  # each score is the named version's own
        bundle = agrawal_bundle if m.model_version == "1" else v2
        rows = np.asarray(m.rows, dtype=float)
        np.testing.assert_allclose(m.scores, bundle.predict(rows), rtol=0, atol=1e-12)


def test_shadow_publishes_the_champion_and_monitors_both(agrawal_bundle, v2_dir):
    v2 = ModelBundle.load(v2_dir)
    handler = ScoreHandler(SETTINGS, agrawal_bundle)
    handler.swap(agrawal_bundle, v2, ChallengerMode.shadow)
    sink = Sink()
    records = _records(500, 4, 500)
    handler.handle(records, sink.emit)
    predictions = [Prediction.model_validate_json(o.value) for o in sink.on("predictions")]
    assert len(predictions) == 500 and {p.model_version for p in predictions} == {"1"}
    monitors = [MonitorBatch.model_validate_json(o.value) for o in sink.on("monitor")]
    assert {(m.model_version, m.shadow_model_version) for m in monitors} == {("1", "2")}
    rows = np.asarray([r for m in monitors for r in m.rows], dtype=float)
    shadow = np.asarray([s for m in monitors for s in m.shadow_scores], dtype=float)
    np.testing.assert_allclose(shadow, v2.predict(rows), rtol=0, atol=1e-12)
    champion = np.asarray([s for m in monitors for s in m.scores], dtype=float)
    np.testing.assert_allclose(champion, agrawal_bundle.predict(rows), rtol=0, atol=1e-12)


# ------------------------------------------------------------------ comparison


def test_mcnemar_matches_the_textbook_formulas():
    from scipy import stats

    from scoring.feedback.compare import mcnemar

    champion = np.array([True] * 10 + [False] * 30 + [True] * 50)
    challenger = np.array([False] * 10 + [True] * 30 + [True] * 50)
    statistic, p, detail = mcnemar(champion, challenger)
    assert detail == {"only_champion_right": 10, "only_challenger_right": 30}
    assert statistic == pytest.approx((abs(10 - 30) - 1) ** 2 / 40)
    assert p == pytest.approx(stats.chi2.sf(9.025, 1))
    _, p_small, _ = mcnemar(champion[5:15], challenger[5:15])  # 5 vs 5 discordant: exact binomial
    assert p_small == pytest.approx(stats.binomtest(5, 10, 0.5).pvalue)


def test_comparison_names_a_winner_only_when_significant():
    from scoring.feedback.compare import compare_paired, compare_unpaired

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4000).astype(float)
    good = np.where(y == 1, 0.9, 0.1)
    noisy = np.where(rng.random(4000) < 0.7, good, 1 - good)
    result = compare_paired("binary", y, noisy, good, ("m:1", "m:2"))
    assert result.winner == "challenger" and result.p_value < 1e-10
    tie = compare_paired("binary", y, good, good.copy(), ("m:1", "m:2"))
    assert tie.winner is None and tie.p_value == 1.0
    split = compare_unpaired("binary", (y[:2000], good[:2000]), (y[2000:], noisy[2000:]), ("m:1", "m:2"))
    right_a, right_b = 2000 * split.champion_kpis["accuracy"], 2000 * split.challenger_kpis["accuracy"]
    pooled = (right_a + right_b) / 4000
    z = (right_b / 2000 - right_a / 2000) / np.sqrt(pooled * (1 - pooled) * (2 / 2000))
    assert split.statistic == pytest.approx(z) and split.winner == "champion"
    errors = rng.normal(0, 1, 500)
    regression = compare_paired("regression", errors * 0, errors * 2, errors, ("r:1", "r:2"))
    assert regression.winner == "challenger" and regression.test.startswith("Wilcoxon")


# ------------------------------------------------------------------ the River challenger as a bundle


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_the_exported_river_challenger_scores_as_river_does(task, tmp_path):
    from scoring.feedback.loop import Learner
    from scoring.lifecycle.decisions import bundle_from_linear
    from scoring.model.linear_model import linear_from_river

    frame = agrawal_frame(3000, seed=5, classification_function=2)
    frame.loc[frame.index % 11 == 0, "salary"] = np.nan  # missing values leave the key out in River
    target = "approved"
    if task == "regression":
        frame[target] = frame["salary"].fillna(0) / 1000 + frame["age"]
    live = train_bundle(frame, target, tmp_path / "live", task=task, name="loans", num_trees=5)
    learner = Learner(live.spec, live.reference, task)
    matrix = live.spec.encode_frame(frame.drop(columns=[target]))
    y = frame[target].to_numpy(float)
    for row, label in zip(matrix[:2000], y[:2000], strict=True):
        learner.challenger.learn_one(
            learner.challenger_input(row), bool(label) if task == "binary" else label
        )

    exported = bundle_from_linear(linear_from_river(learner.challenger, live.spec), live, "7", {})
    loaded = ModelBundle.load(exported.save(tmp_path / "challenger"))
    held_out = matrix[2000:]
    ours = loaded.predict(held_out)
    if task == "binary":
        river = [learner.challenger.predict_proba_one(learner.challenger_input(r))[True] for r in held_out]
    else:
        river = [learner.challenger.predict_one(learner.challenger_input(r)) for r in held_out]
    np.testing.assert_allclose(ours, river, rtol=0, atol=1e-9)
    contributions = loaded.booster.predict(held_out, pred_contrib=True)
    raw = contributions.sum(axis=1)
    expected_raw = np.log(ours / (1 - ours)) if task == "binary" else ours
    np.testing.assert_allclose(raw, expected_raw, rtol=0, atol=1e-6)
    assert admit(lambda: loaded, live).metadata.model_kind == "linear"


def test_paired_tally_survives_a_checkpoint_and_decides_like_mcnemar(agrawal_bundle):
    from scoring.feedback.compare import PairedTally, mcnemar
    from scoring.feedback.loop import Learner

    learner = Learner(agrawal_bundle.spec, agrawal_bundle.reference, "binary")
    tally = learner.tallies["loans:1|loans:2"] = PairedTally("loans:1", "loans:2")
    for champion_right, challenger_right in (
        [(True, False)] * 40 + [(False, True)] * 90 + [(True, True)] * 400
    ):
        tally.add(champion_right, challenger_right)
    restored = Learner(agrawal_bundle.spec, agrawal_bundle.reference, "binary")
    restored.restore(json.loads(json.dumps(learner.state())), None)
    again = restored.tallies["loans:1|loans:2"]
    assert (again.pairs, again.only_champion_right, again.only_challenger_right) == (530, 40, 90)
    champion = np.array([True] * 40 + [False] * 90)
    assert again.p_value() == pytest.approx(mcnemar(champion, ~champion)[1])
    assert again.challenger_wins(min_pairs=500, alpha=0.01)
    assert not again.challenger_wins(min_pairs=1000, alpha=0.01)


def test_a_refusal_by_the_loader_keeps_its_check(agrawal_bundle):
    def outside() -> ModelBundle:
        raise GateRefused(Check.source, "loans 9: not in the model registry")

    with pytest.raises(GateRefused) as refused:
        admit(outside, agrawal_bundle)
    assert (refused.value.check, refused.value.reason) == ("source", "loans 9: not in the model registry")
