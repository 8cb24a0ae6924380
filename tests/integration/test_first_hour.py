"""A newcomer's first hour (issue 17): the worker's first log lines, the README's commands, the demo."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from streams.kafka.embedded.broker import free_port
from tests.integration.kafka_tools import WorkerProcess, read_topic

pytestmark = pytest.mark.integration

ESCAPE = "\x1b"
ESCAPE_CODES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
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
    assert "Purging" not in (out / "worker.log").read_text()
    assert "serving 'loan-approval' version 1" in (out / "worker.log").read_text().splitlines()[0]


def _readme_commands() -> list[list[str]]:
    """The fenced commands of the README's "Run it yourself" section, split as a shell would."""
    section = (REPO / "README.md").read_text().split("## Run it yourself", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the README's 'Run it yourself' section has no ```sh block"
    return [shlex.split(line, comments=True) for line in block.group(1).splitlines() if line.strip()]


def _env_prefix(args: list[str]) -> tuple[dict[str, str], list[str]]:
    """``VAR=value ... command args`` as a shell reads it: the variables, then the command."""
    env = {}
    while args and re.fullmatch(r"[A-Z_]+=\S*", args[0]):
        name, _, value = args[0].partition("=")
        env[name], args = value, args[1:]
    return env, args


def test_the_readme_commands_run_as_written(
    bootstrap: str, topic_env: dict[str, str], tmp_path: Path
) -> None:
    """The tour: train on the shipped sample, start a worker, produce the sample, see its predictions
    and drift reports with `tail`, send its labels, see the KPIs they give.

    The README's broker is the session's broker here, and the topics are this test's own
    (``topic_env``); every other command runs as written, with the installed ``streamscore``.
    """
    broker, train, worker, produce, curl, predictions, drift, labels, metrics = _readme_commands()
    assert broker == ["streamscore", "broker", "--port", "9092"] and curl[0] == "curl"
    (tmp_path / "examples").symlink_to(REPO / "examples")
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSCORE_")}
    env = {**clean, **topic_env, "STREAMSCORE_WEB_PORT": str(port)}
    streamscore = str(Path(sys.executable).parent / "streamscore")

    def run(args: list[str]) -> subprocess.CompletedProcess:
        started = time.monotonic()
        done = subprocess.run([streamscore, *args[1:]], capture_output=True, text=True, timeout=180,
                              check=False, env=env, cwd=tmp_path)  # fmt: skip
        print(f"$ {shlex.join(args)}  ({time.monotonic() - started:.1f} s)\n{done.stdout}{done.stderr}")
        assert done.returncode == 0, done.stderr
        return done

    trained = run(train)
    auc = float(re.search(r"auc: ([0-9.]+)", trained.stdout).group(1))
    assert 0.80 <= auc <= 0.95
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed below
    started = time.monotonic()
    worker_env, worker = _env_prefix(worker)
    assert worker_env == {"STREAMSCORE_DRIFT_WINDOW_EVENTS": "1000"}
    process = subprocess.Popen(
        [streamscore, *worker[1:]],
        env={**env, **worker_env},
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_until(lambda: _get(port, "/ready").get("ready"), 60)
        print(f"$ {shlex.join(worker)}  (ready after {time.monotonic() - started:.1f} s)")
        produced = run(produce)
        features = topic_env["STREAMSCORE_TOPIC_FEATURES"]
        said, done_line = produced.stdout.splitlines()
        assert said.startswith(
            "inventing event ids evt-0.., entity ids cust-0..cust-999, event times now + N ms"
        )
        assert done_line == f"produced 4000 events to {features} at {bootstrap}"
        _wait_until(lambda: _get(port, "/stats")["scored"] == 4000, 60)
        stats = _get(port, "/stats")
        print(f"$ {shlex.join(curl)}\n{json.dumps(stats)[:200]}")
        assert (stats["consumed"], stats["scored"], stats["dead_letters_total"]) == (4000, 4000, 0)
        records = read_topic(bootstrap, topic_env["STREAMSCORE_TOPIC_PREDICTIONS"], 4000)
        assert {json.loads(r.value)["model_name"] for r in records} == {"loans"}
        assert len({json.loads(r.value)["event_id"] for r in records}) == 4000

        shown = run(predictions).stdout.splitlines()
        prediction = re.compile(r"  cust-\d+  evt-\d+  loans:1  score [01]\.\d{4} class [01]  latency ")
        assert len(shown) == 5 and all(prediction.search(line) for line in shown)
        read_topic(
            bootstrap, topic_env["STREAMSCORE_TOPIC_DRIFT"], 4, counted=lambda r: b"drift_report" in r.value
        )
        windows = re.findall(r"  loans:1  window (\d)  1000 events  ", run(drift).stdout)
        assert windows == ["0", "1", "2", "3"]

        sent = run(labels).stdout.splitlines()
        assert sent[0].startswith("inventing event ids evt-0.., entity ids cust-0..cust-999, label times now")
        assert sent[-1] == f"produced 4000 labels to {topic_env['STREAMSCORE_TOPIC_LABELS']} at {bootstrap}"
        first = _follow_until(metrics, env, tmp_path, streamscore, "labels matched 4000, ")
        assert "| loans:1 (champion) accuracy 0." in first
    finally:
        process.terminate()
        process.wait(30)
        log.close()
    first = (tmp_path / "worker.log").read_text().splitlines()[0]
    assert "serving 'loans' version 1 (binary, 10 features)" in first


def _follow_until(args: list[str], env: dict[str, str], cwd: Path, streamscore: str, wanted: str) -> str:
    """Run a `--follow` command until it prints a line holding ``wanted``, then Ctrl-C it: that line."""
    tail = subprocess.Popen([streamscore, *args[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=cwd)  # fmt: skip
    found, deadline = "", time.monotonic() + 120
    try:
        while not found and time.monotonic() < deadline:
            if select.select([tail.stdout], [], [], 1.0)[0]:
                line = tail.stdout.readline()
                print(f"$ {shlex.join(args)}\n{line}", end="")
                found = line if wanted in line else ""
        tail.send_signal(signal.SIGINT)
        assert tail.wait(30) == 0
    finally:
        tail.kill()
    assert "Traceback" not in tail.stderr.read()
    assert found, f"no line with {wanted!r} in 120 s"
    return found


def _get(port: int, path: str) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return {}


def _wait_until(condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_on_a_terminal_the_demo_keeps_its_dashboard_up_until_ctrl_c(tmp_path: Path) -> None:
    """Run under a pseudo-terminal, as a person would: it waits, the dashboard answers, Ctrl-C ends it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSCORE_")}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the demo, its output on the terminal
        os.chdir(tmp_path)
        os.execve(
            sys.executable,
            [sys.executable, "-m", "streams", "demo", "--events", "5000", "--invalid", "20"],
            env,
        )
    output, ready, deadline = b"", None, time.monotonic() + 300
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the terminal closed: the demo ended
                break
            output += chunk
        text = ESCAPE_CODES.sub("", output.decode(errors="replace"))
        if ready is None and "Ctrl-C stops the worker and the broker" in text:
            port = re.findall(r"127\.0\.0\.1:(\d+)/dashboard", text)[-1]
            time.sleep(2)  # still there a while after the run
            ready = _get(int(port), "/ready").get("ready")
            os.write(fd, b"\x03")  # Ctrl-C, through the terminal
    _, status = os.waitpid(pid, 0)
    text = ESCAPE_CODES.sub("", output.decode(errors="replace"))
    print(text[-600:])
    assert ready is True, "the dashboard's worker answered /ready while the demo waited"
    assert os.waitstatus_to_exitcode(status) == 0
    assert text.rstrip().endswith("stopped the worker and the broker")
