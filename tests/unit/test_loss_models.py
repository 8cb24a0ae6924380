"""Direct loss estimation's models: fitted on the holdout, stored in the bundle, checked at load."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scoring.errors import BundleError, ManifestMismatch
from scoring.estimation import PerformanceEstimator
from scoring.model import loss_models
from scoring.model.bundle import MANIFEST_FILE, ModelBundle
from scoring.offline.training import train_bundle


def regression_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x": rng.standard_normal(n), "colour": rng.choice(["red", "blue"], n)})
    frame["y"] = (
        3 * frame["x"] + (frame["colour"] == "red") * 2 + rng.standard_normal(n) * (1 + frame["x"].abs())
    )
    return frame


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dle") / "reg"
    train_bundle(regression_frame(3_000, seed=1), "y", out, task="regression", num_trees=30, name="reg")
    return out


def test_the_loss_models_round_trip_and_predict_the_same(bundle_dir: Path, tmp_path: Path) -> None:
    bundle = ModelBundle.load(bundle_dir)
    bundle.save(tmp_path / "again")
    again = ModelBundle.load(tmp_path / "again")
    frame = regression_frame(500, seed=2)
    rows = bundle.spec.encode_frame(frame.drop(columns="y"))
    scores = bundle.predict(rows)

    before = bundle.loss_models.expected_losses(rows, scores)
    after = again.loss_models.expected_losses(rows, scores)

    assert again.loss_models.info == bundle.loss_models.info
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert np.all(before[0] >= 0) and np.all(before[1] >= 0)
    assert bundle.loss_models.info.feature_names == ["x", "colour", "model_prediction"]
    assert PerformanceEstimator.from_bundle(again) is not None


def test_the_manifest_covers_the_loss_models_and_summarises_their_check(bundle_dir: Path) -> None:
    manifest = json.loads((bundle_dir / MANIFEST_FILE).read_text())
    info = json.loads((bundle_dir / loss_models.INFO_FILE).read_text())

    assert set(loss_models.FILES) <= set(manifest["files"])
    assert manifest["estimation"]["kind"] == "loss_models"
    assert manifest["estimation"]["fit_rows"] == info["fit_rows"] == 300  # half of the 600-row holdout
    assert manifest["estimation"]["mae_relative_error"] == round(info["mae_relative_error"], 6)


def test_a_bundle_with_only_some_loss_model_files_is_refused(bundle_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(bundle_dir, tmp_path / "copy"))
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    del manifest["files"][loss_models.SQ_FILE]
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))

    with pytest.raises(BundleError, match=re.escape("loss model files")):
        ModelBundle.load(copy)


def test_a_deleted_loss_model_is_a_manifest_mismatch(bundle_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(bundle_dir, tmp_path / "copy"))
    (copy / loss_models.ABS_FILE).unlink()

    with pytest.raises(ManifestMismatch, match=re.escape(f"{loss_models.ABS_FILE} is missing")):
        ModelBundle.load(copy)


def test_a_small_holdout_fits_no_loss_models() -> None:
    bundle = train_bundle(regression_frame(300, seed=3), "y", task="regression", num_trees=5)

    assert bundle.loss_models is None
    assert "carries no loss models" in bundle.estimation_note
    assert PerformanceEstimator.from_bundle(bundle) is None
