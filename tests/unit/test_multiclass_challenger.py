"""The River challenger of a multiclass model (issue 28, phase D): a softmax regression behind the
binary challenger's preprocessing, exported as weights in JSON, served exactly."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from scoring.errors import LifecycleError
from scoring.feedback.challenger import class_challenger_step
from scoring.lifecycle.decisions import bundle_from_linear
from scoring.lifecycle.gate import admit
from scoring.model.bundle import BundleError, ModelBundle
from scoring.model.linear_model import SoftmaxLinear, linear_from_river, read_linear
from scoring.offline.synthetic import MULTICLASS_TARGET, multiclass_frame
from streams.services.learn.shard import learner_for
from streams.settings import Settings

SETTINGS = Settings(kafka_bootstrap="x:1")


def _taught(bundle: ModelBundle, rows: np.ndarray, y: np.ndarray):
    learner = learner_for(SETTINGS, bundle)
    for row, k in zip(rows, y, strict=True):
        class_challenger_step(learner.challenger, learner.challenger_input(row), int(k), len(bundle.classes))
    return learner


def test_the_exported_challenger_scores_every_class_as_river_does(queues_bundle: ModelBundle, tmp_path):
    frame = multiclass_frame(2500, seed=11)
    frame.loc[frame.index % 13 == 0, "amount"] = np.nan  # a missing value leaves the key out in River
    matrix = queues_bundle.spec.encode_frame(frame.drop(columns=[MULTICLASS_TARGET]))
    y = np.array([queues_bundle.class_index(v) for v in frame[MULTICLASS_TARGET]])
    learner = _taught(queues_bundle, matrix[:2000], y[:2000])

    model = linear_from_river(learner.challenger, learner.spec, learner.classes)
    assert isinstance(model, SoftmaxLinear) and model.classes == ["billing", "fraud", "support"]
    assert read_linear(model.model_dump_json()) == model, "weights in JSON, read back as they were"
    exported = bundle_from_linear(model, queues_bundle, "7", {})
    loaded = ModelBundle.load(exported.save(tmp_path / "challenger"))
    assert loaded.metadata.model_kind == "linear" and loaded.classes == queues_bundle.classes

    held_out = matrix[2000:]
    ours = loaded.predict(held_out)
    river = [learner.challenger.predict_proba_one(learner.challenger_input(r)) for r in held_out]
    expected = np.array([[p[k] for k in range(3)] for p in river])
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-9)
    assert (ours.argmax(axis=1) == expected.argmax(axis=1)).all()
    accuracy = float((ours.argmax(axis=1) == y[2000:]).mean())
    assert accuracy > 0.6, f"it learned the queues (chance is about 1/3): {accuracy:.3f}"
    # explanations: per class, the terms (and a zero intercept) add up to its raw score, whose softmax
    # is the probabilities
    raw = loaded.booster.predict(held_out, pred_contrib=True).reshape(len(held_out), 3, -1).sum(axis=2)
    softmax = np.exp(raw) / np.exp(raw).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax, ours, rtol=0, atol=1e-9)
    assert admit(lambda: loaded, queues_bundle).classes == queues_bundle.classes


def test_a_challenger_is_exported_only_once_it_learned_every_class_and_only_beside_its_classes(
    queues_bundle: ModelBundle, agrawal_bundle: ModelBundle
) -> None:
    frame = multiclass_frame(200, seed=12)
    matrix = queues_bundle.spec.encode_frame(frame.drop(columns=[MULTICLASS_TARGET]))
    learner = _taught(queues_bundle, matrix, np.array([0, 2] * 100))
    with pytest.raises(ValueError, match=r"has not learned the classes \['fraud'\]"):
        linear_from_river(learner.challenger, learner.spec, learner.classes)
    class_challenger_step(learner.challenger, learner.challenger_input(matrix[0]), 1, 3)
    model = linear_from_river(learner.challenger, learner.spec, learner.classes)
    reordered = model.model_copy(update={"classes": ["fraud", "billing", "support"]})
    with pytest.raises(LifecycleError, match="not the champion's"):
        bundle_from_linear(reordered, queues_bundle, "7", {})
    with pytest.raises(LifecycleError, match="not the champion's"):
        bundle_from_linear(model, agrawal_bundle, "7", {})
    with pytest.raises(ValidationError, match="2 heads for 3 classes"):
        SoftmaxLinear(classes=model.classes, heads=model.heads[:2])


def test_a_bundle_whose_linear_classes_are_not_its_metadatas_is_refused(queues_bundle, tmp_path) -> None:
    frame = multiclass_frame(300, seed=13)
    matrix = queues_bundle.spec.encode_frame(frame.drop(columns=[MULTICLASS_TARGET]))
    learner = _taught(queues_bundle, matrix, np.arange(300) % 3)
    bundle = bundle_from_linear(
        linear_from_river(learner.challenger, learner.spec, learner.classes), queues_bundle, "7", {}
    )
    renamed = bundle.metadata.model_copy(update={"classes": ["a", "b", "c"]})
    out = ModelBundle(None, bundle.booster, bundle.spec, bundle.reference, {}, renamed).save(tmp_path / "b")
    with pytest.raises(BundleError, match="classes differ"):
        ModelBundle.load(out)


def test_a_checkpoint_from_before_the_multiclass_challenger_leaves_a_fresh_one(queues_bundle) -> None:
    """A multiclass learner's checkpoint of phases B and C holds no challenger: it starts afresh."""
    before = learner_for(SETTINGS, queues_bundle)
    learner = learner_for(SETTINGS, queues_bundle)
    learner.restore(before.state(), {"challenger": None, "detectors": {}}, [])
    assert learner.challenger is not None
    frame = multiclass_frame(50, seed=14)
    matrix = queues_bundle.spec.encode_frame(frame.drop(columns=[MULTICLASS_TARGET]))
    guess = class_challenger_step(learner.challenger, learner.challenger_input(matrix[0]), 1, 3)
    assert guess == [1 / 3] * 3, "nothing learned yet: every class as likely"
