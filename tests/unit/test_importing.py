"""A model trained elsewhere, imported as a bundle: exact scores, each refusal, the check at every load."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from schemas.keys import Task
from scoring.errors import ModelMismatch, ModelRefused
from scoring.model.bundle import MODEL_FILE, SPEC_FILE, ModelBundle
from scoring.model.features import FeatureSpec
from scoring.model.model_file import task_of_objective
from scoring.offline.batch_file import score_frame
from scoring.offline.importing import import_model, import_model_file
from streams.cli import main
from tests.own_models import (
    COLOURS,
    lightgbm_scores,
    team_pipeline,
    team_table,
    train_team_booster,
    with_unseen,
)
from tests.unit.test_lifecycle import _rewrite_manifest


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The team's early-stopped booster, its model file, and its reference table as CSV and Parquet."""
    folder = tmp_path_factory.mktemp("team")
    table, labels = team_table(4000, seed=1)
    booster = train_team_booster(table, labels, folder / "model.txt")
    labelled = table.assign(approved=labels)
    labelled.to_csv(folder / "reference.csv", index=False)
    labelled.to_parquet(folder / "reference.parquet", index=False)
    return {"folder": folder, "table": table, "labels": labels, "booster": booster}


@pytest.fixture(scope="module")
def imported(team: dict, tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    out = tmp_path_factory.mktemp("imported") / "own"
    reference = pd.read_csv(team["folder"] / "reference.csv")
    return import_model_file(team["folder"] / "model.txt", reference, out_dir=out, target="approved")


def test_an_imported_model_scores_events_as_lightgbm_does_unseen_categories_included(
    team: dict, imported: ModelBundle
) -> None:
    rows = with_unseen(team_table(3000, seed=2)[0], share=0.05, seed=3)
    scored, rejects = score_frame(imported, rows)

    expected = lightgbm_scores(team["booster"], rows)
    assert rejects.empty and len(scored) == len(rows)
    assert np.abs(scored["score"].to_numpy() - expected).max() <= 1e-12
    colour = next(f for f in imported.spec.features if f.name == "colour")
    assert colour.categories == COLOURS != sorted(COLOURS), "LightGBM's order, not a sorted one"
    origin = imported.metadata.origin
    assert origin is not None and origin.pandas_categorical == ["colour", "city"]
    assert origin.source is not None and origin.source.startswith("model.txt sha256:")
    assert imported.booster.current_iteration() == team["booster"].best_iteration


def test_a_pipelines_lgbm_classifier_is_imported_by_the_python_function(team: dict) -> None:
    pipeline = team_pipeline(team["table"], team["labels"])
    raw = team["table"].assign(row_id=np.arange(len(team["table"])))

    with pytest.raises(ModelRefused, match=r"import its LightGBM step \(pipeline\[-1\]\)"):
        import_model(pipeline, raw)
    bundle = import_model(pipeline[-1], pipeline[:-1].transform(raw))

    rows = with_unseen(team_table(2000, seed=4)[0], share=0.05, seed=5)
    scored, rejects = score_frame(bundle, rows)
    own = pipeline.predict_proba(rows.assign(row_id=0))[:, 1]
    assert rejects.empty and np.abs(scored["score"].to_numpy() - own).max() <= 1e-12


def test_labels_give_metrics_and_a_calibrator_and_without_them_the_estimate_says_why(
    team: dict, imported: ModelBundle
) -> None:
    assert imported.calibration is not None and imported.estimation_note is None
    assert 0.6 < imported.metrics["auc"] <= 1 and imported.metrics["reference_rows"] == 4000

    unlabelled = import_model(team["booster"], team["table"])
    assert unlabelled.calibration is None and set(unlabelled.metrics) == {"reference_rows"}
    assert "imported without labelled rows" in (unlabelled.estimation_note or "")
    assert "--target COLUMN" in (unlabelled.estimation_note or "")


def test_a_model_trained_on_integer_codes_takes_the_codes_or_the_reference_tables_category_order() -> None:
    table, labels = team_table(3000, seed=6)
    codes = table.assign(colour=table["colour"].cat.codes, city=table["city"].cat.codes.replace(-1, np.nan))
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "num_leaves": 7},
        lgb.Dataset(codes, labels, categorical_feature=["colour", "city"]),
        num_boost_round=30,
    )
    assert booster.pandas_categorical in (None, [])
    rows = team_table(1000, seed=7)[0]
    row_codes = rows.assign(colour=rows["colour"].cat.codes, city=rows["city"].cat.codes.replace(-1, np.nan))

    as_codes = import_model(booster, codes)  # events carry the codes themselves
    scored, _ = score_frame(as_codes, row_codes)
    assert np.abs(scored["score"].to_numpy() - booster.predict(row_codes)).max() <= 1e-12
    assert as_codes.metadata.origin is not None and as_codes.metadata.origin.integer_codes == [
        "colour",
        "city",
    ]

    as_names = import_model(booster, table)  # pandas categories: their order is the codes' order
    scored, _ = score_frame(as_names, rows)
    assert np.abs(scored["score"].to_numpy() - booster.predict(row_codes)).max() <= 1e-12

    with pytest.raises(ModelRefused, match="does not say which value had which code"):
        import_model(booster, table.assign(colour=table["colour"].astype(str)))


@pytest.mark.parametrize(
    ("objective", "task", "expected"),
    [
        ("binary sigmoid:1", None, Task.binary),
        ("multiclass num_class:3", None, Task.multiclass),
        ("multiclassova num_class:4 sigmoid:1", "multiclass", Task.multiclass),
        ("regression", None, Task.regression),
        ("huber", None, Task.regression),
        ("xentropy", "binary", Task.binary),
        ("cross_entropy", "regression", Task.regression),
    ],
)
def test_one_place_maps_an_objective_to_a_task(objective: str, task: str | None, expected: Task) -> None:
    assert task_of_objective(objective, task) is expected


@pytest.mark.parametrize(
    ("objective", "task", "says"),
    [
        ("lambdarank", None, "not served: streamscore serves the objectives binary, multiclass,"),
        ("multiclass num_class:3", "binary", "makes a multiclass model, not binary"),
        ("cross_entropy", None, "say which with --task"),
        ("binary sigmoid:1", "regression", "makes a binary model, not regression"),
        (None, "binary", "names no objective"),
    ],
)
def test_objectives_not_served_are_refused_by_name(
    objective: str | None, task: str | None, says: str
) -> None:
    with pytest.raises(ModelRefused, match=says):
        task_of_objective(objective, task)


# ------------------------------------------------------------------ refusals at the command line


def _refused(capsys: pytest.CaptureFixture, tmp_path: Path, model: Path, reference: Path) -> str:
    """``model import``: exit 2, one line on stderr, no bundle directory; returns the line."""
    out = tmp_path / "bundle"
    status = main(["model", "import", str(model), "--reference", str(reference), "--out", str(out)])
    lines = capsys.readouterr().err.strip().splitlines()
    print(lines)
    assert status == 2 and len(lines) == 1 and lines[0].startswith("streamscore: error: ")
    assert not out.exists()
    return lines[0]


def test_refuses_a_file_that_is_not_a_lightgbm_text_model(
    team: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    csv = team["folder"] / "reference.csv"
    assert "is not a LightGBM text model" in _refused(capsys, tmp_path, csv, csv)
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(b"\x80\x04\x95\xff\x00")
    assert "it is binary (a pickle or joblib file?)" in _refused(capsys, tmp_path, pickled, csv)


def test_refuses_a_reference_table_without_a_feature_of_the_model(
    team: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    reference = tmp_path / "no-city.csv"
    pd.read_csv(team["folder"] / "reference.csv").drop(columns=["city"]).to_csv(reference, index=False)
    line = _refused(capsys, tmp_path, team["folder"] / "model.txt", reference)
    assert "the reference table lacks the model's inputs ['city']" in line


def test_refuses_a_category_list_that_does_not_match_the_model_files(
    team: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    reference = tmp_path / "sorted.parquet"
    table = team["table"].copy()
    table["colour"] = table["colour"].cat.reorder_categories(sorted(COLOURS))
    table.to_parquet(reference, index=False)
    line = _refused(capsys, tmp_path, team["folder"] / "model.txt", reference)
    assert "column 'colour': its categories ['amber', 'blue', 'green', 'red'] are not the model's" in line


def test_refuses_strings_for_a_numeric_feature(
    team: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    reference = tmp_path / "strings.csv"
    table = team["table"].assign(income=np.where(team["labels"] == 1, "high", "low"))
    table.to_csv(reference, index=False)
    line = _refused(capsys, tmp_path, team["folder"] / "model.txt", reference)
    assert "column 'income' holds strings ('" in line and "the model takes it as a number" in line


def test_refuses_an_objective_it_does_not_serve_naming_those_it_does(
    team: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ranker = tmp_path / "ranker.txt"
    lgb.train(
        {"objective": "lambdarank", "verbosity": -1},
        lgb.Dataset(team["table"], team["labels"], group=[len(team["labels"])]),
        num_boost_round=5,
    ).save_model(str(ranker))
    line = _refused(capsys, tmp_path, ranker, team["folder"] / "reference.csv")
    assert "objective lambdarank is not served: streamscore serves the objectives binary, multiclass" in line


def _three_class(team: dict, path: Path) -> Path:
    """A 3-class booster on the team's inputs, saved as LightGBM text."""
    classes = (team["labels"] + (team["table"]["member"].to_numpy())).astype(int)
    booster = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbosity": -1},
        lgb.Dataset(team["table"], classes),
        num_boost_round=5,
    )
    booster.save_model(str(path))
    return path


# ------------------------------------------------------------------ the check at every load


def _hand_made(imported: ModelBundle, tmp_path: Path) -> Path:
    """A copy of the imported bundle for a test to change, the manifest sealed again after."""
    assert imported.path is not None
    return Path(shutil.copytree(imported.path, tmp_path / "hand-made"))


def test_a_category_map_altered_after_import_is_refused_at_every_load(
    imported: ModelBundle, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bundle = _hand_made(imported, tmp_path)
    spec = imported.spec.model_dump()
    colour = next(f for f in spec["features"] if f["name"] == "colour")
    colour["categories"] = sorted(colour["categories"])  # what the issue saw: codes by sorted name
    (bundle / SPEC_FILE).write_text(FeatureSpec.model_validate(spec).model_dump_json())
    _rewrite_manifest(bundle)

    with pytest.raises(ModelMismatch, match=r"colour: the spec's categories .* are not model\.txt's"):
        ModelBundle.load(bundle)
    rows = tmp_path / "rows.csv"
    team_table(10, seed=8)[0].to_csv(rows, index=False)
    status = main(["score-file", str(rows), "--model", str(bundle), "--out", str(tmp_path / "s.csv")])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and "pandas_categorical" in line and not (tmp_path / "s.csv").exists()


def test_a_three_class_booster_in_a_binary_bundle_is_refused_at_every_load(
    team: dict, imported: ModelBundle, tmp_path: Path
) -> None:
    bundle = _hand_made(imported, tmp_path)
    _three_class(team, bundle / MODEL_FILE)
    _rewrite_manifest(bundle)

    with pytest.raises(ModelMismatch, match=r"model\.txt is a 3-class model .* the bundle says binary"):
        ModelBundle.load(bundle)


def test_a_regression_objective_in_a_classifiers_bundle_is_refused(
    team: dict, imported: ModelBundle, tmp_path: Path
) -> None:
    bundle = _hand_made(imported, tmp_path)
    booster = lgb.train(
        {"objective": "regression", "verbosity": -1}, lgb.Dataset(team["table"], team["labels"]), 5
    )
    booster.save_model(str(bundle / MODEL_FILE))
    _rewrite_manifest(bundle)

    with pytest.raises(
        ModelMismatch,
        match="objective disagrees with the bundle's task binary: objective regression makes a regression",
    ):
        ModelBundle.load(bundle)
