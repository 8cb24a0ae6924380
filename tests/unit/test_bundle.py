"""The model bundle on disk: round trip, manifest checks, refusal to overwrite, metadata."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from scoring.errors import BundleError, ManifestMismatch, ModelMismatch
from scoring.model.bundle import BUNDLE_FILES, MANIFEST_FILE, MODEL_FILE, SPEC_FILE, ModelBundle
from scoring.model.features import FeatureSpec
from scoring.offline.synthetic import agrawal_frame
from tests.unit.test_lifecycle import _rewrite_manifest


@pytest.fixture
def bundle_copy(agrawal_bundle_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the session bundle that a test may damage."""
    return Path(shutil.copytree(agrawal_bundle_dir, tmp_path / "copy"))


@pytest.fixture(scope="module")
def encoded_rows(agrawal_bundle: ModelBundle) -> np.ndarray:
    frame = agrawal_frame(300, seed=99, classification_function=2).drop(columns=["approved"])
    return agrawal_bundle.spec.encode_frame(frame)


def test_save_then_load_gives_identical_predictions(
    agrawal_bundle: ModelBundle, encoded_rows: np.ndarray, tmp_path: Path
) -> None:
    agrawal_bundle.save(tmp_path / "again")

    loaded = ModelBundle.load(tmp_path / "again")

    np.testing.assert_array_equal(loaded.predict(encoded_rows), agrawal_bundle.predict(encoded_rows))
    assert loaded.spec == agrawal_bundle.spec
    assert loaded.metadata == agrawal_bundle.metadata
    assert loaded.reference == agrawal_bundle.reference
    assert loaded.metrics == agrawal_bundle.metrics
    assert loaded.path == tmp_path / "again"


def test_appending_one_byte_to_the_model_is_a_manifest_mismatch_naming_the_file(bundle_copy: Path) -> None:
    with (bundle_copy / MODEL_FILE).open("ab") as model:
        model.write(b"\n")

    with pytest.raises(ManifestMismatch, match=re.escape(MODEL_FILE)):
        ModelBundle.load(bundle_copy)


@pytest.mark.parametrize("name", BUNDLE_FILES)
def test_a_deleted_bundle_file_is_a_manifest_mismatch_naming_it(bundle_copy: Path, name: str) -> None:
    (bundle_copy / name).unlink()

    with pytest.raises(ManifestMismatch, match=re.escape(f"{name} is missing")):
        ModelBundle.load(bundle_copy)


def test_a_directory_without_manifest_is_not_a_bundle(bundle_copy: Path) -> None:
    (bundle_copy / MANIFEST_FILE).unlink()

    with pytest.raises(BundleError, match=re.escape("no manifest.json")) as caught:
        ModelBundle.load(bundle_copy)

    assert not isinstance(caught.value, ManifestMismatch)


def test_a_missing_directory_is_named_as_missing_not_as_a_bad_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError) as caught:
        ModelBundle.load(tmp_path / "no-such-bundle")

    assert str(caught.value).startswith(f"{tmp_path / 'no-such-bundle'}: no such directory;")
    assert "streamscore train" in str(caught.value)
    assert "not a model bundle" not in str(caught.value)


def test_a_file_in_place_of_the_bundle_directory_is_named(tmp_path: Path) -> None:
    (tmp_path / "model.txt").write_text("x")
    with pytest.raises(BundleError, match="is a file; a model bundle is a directory"):
        ModelBundle.load(tmp_path / "model.txt")


def test_an_unreadable_manifest_is_a_bundle_error(bundle_copy: Path) -> None:
    (bundle_copy / MANIFEST_FILE).write_text("{not json")

    with pytest.raises(BundleError, match=re.escape("unreadable manifest.json")):
        ModelBundle.load(bundle_copy)


def test_a_model_whose_features_differ_from_the_spec_is_refused(
    agrawal_bundle: ModelBundle, bundle_copy: Path, tmp_path: Path
) -> None:
    renamed = FeatureSpec(
        features=[f.model_copy(update={"name": f"{f.name}_v2"}) for f in agrawal_bundle.spec.features]
    )
    with pytest.raises(ModelMismatch, match=r"not written: model\.txt takes the inputs"):
        dataclasses.replace(agrawal_bundle, spec=renamed).save(tmp_path / "renamed")
    assert not (tmp_path / "renamed").exists()

    (bundle_copy / SPEC_FILE).write_text(renamed.model_dump_json())
    _rewrite_manifest(bundle_copy)  # assembled by hand: the manifest agrees, the model does not
    with pytest.raises(BundleError, match=r"model\.txt takes the inputs .* the spec lists") as caught:
        ModelBundle.load(bundle_copy)

    assert not isinstance(caught.value, ManifestMismatch)


def test_saving_over_an_existing_bundle_is_refused_and_leaves_it_intact(
    agrawal_bundle: ModelBundle, bundle_copy: Path
) -> None:
    before = {p.name: p.read_bytes() for p in bundle_copy.iterdir()}
    other = dataclasses.replace(
        agrawal_bundle, metadata=agrawal_bundle.metadata.model_copy(update={"version": "2"})
    )

    with pytest.raises(BundleError, match="already holds a bundle"):
        other.save(bundle_copy)

    assert {p.name: p.read_bytes() for p in bundle_copy.iterdir()} == before
    assert ModelBundle.load(bundle_copy).version == agrawal_bundle.version


def test_metadata_records_name_version_task_lightgbm_data_digest_and_creation_time(
    agrawal_bundle_dir: Path,
) -> None:
    metadata = json.loads((agrawal_bundle_dir / "metadata.json").read_text())

    assert metadata["name"] == "loans"
    assert metadata["version"] == "1"
    assert metadata["task"] == "binary"
    assert metadata["target"] == "approved"
    assert metadata["lightgbm_version"] == lgb.__version__
    assert re.fullmatch(r"[0-9a-f]{64}", metadata["data_sha256"])
    created_at = datetime.fromisoformat(metadata["created_at"])
    assert created_at.tzinfo is not None


def test_manifest_lists_the_sha256_of_every_bundle_file(agrawal_bundle_dir: Path) -> None:
    manifest = json.loads((agrawal_bundle_dir / MANIFEST_FILE).read_text())
    written = sorted(p.name for p in agrawal_bundle_dir.iterdir() if p.name != MANIFEST_FILE)

    assert set(BUNDLE_FILES) < set(written)  # and the calibrator of a binary model
    assert manifest["files"] == {
        name: hashlib.sha256((agrawal_bundle_dir / name).read_bytes()).hexdigest() for name in written
    }
