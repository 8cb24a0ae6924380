"""Run one streamscore worker: load the model, create the topics, start the Faust worker."""

from __future__ import annotations

import logging

import faust

from scoring.bundle import ModelBundle
from scoring.errors import BundleError
from streams.app import create_service
from streams.settings import Settings
from streams.topics import ensure_topics

log = logging.getLogger(__name__)


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    if settings.model_path is None:
        raise BundleError("no model: pass --model DIR or set STREAMSCORE_MODEL_PATH")
    bundle = ModelBundle.load(settings.model_path)
    ensure_topics(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    parts = create_service(settings, bundle)
    log.info(
        "serving %s version %s on %s via the %s path",
        bundle.name,
        bundle.version,
        settings.topic_features,
        settings.score_path.value,
    )
    worker = faust.Worker(parts.app, *parts.services, loglevel=loglevel, redirect_stdouts=False)
    worker.execute_from_commandline()
