"""Run one streamscore worker: load the model, create the topics, start the Faust worker."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading

import faust

from scoring.errors import BundleError
from scoring.model.bundle import ModelBundle
from streams.app import create_service
from streams.kafka.reachability import check_reachable
from streams.kafka.tls import check_tls
from streams.kafka.topics import ensure_topics
from streams.services.loop.supervisor import SupervisedService
from streams.services.parts import WorkerParts
from streams.settings import Settings

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD_BYTES = 256 * 1024  # a chunk of the label join (2048 rows of 20 features) is 320 KiB


class BoundedWorker(faust.Worker):
    """A Faust worker whose shutdown on SIGTERM or SIGINT ends within ``shutdown_timeout_s``.

    Faust's own stop waits on its Kafka consumer, which with an unreachable broker was
    measured to wait for minutes on the project's test machines. The score path settles what it can
    within the time (a batch whose outputs the broker has not acknowledged is not
    committed, so it is consumed again after the restart); past the deadline the
    process exits with status 1 instead of hanging.

    Its log starts with ``banner`` (what it serves, where, and its web address), and is
    plain text wherever it is not a terminal: no spinner, no colour codes in a log file.
    """

    def __init__(self, *args, shutdown_timeout_s: float, banner: list[str] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.shutdown_timeout_s = shutdown_timeout_s
        self.banner = list(banner)
        if not _is_terminal(self.stdout):  # Faust's spinner writes cursor codes even into a file
            self.spinner = None

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        for handler in logger.handlers:  # Faust colours by stdout; a handler's own stream decides here
            stream = getattr(handler, "stream", None)
            if stream is not None and hasattr(handler.formatter, "stream"):
                handler.formatter.stream = stream
        for line in self.banner:
            log.info("%s", line)

    def _schedule_shutdown(self, signum: signal.Signals) -> None:
        if not self._signal_stop_time:
            threading.Thread(target=self._deadline, name="shutdown-deadline", daemon=True).start()
            # the roles' loops settle their batch in flight and take no other from now on, not when
            # Faust's stop reaches their services (seconds later: tens of thousands of events scored
            # after the signal were measured, tests/integration/test_shutdown.py)
            for service in self.services:
                if isinstance(service, SupervisedService):
                    service.stopping.set()
        super()._schedule_shutdown(signum)

    def _deadline(self) -> None:
        threading.Event().wait(self.shutdown_timeout_s)
        log.error("shutdown took over %.0f s (broker unreachable?): exiting now", self.shutdown_timeout_s)
        logging.shutdown()
        os._exit(1)


def _is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def banner(settings: Settings, parts: WorkerParts) -> list[str]:
    """The first lines of a worker's log: what it serves, from where to where, and its web address."""
    serving = parts.handler.serving
    champion = serving.champion
    challenger = serving.challenger
    beside = (
        f"; challenger {challenger.version} ({serving.mode.value})" if challenger and serving.mode else ""
    )
    web = f"http://{settings.web_host}:{settings.web_port}"
    return [
        f"serving {champion.name!r} version {champion.version} ({champion.task.value}, "
        f"{len(champion.spec.features)} features){beside}",
        f"broker {settings.kafka_bootstrap} ({settings.kafka_security_protocol}); "
        f"roles {', '.join(sorted(r.value for r in settings.role_set))}; "
        f"score path {settings.score_path.value}, {settings.processing_guarantee.value}",
        f"topics: {settings.topic_features} -> {settings.topic_predictions}, dead letters "
        f"{settings.topic_dlq}, monitoring {settings.topic_monitor}, labels {settings.topic_labels}, "
        f"drift {settings.topic_drift}, KPIs {settings.topic_metrics}, models {settings.topic_model_updates}",
        f"web: {web}/dashboard (and /health /ready /stats /metrics)",
    ]


def give_back_large_blocks(nbytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Have glibc's malloc map every block of ``nbytes`` or more on its own, so it goes back to the
    system when freed; True if set. Left alone where the operator set the threshold, and off glibc.

    By default glibc raises that threshold to the largest block freed so far (up to 32 MiB), so
    later large blocks come from its heaps, which give memory back only from their top: the
    transient payloads of a learner checkpoint (hundreds of KiB each, tens of MiB together) left
    the worker's RSS at their high-water mark, a little higher after each busy interval.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, nbytes))


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    if settings.model_path is None:
        raise BundleError("no model: pass --model DIR or set STREAMSCORE_MODEL_PATH")
    give_back_large_blocks()
    bundle = ModelBundle.load(settings.model_path)
    check_tls(settings)  # a TLS problem is one line naming the file, before Faust starts its clients
    check_reachable(settings)  # seconds, naming the address, instead of a traceback from ensure_topics
    ensure_topics(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    parts = create_service(settings, bundle)
    worker = BoundedWorker(
        parts.app,
        *parts.services,
        loglevel=loglevel,
        redirect_stdouts=False,
        shutdown_timeout_s=settings.shutdown_timeout_s,
        banner=banner(settings, parts),
    )
    worker.execute_from_commandline()
