"""Multiclass models (issue 28, phase A): trained and imported bundles, their classes, scores and checks.

A bundle names its classes in the model's order; ``predict`` gives one probability per class, equal to
``Booster.predict``; every load checks the class count against the model file; the gate keeps the
classes of the live model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from schemas.keys import Task
from schemas.lifecycle import Check
from scoring.errors import BundleError, GateRefused, ModelMismatch, ModelRefused, TrainingError
from scoring.lifecycle.gate import admit
from scoring.model.bundle import METADATA_FILE, MODEL_FILE, ModelBundle
from scoring.model.scorer import BatchScorer
from scoring.offline.importing import import_model, import_model_file
from scoring.offline.synthetic import MULTICLASS_TARGET, multiclass_frame, queue_names
from scoring.offline.training import train_bundle
from tests.own_models import QUEUE_CODES, team_queue_table, train_team_queues
from tests.unit.test_lifecycle import _rewrite_manifest

TOLERANCE = 1e-12


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return multiclass_frame(600, seed=21).drop(columns=[MULTICLASS_TARGET])


# ------------------------------------------------------------------ train


def test_a_trained_bundle_records_its_classes_sorted_and_predicts_as_its_booster(
    queues_bundle: ModelBundle, rows: pd.DataFrame
) -> None:
    bundle = ModelBundle.load(queues_bundle.path)
    matrix = bundle.spec.encode_frame(rows)

    probabilities = bundle.predict(matrix)

    assert bundle.task is Task.multiclass and bundle.classes == ("billing", "fraud", "support")
    assert probabilities.shape == (len(rows), 3)
    assert np.abs(probabilities - bundle.booster.predict(matrix)).max() <= TOLERANCE
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    origin = bundle.metadata.origin
    assert origin is not None and (origin.objective or "").startswith("multiclass") and origin.num_class == 3
    metrics = bundle.metrics
    assert 0.6 < metrics["accuracy"] < 0.95 and 0.6 < metrics["f1_macro"] < 0.95, metrics
    assert 0 < metrics["log_loss"] < 1.1 and 0.8 < metrics["auc_macro_ovr"] < 1
    reference = bundle.reference
    assert set(reference.probabilities) == {"billing", "fraud", "support"}
    assert reference.predicted is not None and sum(reference.predicted.frequencies.values()) == 600
    assert bundle.estimation_note is None, "one calibrator per class, one-vs-rest on the holdout"
    assert bundle.class_calibration is not None and bundle.class_calibration.classes == list(
        bundle.class_names
    )
    assert bundle.class_calibration.holdout_rows == 600


@pytest.mark.parametrize(
    ("target", "classes"),
    [
        (lambda y: y.map({"billing": 7, "fraud": 3, "support": 5}), (3, 5, 7)),
        (lambda y: y.map({"billing": 7.0, "fraud": 3.0, "support": 5.0}), (3, 5, 7)),  # ints read as floats
        (lambda y: y.map({"billing": "b", "fraud": "a", "support": "c"}), ("a", "b", "c")),
    ],
    ids=["integers", "whole floats", "strings"],
)
def test_class_names_are_the_targets_sorted_values_strings_or_integers(target, classes: tuple) -> None:
    frame = multiclass_frame(400, seed=4)
    frame[MULTICLASS_TARGET] = target(frame[MULTICLASS_TARGET])

    bundle = train_bundle(frame, MULTICLASS_TARGET, task="multiclass", num_trees=3)

    assert bundle.classes == classes
    assert bundle.class_names == tuple(map(str, classes))
    assert bundle.class_index(str(classes[1])) == 1 and bundle.class_index(classes[2]) == 2


def test_a_label_names_an_integer_class_as_a_number_or_as_text() -> None:
    frame = multiclass_frame(300, seed=4)
    frame[MULTICLASS_TARGET] = frame[MULTICLASS_TARGET].map({"billing": 0, "fraud": 1, "support": 2})
    bundle = train_bundle(frame, MULTICLASS_TARGET, task="multiclass", num_trees=2)

    assert [bundle.class_index(v) for v in (2, 2.0, "2", 2.5, "two", 3)] == [2, 2, 2, None, None, None]


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ([True, False], "booleans: a model of two classes is binary"),
        ([0.5, 1.0], "class names are strings or integers, it holds 0.5"),
        (["a", 1], "all strings or all integers"),
        (["only"], "a multiclass model has 2 to 1000 classes, got 1"),
    ],
)
def test_a_target_that_cannot_name_classes_is_refused(values: list, says: str) -> None:
    frame = multiclass_frame(40, seed=4)
    frame[MULTICLASS_TARGET] = pd.Series(values * 20, dtype=object if values == ["a", 1] else None)

    with pytest.raises(TrainingError, match=f"multiclass target 'queue': .*{says}"):
        train_bundle(frame, MULTICLASS_TARGET, task="multiclass", num_trees=2)


def test_multiclassova_trains_when_the_params_ask_for_it(rows: pd.DataFrame) -> None:
    frame = multiclass_frame(800, seed=5)
    bundle = train_bundle(
        frame, MULTICLASS_TARGET, task="multiclass", num_trees=5, params={"objective": "multiclassova"}
    )
    matrix = bundle.spec.encode_frame(rows)

    assert (bundle.metadata.origin.objective or "").startswith("multiclassova")
    assert np.abs(bundle.predict(matrix) - bundle.booster.predict(matrix)).max() <= TOLERANCE


def test_ten_classes_for_the_bench() -> None:
    frame = multiclass_frame(2000, n_classes=10, seed=6)

    assert sorted(frame[MULTICLASS_TARGET].unique()) == sorted(queue_names(10))
    bundle = train_bundle(frame, MULTICLASS_TARGET, task="multiclass", num_trees=3)
    assert len(bundle.classes) == 10


# ------------------------------------------------------------------ every load checks the classes


def _copy(bundle: ModelBundle, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle.path, tmp_path / "copy"))


def test_a_bundle_naming_more_classes_than_its_model_is_refused_at_load(
    queues_bundle: ModelBundle, tmp_path: Path
) -> None:
    copy = _copy(queues_bundle, tmp_path)
    metadata = json.loads((copy / METADATA_FILE).read_text())
    metadata["classes"].append("refunds")
    (copy / METADATA_FILE).write_text(json.dumps(metadata))
    _rewrite_manifest(copy)

    with pytest.raises(ModelMismatch, match=r"model\.txt is a 3-class model .* the bundle names 4 classes"):
        ModelBundle.load(copy)


def test_a_binary_model_in_a_multiclass_bundle_is_refused_at_load(
    queues_bundle: ModelBundle, tmp_path: Path
) -> None:
    frame = multiclass_frame(400, seed=3)
    frame[MULTICLASS_TARGET] = (frame[MULTICLASS_TARGET] == "fraud").astype(int)
    binary = train_bundle(frame, MULTICLASS_TARGET, tmp_path / "binary", spec=queues_bundle.spec, num_trees=3)
    copy = _copy(queues_bundle, tmp_path)
    shutil.copyfile(binary.path / MODEL_FILE, copy / MODEL_FILE)
    _rewrite_manifest(copy)

    with pytest.raises(ModelMismatch, match=r"gives one score per event .* the bundle names 3 classes"):
        ModelBundle.load(copy)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"classes": None}, "a multiclass bundle names its classes"),
        ({"classes": ["a", "a", "b"]}, "class names repeat"),
        ({"classes": ["a", 1, "b"]}, "all strings or all integers"),
        ({"task": "binary"}, "a multiclass bundle names its classes"),
    ],
)
def test_metadata_that_cannot_name_the_classes_is_refused(
    queues_bundle: ModelBundle, tmp_path: Path, change: dict, says: str
) -> None:
    copy = _copy(queues_bundle, tmp_path)
    metadata = json.loads((copy / METADATA_FILE).read_text())
    (copy / METADATA_FILE).write_text(json.dumps({**metadata, **change}))
    _rewrite_manifest(copy)

    with pytest.raises(BundleError, match=says):
        ModelBundle.load(copy)


# ------------------------------------------------------------------ scoring


def test_the_scorer_gives_the_predicted_class_its_probability_and_every_probability(
    queues_bundle: ModelBundle, rows: pd.DataFrame
) -> None:
    matrix = queues_bundle.spec.encode_frame(rows)
    expected = queues_bundle.booster.predict(matrix)

    result = BatchScorer(queues_bundle).score(matrix)

    assert result.failed == {} and result.probabilities is not None and result.predicted is not None
    assert np.abs(result.probabilities - expected).max() <= TOLERANCE
    assert result.predicted.tolist() == expected.argmax(axis=1).tolist()
    assert result.scores.tolist() == expected.max(axis=1).tolist()
    assert result.labels.tolist() == [queues_bundle.classes[k] for k in expected.argmax(axis=1)]


# ------------------------------------------------------------------ import


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("team-queues")
    table, queues = team_queue_table(2000, seed=8)
    return {
        "table": table,
        "queues": queues,
        "softmax": train_team_queues(table, queues, folder / "softmax.txt"),
        "ova": train_team_queues(table, queues, folder / "ova.txt", objective="multiclassova"),
        "folder": folder,
    }


def test_an_imported_multiclassova_model_serves_its_own_probabilities(team: dict, tmp_path: Path) -> None:
    classes = sorted(QUEUE_CODES, key=QUEUE_CODES.get)  # the team's order: support, billing, fraud
    table = team["table"].assign(queue=team["queues"])

    bundle = import_model_file(
        team["folder"] / "ova.txt", table, out_dir=tmp_path / "ova", target="queue", classes=classes
    )

    rows, _ = team_queue_table(500, seed=9)
    served = bundle.predict(bundle.spec.encode_frame(rows.astype({"channel": str})))
    assert bundle.classes == ("support", "billing", "fraud")
    assert bundle.metadata.origin.classes_from.startswith("given")
    assert np.abs(served - team["ova"].predict(rows)).max() <= TOLERANCE
    assert 0.6 < bundle.metrics["accuracy"] < 0.95, "labels mapped by the given order"


def test_import_names_the_classes_from_the_sorted_target_or_the_indices(team: dict) -> None:
    table = team["table"].assign(queue=team["queues"])

    labelled = import_model(team["softmax"], table, target="queue")
    unlabelled = import_model(team["softmax"], team["table"])

    assert labelled.classes == ("billing", "fraud", "support")
    assert labelled.metadata.origin.classes_from == "the sorted values of the target column 'queue'"
    assert unlabelled.classes == (0, 1, 2) and unlabelled.class_index(1.0) == 1


def test_an_lgbm_classifier_brings_its_own_classes(team: dict) -> None:
    classifier = lgb.LGBMClassifier(n_estimators=10, verbose=-1, n_jobs=2).fit(team["table"], team["queues"])

    bundle = import_model(classifier, team["table"])

    assert bundle.classes == tuple(classifier.classes_) == ("billing", "fraud", "support")
    matrix = bundle.spec.encode_frame(team["table"].astype({"channel": str}))
    assert np.abs(bundle.predict(matrix) - classifier.predict_proba(team["table"])).max() <= TOLERANCE


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"classes": ["a", "b"]}, r"cannot name this model's classes: 2 names for a 3-class model"),
        ({"classes": ["a", "a", "b"]}, "class names repeat"),
        ({"target": "two"}, "holds 2 distinct classes .* give the class names in the model's order"),
    ],
)
def test_class_names_that_do_not_fit_the_model_are_refused(team: dict, options: dict, says: str) -> None:
    table = team["table"].assign(two=np.where(team["queues"] == "fraud", "fraud", "other"))

    with pytest.raises(ModelRefused, match=says):
        import_model(team["softmax"], table, **options)


def test_class_names_for_a_binary_model_are_refused(agrawal_bundle: ModelBundle) -> None:
    table = multiclass_frame(50, seed=1)
    with pytest.raises(ModelRefused, match="class names are for a multiclass model; this one is binary"):
        import_model(agrawal_bundle.booster, table, classes=["a", "b"])


# ------------------------------------------------------------------ the gate


def test_the_gate_admits_a_multiclass_version_with_the_same_classes_only(
    queues_bundle: ModelBundle, tmp_path: Path
) -> None:
    frame = multiclass_frame(1500, seed=12)
    same = train_bundle(
        frame, MULTICLASS_TARGET, tmp_path / "v2", task="multiclass", version="2", num_trees=4
    )
    frame[MULTICLASS_TARGET] = frame[MULTICLASS_TARGET].replace({"fraud": "abuse"})
    other = train_bundle(
        frame, MULTICLASS_TARGET, tmp_path / "v3", task="multiclass", version="3", num_trees=4
    )

    assert admit(lambda: ModelBundle.load(same.path), queues_bundle).version == "2"
    with pytest.raises(GateRefused) as refused:
        admit(lambda: ModelBundle.load(other.path), queues_bundle)
    assert refused.value.check is Check.task and "('abuse', 'billing', 'support')" in refused.value.reason
