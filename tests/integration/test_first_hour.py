"""A newcomer's first hour (issue 17): the worker's first log lines, the README's commands, the demo."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.kafka_tools import WorkerProcess

pytestmark = pytest.mark.integration

ESCAPE = "\x1b"
REPO = Path(__file__).resolve().parents[2]


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


def _kpi_rows(output: str) -> dict[tuple[str, str], list[str]]:
    """The KPI table's rows by (when, model): [labelled, accuracy last 1,000, accuracy all, AUC all]."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 6 and cells[0].startswith("after "):
            rows[(cells[0], cells[1])] = cells[2:]
    return rows


def test_the_demo_in_a_pipe_shows_believable_kpis_that_fall_with_the_shift(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSCORE_")}
    done = subprocess.run(
        [sys.executable, "-m", "streams", "demo", "--events", "10000", "--invalid", "100"],
        capture_output=True, text=True, timeout=400, check=False, env=env, cwd=tmp_path,
    )  # fmt: skip
    print(done.stdout)
    assert done.returncode == 0, done.stderr[-3000:]

    rows = _kpi_rows(done.stdout)
    before = rows[("after 5,000 labels, before the shift", "loan-approval:1")]
    after = rows[("after all 10,000", "loan-approval:1")]
    assert 0.80 <= float(before[3]) <= 0.95, f"holdout-like AUC before the shift: {before[3]}"
    assert float(after[1]) <= float(before[1]) - 0.05, "the shift lowers the rolling accuracy visibly"
    assert "all events accounted for" in done.stdout
    # readable in a pipe: wider than 80 columns, names in full, no Python reprs
    assert max(len(line) for line in done.stdout.splitlines()) > 80
    assert "loan-approv…" not in done.stdout and "{'" not in done.stdout and "b'" not in done.stdout
    # what is where, and how to do it by hand, with a sample that exists
    assert "demo-output/ holds what the run made" in done.stdout
    assert "streamscore train examples/loans.csv --target approved --out models/loans" in done.stdout
    assert (REPO / "examples" / "loans.csv").is_file()
    assert "Ctrl-C" not in done.stdout  # in a pipe it does not wait
    out = tmp_path / "demo-output"
    assert {p.name for p in out.iterdir()} >= {"bundle", "registry", "data", "worker.log", "broker.log"}
    for log in ("worker.log", "broker.log"):
        assert ESCAPE not in (out / log).read_text(), log
    assert "Broken pipe" not in (out / "broker.log").read_text()
    assert "serving 'loan-approval' version 1" in (out / "worker.log").read_text().splitlines()[0]
