"""A newcomer's first hour (issue 17): the worker's first log lines, the README's commands, the demo."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integration.kafka_tools import WorkerProcess

pytestmark = pytest.mark.integration

ESCAPE = "\x1b"


def test_a_workers_log_starts_with_what_it_serves_and_where_in_plain_text(
    bootstrap: str, topic_env: dict[str, str], agrawal_bundle_dir: Path, tmp_path: Path, workers
) -> None:
    worker = WorkerProcess(
        {**topic_env, "STREAMSCORE_ROLES": "score,drift"}, agrawal_bundle_dir, tmp_path / "w.log"
    )
    workers.append(worker)
    worker.wait_ready()
    assert worker.terminate() == 0

    text = worker.log_path.read_text()
    first = [re.sub(r"^\[[^]]*\] \[\d+\] \[INFO\] ", "", line).strip() for line in text.splitlines()[:4]]
    print("\n".join(first))
    assert first[0] == "serving 'loans' version 1 (binary, 9 features)"
    assert first[1] == f"broker {bootstrap} (PLAINTEXT); roles drift, score; score path batch, at_least_once"
    assert first[2].startswith(f"topics: {topic_env['STREAMSCORE_TOPIC_FEATURES']} -> ")
    assert first[3] == f"web: http://127.0.0.1:{worker.port}/dashboard (and /health /ready /stats /metrics)"
    assert ESCAPE not in text
    assert "Traceback" not in text


def test_a_quiet_workers_log_file_holds_no_terminal_codes(
    bootstrap: str, topic_env: dict[str, str], agrawal_bundle_dir: Path, tmp_path: Path, workers
) -> None:
    # at -l warn Faust draws a spinner with cursor codes on stdout, a file here: the demo's worker.log
    env = {**topic_env, "STREAMSCORE_ROLES": "score"}
    worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "w.log", "-l", "warn")
    workers.append(worker)
    worker.wait_ready()
    assert worker.terminate() == 0

    text = worker.log_path.read_text()
    print(repr(text[:300]))
    assert ESCAPE not in text and "\b" not in text
