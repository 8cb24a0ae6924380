"""What a newcomer sees when a command fails: one or two lines on stderr, a non-zero exit, no traceback.

One test per row of issue 17's table. Each runs the real command line as a subprocess
with a clean environment (no STREAMSCORE_* variable of the caller's shell leaks in).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.kafka.embedded.broker import free_port

pytestmark = pytest.mark.integration


def _env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSCORE_")}
    return {**clean, **extra}


def _run(args: list[str], env: dict[str, str], cwd: Path, stdin: str | None = None):
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streams", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=cwd,
        input=stdin,
    )
    print(f"$ streamscore {' '.join(args)}  ({time.monotonic() - started:.1f} s, exit {done.returncode})")
    print(done.stderr, end="")
    return done


def _assert_short_error(done, *starts: str) -> list[str]:
    """Exit 1, no traceback, one or two lines on stderr, the first starting with one of ``starts``."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert 1 <= len(lines) <= 2, lines
    assert any(lines[0].startswith(f"streamscore: error: {s}") for s in starts), lines[0]
    return lines


@pytest.fixture
def dead_bootstrap() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens there


@pytest.mark.parametrize(
    "args",
    [["worker"], ["produce", "--synthetic", "100"], ["status"], ["model", "list"], ["model", "rollback"]],
    ids=["worker", "produce", "status", "model-list", "model-rollback"],
)
def test_no_broker_is_reported_in_seconds_naming_the_address(
    args: list[str], dead_bootstrap: str, agrawal_bundle_dir: Path, tmp_path: Path
) -> None:
    if args == ["worker"]:
        args = ["worker", "--model", str(agrawal_bundle_dir)]
    done = _run(args, _env(STREAMSCORE_KAFKA_BOOTSTRAP=dead_bootstrap), tmp_path)

    first, hint = _assert_short_error(done, f"no Kafka broker answered at {dead_bootstrap} (")
    assert "Connection refused; waited 5 s)" in first
    assert "streamscore broker" in hint and "--bootstrap" in hint


def test_a_missing_table_is_named_by_train_and_score_file(agrawal_bundle_dir: Path, tmp_path: Path) -> None:
    train = _run(["train", "loans.csv", "--target", "approved", "--out", "b"], _env(), tmp_path)
    _assert_short_error(train, "loans.csv: no such file")

    score = _run(
        ["score-file", "loans.csv", "--model", str(agrawal_bundle_dir), "--out", "s.csv"], _env(), tmp_path
    )
    _assert_short_error(score, "loans.csv: no such file")


def test_an_empty_csv_and_a_header_only_csv_are_named(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("salary,approved\n")
    for name, says in (
        ("empty.csv", "empty.csv is empty"),
        ("header.csv", "header.csv has a header but no rows"),
    ):
        done = _run(["train", name, "--target", "approved", "--out", "b"], _env(), tmp_path)
        _assert_short_error(done, says)
    assert not (tmp_path / "b").exists()


def test_produce_and_explain_name_a_missing_event_file(agrawal_bundle_dir: Path, tmp_path: Path) -> None:
    produce = _run(["produce", "events.jsonl"], _env(), tmp_path)
    _assert_short_error(produce, "events.jsonl: no such file")
    explain = _run(["explain", "event.json", "--model", str(agrawal_bundle_dir)], _env(), tmp_path)
    _assert_short_error(explain, "event.json: no such file")


def test_a_model_directory_that_does_not_exist_is_called_missing(tmp_path: Path) -> None:
    done = _run(["worker", "--model", "models/loans"], _env(), tmp_path)

    (line,) = _assert_short_error(done, "models/loans: no such directory;")
    assert "not a model bundle" not in line and "streamscore train" in line

    (tmp_path / "empty-dir").mkdir()
    done = _run(["worker", "--model", "empty-dir"], _env(), tmp_path)
    _assert_short_error(done, "empty-dir: no manifest.json; the directory exists but is not a model bundle")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    done = _run(["train", "loans.csv", "--target", "y", "--out", "b", "--debug"], _env(), tmp_path)
    assert (
        done.returncode == 1
        and "Traceback" in done.stderr
        and "ConfigError: loans.csv: no such file" in done.stderr
    )

    done = _run(["train", "loans.csv", "--target", "y", "--out", "b"], _env(STREAMSCORE_DEBUG="1"), tmp_path)
    assert done.returncode == 1 and "Traceback" in done.stderr


def test_a_busy_web_port_is_named_before_the_worker_starts(
    dead_bootstrap: str, agrawal_bundle_dir: Path, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = _env(STREAMSCORE_KAFKA_BOOTSTRAP=dead_bootstrap)  # the port is checked first
        done = _run(["worker", "--model", str(agrawal_bundle_dir), "--web-port", str(port)], env, tmp_path)

    _, hint = _assert_short_error(done, f"cannot serve the web endpoints on 127.0.0.1:{port}: ")
    assert "--web-port" in hint


def test_a_bad_setting_names_the_variable_and_the_type(agrawal_bundle_dir: Path, tmp_path: Path) -> None:
    done = _run(["worker", "--model", str(agrawal_bundle_dir)], _env(STREAMSCORE_BATCH_SIZE="abc"), tmp_path)

    (line,) = _assert_short_error(done, "STREAMSCORE_BATCH_SIZE='abc' is not valid: expected an integer")
    assert "batch_size" not in line and "pydantic" not in line


def test_a_misspelt_variable_is_an_error_naming_the_right_one(tmp_path: Path) -> None:
    done = _run(["schemas", "export", "out"], _env(STREAMSCORE_BATCHSIZE="500"), tmp_path)

    _assert_short_error(
        done, "unknown environment variable STREAMSCORE_BATCHSIZE; did you mean STREAMSCORE_BATCH_SIZE?"
    )
    assert not (tmp_path / "out").exists()


def test_a_csv_with_a_boolean_column_trains_and_json_booleans_score(tmp_path: Path) -> None:
    rows = [
        f"{i % 7 - 3},{'true' if i % 3 else 'false'},{int((i % 7 > 3) != (i % 3 > 0))}" for i in range(300)
    ]
    (tmp_path / "members.csv").write_text("x,member,y\n" + "\n".join(rows) + "\n")
    train = _run(
        ["train", "members.csv", "--target", "y", "--out", "bundle", "--trees", "10"], _env(), tmp_path
    )
    assert train.returncode == 0, train.stderr
    assert "bundle bundle version 1 written to bundle" in train.stdout  # named after --out

    event = '{"event_id": "e1", "entity_id": "c1", "event_time": 0, "features": {"x": 1.0, "member": true}}'
    explain = _run(["explain", "-", "--model", "bundle", "--json"], _env(), tmp_path, stdin=event)
    assert explain.returncode == 0, explain.stderr
    assert '"value": "true"' in explain.stdout  # the contribution names the value

    score = _run(["score-file", "members.csv", "--model", "bundle", "--out", "scores.csv"], _env(), tmp_path)
    assert score.returncode == 0, score.stderr
    assert "300 rows scored" in score.stdout and "0 rows rejected" in score.stdout
