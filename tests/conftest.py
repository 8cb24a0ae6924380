"""Fixtures shared by unit and integration tests: a tiny trained bundle; the ``--cpu-hog`` option."""

from __future__ import annotations

from pathlib import Path

import pytest

from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import MULTICLASS_TARGET, agrawal_frame, multiclass_frame
from scoring.offline.training import train_bundle

pytest_plugins = ["tests.cpu_hog"]  # --cpu-hog: one core held at 100% for the session (make test-busy)


@pytest.fixture(scope="session")
def agrawal_bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    """A LightGBM bundle trained on river's Agrawal loans (numeric and categorical inputs)."""
    frame = agrawal_frame(4000, seed=3, classification_function=2)
    return train_bundle(
        frame, "approved", tmp_path_factory.mktemp("bundle") / "loans", name="loans", num_trees=30
    )


@pytest.fixture(scope="session")
def agrawal_bundle_dir(agrawal_bundle: ModelBundle) -> Path:
    assert agrawal_bundle.path is not None
    return agrawal_bundle.path


@pytest.fixture(scope="session")
def v2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second version of the loans model: the same features, other data and trees."""
    frame = agrawal_frame(3000, seed=11, classification_function=2)
    out = tmp_path_factory.mktemp("v2") / "loans-2"
    train_bundle(frame, "approved", out, name="loans", version="2", num_trees=12)
    return out


@pytest.fixture(scope="session")
def queues_bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    """A 3-class LightGBM bundle (string classes billing, fraud, support) from ``multiclass_frame``."""
    frame = multiclass_frame(3000, seed=3)
    out = tmp_path_factory.mktemp("queues") / "queues"
    return train_bundle(frame, MULTICLASS_TARGET, out, task="multiclass", name="queues", num_trees=15)
