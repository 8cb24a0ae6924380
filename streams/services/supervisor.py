"""A ``mode.Service`` whose work is a blocking loop on a thread of its own.

The Faust worker starts and stops it with everything else; the loop (a
confluent-kafka consumer, per-event Python work) stays off the event loop. The loop
checks ``self._stopping``; an exception out of it crashes the service, so the
worker stops rather than running without it.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from mode import Service

log = logging.getLogger(__name__)


class ThreadedService(Service):
    thread_name = "service"

    def __init__(self, join_timeout_s: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self._join_timeout_s = join_timeout_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        raise NotImplementedError

    async def on_start(self) -> None:
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._run_guarded, args=(loop,), name=self.thread_name, daemon=True
        )
        self._thread.start()

    async def on_stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, self._join_timeout_s)

    def _run_guarded(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            self._run()
        except Exception as exc:
            log.exception("%s failed", self.thread_name)
            asyncio.run_coroutine_threadsafe(self.crash(exc), loop)
