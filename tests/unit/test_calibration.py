"""The isotonic calibrator: the PAVA fit, monotone, stored in the bundle and its manifest, old bundles."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scoring.errors import BundleError, ManifestMismatch
from scoring.estimation import PerformanceEstimator
from scoring.model.bundle import CALIBRATION_FILE, MANIFEST_FILE, ModelBundle
from scoring.model.calibration import Calibration, fit_calibration, fit_isotonic
from scoring.offline.synthetic import numeric_frame
from scoring.offline.training import train_bundle


def pava(values: list[float], weights: list[float]) -> list[float]:
    """Pool adjacent violators, written out: merge blocks while a block's mean exceeds the next one's."""
    blocks = [[v, w, 1] for v, w in zip(values, weights, strict=True)]  # mean, weight, members
    i = 0
    while i < len(blocks) - 1:
        if blocks[i][0] > blocks[i + 1][0]:
            (m1, w1, c1), (m2, w2, c2) = blocks[i], blocks[i + 1]
            blocks[i : i + 2] = [[(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2]]
            i = max(i - 1, 0)
        else:
            i += 1
    return [m for m, _, c in blocks for _ in range(c)]


@given(
    st.lists(st.tuples(st.integers(0, 30).map(lambda k: k / 30), st.integers(0, 1)), min_size=1, max_size=60)
)
def test_the_fit_is_the_isotonic_regression_of_the_labels_and_monotone_everywhere(pairs) -> None:
    scores = np.array([s for s, _ in pairs])
    labels = np.array([y for _, y in pairs], dtype=float)
    knots_x, knots_y = fit_isotonic(scores, labels)

    unique = sorted(set(scores.tolist()))
    means = [labels[scores == u].mean() for u in unique]
    counts = [float((scores == u).sum()) for u in unique]
    expected = pava(means, counts)
    at_unique = np.interp(unique, knots_x, knots_y)
    grid = np.interp(np.linspace(-0.5, 1.5, 401), knots_x, knots_y)

    np.testing.assert_allclose(at_unique, expected, rtol=0, atol=1e-12)
    assert np.all(np.diff(knots_x) > 0)
    assert np.all(np.diff(grid) >= 0)
    assert grid.min() >= 0 and grid.max() <= 1


def test_a_distorted_score_is_brought_back_to_the_observed_rates() -> None:
    rng = np.random.default_rng(4)
    truth = rng.beta(2, 2, 20_000)
    labels = (rng.random(truth.size) < truth).astype(float)
    scores = truth**3  # ranks right, probabilities far too low

    calibration = fit_calibration(scores, labels, seed=1)

    print(f"\nECE before {calibration.before.ece:.4f}, after (out of fold) {calibration.after.ece:.4f}")
    assert calibration.before.ece > 0.15
    assert calibration.after.ece < 0.02
    assert sum(b.count for b in calibration.after.bins) == truth.size
    assert np.max(np.abs(calibration.calibrate(scores) - truth)) < 0.1


def test_a_thin_holdout_fits_no_calibrator_and_training_still_succeeds() -> None:
    assert fit_calibration(np.linspace(0, 1, 40), np.arange(40) % 2) is None
    assert fit_calibration(np.linspace(0, 1, 500), np.r_[np.ones(3), np.zeros(497)]) is None

    bundle = train_bundle(numeric_frame(150, n_features=4, seed=1), "y", num_trees=5)

    assert bundle.calibration is None
    assert "carries no calibrator" in (bundle.estimation_note or "")
    assert PerformanceEstimator.from_bundle(bundle) is None


def test_the_calibrator_round_trips_through_the_bundle_exactly(
    agrawal_bundle: ModelBundle, tmp_path: Path
) -> None:
    assert agrawal_bundle.calibration is not None
    agrawal_bundle.save(tmp_path / "again")

    loaded = ModelBundle.load(tmp_path / "again")
    scores = np.random.default_rng(0).random(1000)

    assert loaded.calibration == agrawal_bundle.calibration
    np.testing.assert_array_equal(
        loaded.calibration.calibrate(scores), agrawal_bundle.calibration.calibrate(scores)
    )
    assert loaded.estimation_note is None


def test_the_manifest_covers_the_calibrator_and_summarises_it(agrawal_bundle_dir: Path) -> None:
    manifest = json.loads((agrawal_bundle_dir / MANIFEST_FILE).read_text())
    stored = Calibration.model_validate_json((agrawal_bundle_dir / CALIBRATION_FILE).read_bytes())

    assert CALIBRATION_FILE in manifest["files"]
    assert manifest["estimation"]["kind"] == "calibration"
    assert manifest["estimation"]["holdout_rows"] == stored.holdout_rows == 800
    assert manifest["estimation"]["ece_after"] == round(stored.after.ece, 6)


@pytest.fixture
def bundle_copy(agrawal_bundle_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(agrawal_bundle_dir, tmp_path / "copy"))


def test_an_edited_calibrator_is_a_manifest_mismatch(bundle_copy: Path) -> None:
    path = bundle_copy / CALIBRATION_FILE
    path.write_text(path.read_text().replace('"holdout_rows": 800', '"holdout_rows": 801'))

    with pytest.raises(ManifestMismatch, match=re.escape(CALIBRATION_FILE)):
        ModelBundle.load(bundle_copy)


def test_a_deleted_calibrator_the_manifest_lists_is_a_manifest_mismatch(bundle_copy: Path) -> None:
    (bundle_copy / CALIBRATION_FILE).unlink()

    with pytest.raises(ManifestMismatch, match=re.escape(f"{CALIBRATION_FILE} is missing")):
        ModelBundle.load(bundle_copy)


def test_a_bundle_from_before_calibration_still_loads_and_says_why_it_estimates_nothing(
    bundle_copy: Path,
) -> None:
    manifest = json.loads((bundle_copy / MANIFEST_FILE).read_text())
    del manifest["files"][CALIBRATION_FILE], manifest["estimation"]
    (bundle_copy / MANIFEST_FILE).write_text(json.dumps(manifest))  # as the code before wrote it
    (bundle_copy / CALIBRATION_FILE).unlink()

    bundle = ModelBundle.load(bundle_copy)

    assert bundle.calibration is None
    assert bundle.estimation_note is not None
    assert bundle.estimation_note.startswith("loans:1 carries no calibrator")
    assert PerformanceEstimator.from_bundle(bundle) is None


def test_a_calibrator_that_is_not_monotone_is_refused_with_the_reason(bundle_copy: Path) -> None:
    stored = json.loads((bundle_copy / CALIBRATION_FILE).read_text())
    stored["knots_probability"] = stored["knots_probability"][::-1]
    data = json.dumps(stored).encode()
    (bundle_copy / CALIBRATION_FILE).write_bytes(data)
    manifest = json.loads((bundle_copy / MANIFEST_FILE).read_text())
    manifest["files"][CALIBRATION_FILE] = hashlib.sha256(data).hexdigest()
    (bundle_copy / MANIFEST_FILE).write_text(json.dumps(manifest))

    with pytest.raises(BundleError, match="non-decreasing"):
        ModelBundle.load(bundle_copy)
