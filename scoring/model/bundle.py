"""The model bundle: a directory holding everything needed to serve and monitor one model.

Layout::

    model.txt           the model as text, never a pickle: LightGBM's format, or for
                        model_kind "linear" a linear model's JSON (scoring.model.linear_model)
    feature_spec.json   ordered inputs, kinds, categories, ranges, defaults
    reference.json      training reference statistics for drift tests
    metrics.json        holdout metrics
    metadata.json       name, version, created_at, data sha256, lightgbm version, task, threshold;
                        a multiclass model's class names in its order (``scoring.model.metadata``);
                        ``origin``: made by train or import, the model's objective, class count and
                        which inputs its ``pandas_categorical`` lists encode; ``training``: the
                        LightGBM parameters, early stopping and best iteration of a trained one
    manifest.json       sha256 of every file above and below, checked at load, and
                        under "estimation" a summary of the estimator the bundle carries

Optional, for performance estimation before labels arrive (``scoring.estimation``):

    calibration.json    binary: the isotonic calibrator of the scores, fitted on the holdout,
                        with its reliability curves (``scoring.model.calibration``)
    class_calibration.json  multiclass: one such calibrator per class, one-vs-rest
    loss_models.json    regression: direct loss estimation, two LightGBM models of the error
    loss_abs.txt        (``scoring.model.loss_models``)
    loss_sq.txt

A bundle written before these existed loads with ``calibration``, ``class_calibration`` and
``loss_models`` None; ``estimation_note`` then says in one sentence why nothing is estimated.

Every load (and every save) checks the parts against what the model file says of itself
(``scoring.model.model_file.check_agreement``): a bundle whose task, class count or category
maps disagree with its model is refused with ``ModelMismatch``, whoever assembled it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import lightgbm as lgb
import numpy as np
from pydantic import ValidationError

from schemas.keys import Task
from scoring.errors import BundleError, ManifestMismatch, ModelMismatch
from scoring.model.calibration import Calibration, ClassCalibration
from scoring.model.features import FeatureSpec
from scoring.model.linear_model import LinearModel, SoftmaxLinear, read_linear
from scoring.model.loss_models import FILES as LOSS_FILES
from scoring.model.loss_models import LossModels
from scoring.model.metadata import (
    BUNDLE_FORMAT,
    Metadata,
    Origin,
    TrainingRun,
    class_lookup,
    class_text,
    new_metadata,
)
from scoring.model.model_file import check_agreement, read_model_file
from scoring.model.reference import Reference

MODEL_FILE = "model.txt"
SPEC_FILE = "feature_spec.json"
REFERENCE_FILE = "reference.json"
METRICS_FILE = "metrics.json"
METADATA_FILE = "metadata.json"
MANIFEST_FILE = "manifest.json"
CALIBRATION_FILE = "calibration.json"
CLASS_CALIBRATION_FILE = "class_calibration.json"
BUNDLE_FILES = (MODEL_FILE, SPEC_FILE, REFERENCE_FILE, METRICS_FILE, METADATA_FILE)
OPTIONAL_FILES = (CALIBRATION_FILE, CLASS_CALIBRATION_FILE, *LOSS_FILES)

__all__ = [
    "BUNDLE_FILES", "BUNDLE_FORMAT", "MANIFEST_FILE", "MODEL_FILE", "SPEC_FILE", "Metadata", "ModelBundle",
    "Origin", "Task", "TrainingRun", "check_model", "new_metadata", "read_verified",
]  # fmt: skip


@dataclass(frozen=True)
class ModelBundle:
    """A loaded, verified bundle. The booster is ready to predict."""

    path: Path | None
    booster: lgb.Booster | LinearModel | SoftmaxLinear  # a linear one offers the calls a bundle makes
    spec: FeatureSpec
    reference: Reference
    metrics: dict[str, float]
    metadata: Metadata
    calibration: Calibration | None = None  # binary: maps scores to probabilities (holdout fit)
    loss_models: LossModels | None = None  # regression: expected absolute and squared errors
    class_calibration: ClassCalibration | None = None  # multiclass: one calibrator per class

    @property
    def estimation_note(self) -> str | None:
        """None when the bundle can estimate its performance without labels, else why it cannot."""
        needed, estimator = {
            Task.binary: ("calibrator", self.calibration),
            Task.multiclass: ("calibrator per class", self.class_calibration),
            Task.regression: ("loss models", self.loss_models),
        }[self.task]
        if estimator is not None:
            return None
        origin = self.metadata.origin
        if origin is not None and not origin.labelled:
            return (
                f"{self.name}:{self.version} was imported without labelled rows, so it carries no {needed}: "
                "no performance estimates for it; import it again with --target COLUMN to get them"
            )
        return (
            f"{self.name}:{self.version} carries no {needed} (a bundle from before estimation, a linear "
            "challenger, or a holdout too small to fit one, for a multiclass model fewer than 5 events of "
            "some class): no performance estimates for it; retrain to get them"
        )

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def version(self) -> str:
        return self.metadata.version

    @property
    def task(self) -> Task:
        return self.metadata.task

    @property
    def classes(self) -> tuple[str | int, ...] | None:
        """Multiclass: the class names in the model's order (column k of ``predict`` is ``classes[k]``)."""
        classes = self.metadata.classes
        return None if classes is None else tuple(classes)

    @cached_property
    def class_names(self) -> tuple[str, ...]:
        """The class names as text, as predictions and monitoring records key them; () unless multiclass."""
        return tuple(class_text(c) for c in self.metadata.classes or ())

    @cached_property
    def _class_index(self) -> dict[str, int]:
        return class_lookup(self.metadata.classes or ())

    def class_index(self, label: str | int | float) -> int | None:
        """The index of the class a label names (``"fraud"``, ``2``, ``2.0``), None if none of them.

        >>> from scoring.offline.synthetic import multiclass_frame
        >>> from scoring.offline.training import train_bundle
        >>> bundle = train_bundle(multiclass_frame(300), "queue", task="multiclass", num_trees=2)
        >>> bundle.classes, bundle.class_index("fraud"), bundle.class_index("lost")
        (('billing', 'fraud', 'support'), 1, None)
        """
        return self._class_index.get(class_text(label))

    def save(self, directory: Path) -> Path:
        """Write the bundle and its manifest; refuses to overwrite an existing bundle."""
        directory = Path(directory)
        if (directory / MANIFEST_FILE).exists():
            raise BundleError(f"{directory} already holds a bundle")
        model_text = self.booster.model_to_string()
        if self.metadata.model_kind == "lightgbm":
            check_model(self.metadata, self.spec, model_text, f"{directory}: not written")
        directory.mkdir(parents=True, exist_ok=True)
        contents = {
            MODEL_FILE: model_text.encode(),
            SPEC_FILE: self.spec.model_dump_json(indent=2).encode(),
            REFERENCE_FILE: self.reference.model_dump_json().encode(),
            METRICS_FILE: json.dumps(self.metrics, indent=2, sort_keys=True).encode(),
            METADATA_FILE: self.metadata.model_dump_json(indent=2).encode(),
        }
        manifest: dict[str, object] = {}
        if self.calibration is not None:
            contents[CALIBRATION_FILE] = self.calibration.model_dump_json(indent=2).encode()
            manifest["estimation"] = self.calibration.summary()
        if self.class_calibration is not None:
            contents[CLASS_CALIBRATION_FILE] = self.class_calibration.model_dump_json(indent=2).encode()
            manifest["estimation"] = self.class_calibration.summary()
        if self.loss_models is not None:
            contents.update(self.loss_models.files())
            manifest["estimation"] = self.loss_models.info.summary()
        for name, data in contents.items():
            (directory / name).write_bytes(data)
        manifest["files"] = {name: _sha256(data) for name, data in contents.items()}
        (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return directory

    @classmethod
    def load(cls, directory: Path | str) -> ModelBundle:
        """Read a bundle, check every file against the manifest, and load the booster."""
        directory = Path(directory)
        contents = read_verified(directory)
        try:
            spec = FeatureSpec.model_validate_json(contents[SPEC_FILE])
            reference = Reference.model_validate_json(contents[REFERENCE_FILE])
            metadata = Metadata.model_validate_json(contents[METADATA_FILE])
            metrics = {str(k): float(v) for k, v in json.loads(contents[METRICS_FILE]).items()}
        except (ValidationError, ValueError, TypeError, AttributeError) as exc:
            raise BundleError(f"{directory}: invalid bundle metadata: {exc}") from exc
        try:
            if metadata.model_kind == "linear":
                booster = read_linear(contents[MODEL_FILE])
            else:
                booster = lgb.Booster(model_str=contents[MODEL_FILE].decode())
        except (lgb.basic.LightGBMError, UnicodeDecodeError, ValidationError) as exc:
            raise BundleError(
                f"{directory}: cannot load the {metadata.model_kind} {MODEL_FILE}: {exc}"
            ) from exc
        if metadata.model_kind == "lightgbm":
            check_model(metadata, spec, contents[MODEL_FILE].decode(), str(directory))
        elif booster.feature_name() != spec.names:
            raise BundleError(
                f"{directory}: model features {booster.feature_name()} differ from the spec {spec.names}"
            )
        elif getattr(booster, "classes", None) != (list(_names(metadata)) or None):
            raise BundleError(
                f"{directory}: the linear model's classes differ from the metadata's {list(_names(metadata))}"
            )
        calibration, losses, per_class = _load_estimation(directory, contents, spec)
        if per_class is not None and per_class.classes != [class_text(c) for c in metadata.classes or ()]:
            raise BundleError(f"{directory}: {CLASS_CALIBRATION_FILE} is of other classes than the model")
        return cls(directory, booster, spec, reference, metrics, metadata, calibration, losses, per_class)

    def predict(self, matrix: np.ndarray, num_threads: int = 1) -> np.ndarray:
        """What ``Booster.predict`` gives for encoded rows: (n,) probabilities for binary, (n,) values for
        regression, (n, K) class probabilities for multiclass (column k is ``classes[k]``)."""
        scores = np.asarray(self.booster.predict(matrix, num_threads=num_threads), dtype=np.float64)
        width = len(self.class_names)
        if scores.shape[1:] != ((width,) if width else ()):  # the load's check makes this unreachable
            each = f"{width} probabilities" if width else "one score"
            raise ModelMismatch(f"the model gave scores of shape {scores.shape}, not {each} per row")
        return scores


def check_model(metadata: Metadata, spec: FeatureSpec, model_text: str, where: str) -> None:
    """``ModelMismatch`` (prefixed with ``where``) unless the LightGBM ``model_text`` agrees with the
    bundle's spec, task and recorded origin: the one check every load and save runs."""
    try:
        model = read_model_file(model_text)
    except ValueError as exc:
        raise ModelMismatch(f"{where}: {MODEL_FILE} is not a LightGBM text model: {exc}") from None
    origin = metadata.origin or Origin()
    try:
        check_agreement(
            model,
            spec,
            metadata.task,
            origin.pandas_categorical,
            frozenset(origin.integer_codes),
            classes=len(metadata.classes or ()) or 1,
        )
        if metadata.origin is not None and (origin.objective, origin.num_class) != (
            model.objective,
            model.num_class,
        ):
            raise ModelMismatch(
                f"{MODEL_FILE} has objective {model.objective!r} with {model.num_class} classes, the "
                f"metadata records {origin.objective!r} with {origin.num_class}"
            )
    except ModelMismatch as exc:
        raise ModelMismatch(f"{where}: {exc}") from None


def read_verified(directory: Path) -> dict[str, bytes]:
    """Every bundle file's bytes, after checking them against ``manifest.json``."""
    if not directory.exists():
        raise BundleError(
            f"{directory}: no such directory; write a bundle there with "
            f"`streamscore train DATA --target COLUMN --out {directory}`"
        )
    if not directory.is_dir():
        raise BundleError(f"{directory} is a file; a model bundle is a directory")
    manifest_path = directory / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text())
        expected = manifest["files"]
    except FileNotFoundError as exc:
        raise BundleError(
            f"{directory}: no {MANIFEST_FILE}; the directory exists but is not a model bundle"
        ) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{directory}: unreadable {MANIFEST_FILE}: {exc}") from exc
    missing = [name for name in BUNDLE_FILES if name not in expected]
    if missing:
        raise ManifestMismatch(f"{directory}: manifest does not list {missing}")
    contents: dict[str, bytes] = {}
    for name in (*BUNDLE_FILES, *(f for f in OPTIONAL_FILES if f in expected)):
        try:
            data = (directory / name).read_bytes()
        except FileNotFoundError as exc:
            raise ManifestMismatch(f"{directory}: {name} is missing") from exc
        actual = _sha256(data)
        if actual != expected[name]:
            raise ManifestMismatch(
                f"{directory}: {name} sha256 {actual[:12]}... "
                f"does not match the manifest's {str(expected[name])[:12]}..."
            )
        contents[name] = data
    return contents


def _load_estimation(
    directory: Path, contents: dict[str, bytes], spec: FeatureSpec
) -> tuple[Calibration | None, LossModels | None, ClassCalibration | None]:
    """The optional calibrator(s) and loss models; a bundle without them has None."""
    calibration = losses = per_class = None
    try:
        if CALIBRATION_FILE in contents:
            calibration = Calibration.model_validate_json(contents[CALIBRATION_FILE])
        if CLASS_CALIBRATION_FILE in contents:
            per_class = ClassCalibration.model_validate_json(contents[CLASS_CALIBRATION_FILE])
        present = [f for f in LOSS_FILES if f in contents]
        if present and len(present) < len(LOSS_FILES):
            raise ValueError(f"the manifest lists {present} of the loss model files {LOSS_FILES}")
        if present:
            losses = LossModels.from_files(contents, spec)
    except (ValidationError, ValueError, UnicodeDecodeError, lgb.basic.LightGBMError) as exc:
        raise BundleError(f"{directory}: invalid estimator files: {exc}") from exc
    return calibration, losses, per_class


def _names(metadata: Metadata) -> tuple[str, ...]:
    return tuple(class_text(c) for c in metadata.classes or ())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
