"""``streamscore broker --tls-dir DIR``: a developer's broker behind mutual TLS, usable as printed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from streams.kafka.embedded.broker import free_port

pytestmark = pytest.mark.integration


def test_the_tls_broker_serves_the_settings_it_prints_and_stops_on_sigterm(tmp_path) -> None:
    port = free_port()
    broker = subprocess.Popen(
        [sys.executable, "-m", "streams", "broker", "--tls-dir", str(tmp_path / "tls"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = broker.stdout.readline()
        exports = [broker.stdout.readline().strip() for _ in range(5)]
        print(first + "\n".join(exports))
        assert f"bootstrap: 127.0.0.1:{port}" in first
        env = dict(line.removeprefix("export ").split("=", 1) for line in exports)
        assert env["STREAMSCORE_KAFKA_SECURITY_PROTOCOL"] == "SSL"
        status = subprocess.run(
            [sys.executable, "-m", "streams", "status"],
            capture_output=True, text=True, timeout=60, env={**os.environ, **env},
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        without_cert = {k: v for k, v in env.items() if "CERTFILE" not in k and "KEYFILE" not in k}
        refused = subprocess.run(
            [sys.executable, "-m", "streams", "status"],
            capture_output=True, text=True, timeout=60, env={**os.environ, **without_cert},
        )  # fmt: skip
        print(refused.stderr)
        assert refused.returncode == 1 and "requires a client certificate" in refused.stderr
        broker.send_signal(signal.SIGTERM)
        assert broker.wait(15) == 0
    finally:
        if (
            broker.poll() is None
        ):  # SIGTERM first: the command stops its broker and stunnel (SIGKILL would orphan them)
            broker.terminate()
            try:
                broker.wait(15)
            except subprocess.TimeoutExpired:
                broker.kill()
                broker.wait(10)
