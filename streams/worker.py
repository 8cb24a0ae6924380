"""Run one streamscore worker: load the model, create the topics, start the Faust worker."""

from __future__ import annotations

import logging
import os
import signal
import threading

import faust

from scoring.bundle import ModelBundle
from scoring.errors import BundleError
from streams.app import create_service
from streams.kafka.reachability import check_reachable
from streams.kafka.topics import ensure_topics
from streams.settings import Settings

log = logging.getLogger(__name__)


class BoundedWorker(faust.Worker):
    """A Faust worker whose shutdown on SIGTERM or SIGINT ends within ``shutdown_timeout_s``.

    Faust's own stop waits on its Kafka consumer, which with an unreachable broker was
    measured to wait for minutes (FIELD-NOTES). The score path settles what it can
    within the time (a batch whose outputs the broker has not acknowledged is not
    committed, so it is consumed again after the restart); past the deadline the
    process exits with status 1 instead of hanging.
    """

    def __init__(self, *args, shutdown_timeout_s: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.shutdown_timeout_s = shutdown_timeout_s

    def _schedule_shutdown(self, signum: signal.Signals) -> None:
        if not self._signal_stop_time:
            threading.Thread(target=self._deadline, name="shutdown-deadline", daemon=True).start()
        super()._schedule_shutdown(signum)

    def _deadline(self) -> None:
        threading.Event().wait(self.shutdown_timeout_s)
        log.error("shutdown took over %.0f s (broker unreachable?): exiting now", self.shutdown_timeout_s)
        logging.shutdown()
        os._exit(1)


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    if settings.model_path is None:
        raise BundleError("no model: pass --model DIR or set STREAMSCORE_MODEL_PATH")
    bundle = ModelBundle.load(settings.model_path)
    check_reachable(settings)  # seconds, naming the address, instead of a traceback from ensure_topics
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
    worker = BoundedWorker(
        parts.app,
        *parts.services,
        loglevel=loglevel,
        redirect_stdouts=False,
        shutdown_timeout_s=settings.shutdown_timeout_s,
    )
    worker.execute_from_commandline()
