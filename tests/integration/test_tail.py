"""`streamscore tail` and `produce`/`produce-labels` with a table's own ids, entities and times (issue 32).

One worker with every role on topics of its own; a table of loan applications with an
application id, a customer and a time per row is produced by the CLI, as a user would, with
a few invalid events beside it. Every `tail` line is checked against the records the test
reads from the topic itself.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pandas as pd
import pytest

from schemas import headers as h
from schemas.drift import DriftReport
from schemas.feedback import MetricsSnapshot
from scoring.offline.synthetic import agrawal_frame, invalid_payload
from tests.integration.conftest import topics_for
from tests.integration.kafka_tools import Record, WorkerProcess, names_env, produce, read_topic, wait_scored
from tests.integration.tls import TlsCluster

pytestmark = pytest.mark.integration

ROWS = 2000
WINDOW = 500
INVALID = ("malformed_json", "missing_feature", "wrong_type", "nan", "bad_event_time")
LINE = re.compile(r"^(\S+) p(\d+)@(\d+)  (.*)$")  # time, partition, offset, what the record says


def _table(path: Path) -> pd.DataFrame:
    """Loan applications with their own ids, customers and times (ISO 8601, 100 ms apart, May 2024);
    from row 1,000 on the salaries are doubled: the drift windows of the second half see it."""
    frame = agrawal_frame(ROWS, seed=41, classification_function=2)
    frame.loc[ROWS // 2 :, "salary"] *= 2
    times = pd.date_range("2024-05-01T09:00:00Z", periods=ROWS, freq="100ms")
    frame.insert(0, "application", [f"app-{i:05d}" for i in range(ROWS)])
    frame.insert(1, "customer", [f"c{(i * 7) % 97}" for i in range(ROWS)])
    frame.insert(2, "applied_at", times.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z")
    frame.to_csv(path, index=False)
    return frame


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streams", *args],
        capture_output=True, text=True, timeout=180, check=False, env={**os.environ, **env},
    )  # fmt: skip
    print(f"$ streamscore {' '.join(args)}  ({time.monotonic() - started:.1f} s, exit {done.returncode})")
    print(done.stdout + done.stderr)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done


def _lines(done: subprocess.CompletedProcess) -> list[tuple[int, int, str]]:
    """(partition, offset, text) of each line `tail` printed."""
    out = []
    for line in done.stdout.splitlines():
        match = LINE.match(line)
        assert match, f"not a tail line: {line!r}"
        out.append((int(match.group(2)), int(match.group(3)), match.group(4)))
    return out


@dataclass
class Served:
    env: dict[str, str]
    bootstrap: str
    table: pd.DataFrame
    table_path: Path
    worker: WorkerProcess
    produced: str

    def topic(self, role: str) -> str:
        return self.env[f"STREAMSCORE_TOPIC_{role}"]

    def read(self, role: str, count: int, **kwargs) -> list[Record]:
        return read_topic(self.bootstrap, self.topic(role), count, **kwargs)


@pytest.fixture(scope="module")
def served(bootstrap: str, agrawal_bundle_dir: Path, tmp_path_factory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("tail")
    env = {
        **topics_for(bootstrap, uuid.uuid4().hex[:10], str(folder / "data")),
        "STREAMSCORE_DRIFT_WINDOW_EVENTS": str(WINDOW),
        "STREAMSCORE_METRICS_INTERVAL_S": "1",
    }
    table = _table(folder / "applications.csv")
    worker = WorkerProcess(env, agrawal_bundle_dir, folder / "worker.log")
    try:
        worker.wait_ready()
        produced = _cli(env, "produce", str(folder / "applications.csv"), "--drop", "approved",
                        "--id-column", "application", "--entity-column", "customer",
                        "--time-column", "applied_at").stdout  # fmt: skip
        event = {"event_id": "x", "entity_id": "c-bad", "event_time": 1714554000000,
                 "features": {"salary": 1.0}}  # fmt: skip
        bad = [(b"c-bad", invalid_payload(kind, {**event, "event_id": f"bad-{kind}"}, "salary"))
               for kind in INVALID]  # fmt: skip
        produce(bootstrap, env["STREAMSCORE_TOPIC_FEATURES"], bad)
        wait_scored(worker, ROWS)
        yield Served(env, bootstrap, table, folder / "applications.csv", worker, produced)
    finally:
        worker.kill()


def test_produce_publishes_the_tables_own_ids_entities_and_times(served: Served) -> None:
    records = served.read("FEATURES", ROWS + len(INVALID))
    events = {}
    for record in records:
        body = orjson.loads(record.value) if record.key != b"c-bad" else None
        if body is not None:
            events[body["event_id"]] = (record.key.decode(), body["entity_id"], body["event_time"], body)
    table = served.table
    expected_ms = (pd.to_datetime(table["applied_at"], utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(
        milliseconds=1
    )
    print(served.produced)
    assert "inventing" not in served.produced  # every column was given: nothing made up
    assert (
        served.produced.strip()
        == f"produced {ROWS} events to {served.topic('FEATURES')} at {served.bootstrap}"
    )
    assert sorted(events) == sorted(table["application"])
    for i, row in table.iterrows():
        key, entity, event_time, body = events[row["application"]]
        assert (key, entity, event_time) == (row["customer"], row["customer"], int(expected_ms[i]))
        assert set(body["features"]) == set(table.columns) - {
            "application",
            "customer",
            "applied_at",
            "approved",
        }
    assert min(e[2] for e in events.values()) == 1714554000000  # 2024-05-01T09:00:00Z, not a made-up date


def test_tail_predictions_last_5_shows_the_newest_predictions(served: Served) -> None:
    records = served.read("PREDICTIONS", ROWS)
    by_place = {(r.partition, r.offset): orjson.loads(r.value) for r in records}
    done = _cli(served.env, "tail", "predictions", "--last", "5")

    lines = _lines(done)
    assert len(lines) == 5
    newest = sorted(records, key=lambda r: (r.timestamp, r.partition, r.offset))[-5:]
    assert [(p, o) for p, o, _ in lines] == [(r.partition, r.offset) for r in newest]
    for partition, offset, text in lines:
        p = by_place[(partition, offset)]
        assert text.startswith(f"{p['entity_id']}  {p['event_id']}  loans:1  score {p['score']:.4f} "
                               f"class {int(p['label'])}  latency ")  # fmt: skip
    as_json = [orjson.loads(line) for line in _cli(served.env, "tail", "predictions", "--last", "5",
                                                   "--json").stdout.splitlines()]  # fmt: skip
    assert [j["value"] for j in as_json] == [by_place[(p, o)] for p, o, _ in lines]
    assert all(j["headers"]["ce_type"] == h.PREDICTION_CE_TYPE for j in as_json)


def test_tail_filters_by_entity_and_model(served: Served) -> None:
    customer = served.table["customer"].iloc[3]
    done = _cli(served.env, "tail", "predictions", "--from-beginning", "--entity", customer)
    lines = _lines(done)
    assert len(lines) == int((served.table["customer"] == customer).sum())
    assert {text.split("  ")[0] for _, _, text in lines} == {customer}
    other = _cli(served.env, "tail", "predictions", "--last", "3", "--model", "another-model")
    assert other.stdout == "" and "no records" in other.stderr


def test_tail_features_dlq_last_3_shows_the_stage_and_the_reason(served: Served) -> None:
    letters = served.read("DLQ", len(INVALID))
    by_place = {(r.partition, r.offset): r for r in letters}
    done = _cli(served.env, "tail", "features.dlq", "--last", "3")

    lines = _lines(done)
    assert len(lines) == 3
    for partition, offset, text in lines:
        letter = by_place[(partition, offset)]
        head = {k: v.decode() for k, v in letter.headers.items() if k.startswith(h.DLQ_PREFIX)}
        source = f"{head[h.DLQ_TOPIC]}[{head[h.DLQ_PARTITION]}]@{head[h.DLQ_OFFSET]}"
        reason = f"{head[h.DLQ_CLASS]}: {head[h.DLQ_MESSAGE]}"
        assert text.startswith(f"{head[h.DLQ_STAGE]}  {source}  {reason} | original '")
        assert "bad-" in text.split("| original ", 1)[1]  # the start of the original bytes


def test_tail_drift_from_beginning_shows_every_window_and_its_drifted_features(served: Served) -> None:
    windows = ROWS // WINDOW
    records = served.read("DRIFT", windows, counted=lambda r: b'"drift_report"' in r.value)
    reports = {(r.partition, r.offset): DriftReport.model_validate_json(r.value)
               for r in records if b'"drift_report"' in r.value}  # fmt: skip
    done = _cli(served.env, "tail", "drift", "--from-beginning", "--model", "loans")

    lines = _lines(done)
    shown = [(place, text) for *place, text in lines if tuple(place) in reports]
    assert len(shown) == windows
    others = [text for *place, text in lines if tuple(place) not in reports]
    assert all(
        re.match(r"loans:1  window \d  (estimated accuracy|ALERT drift in )", text) for text in others
    ), others
    for place, text in shown:
        report = reports[tuple(place)]
        assert text.startswith(f"loans:1  window {report.window}  {report.events} events  2024-05-01T")
        named = re.findall(r"(?:drifted: |; )(\w+) \(psi", text)
        assert named == report.drifted_features
    assert "salary" in shown[-1][1], "the doubled salaries of the second half drift"


def _readline(stream, timeout_s: float = 120.0) -> str:
    """The next line of a child's pipe; "" if none came in time (the test then fails, it does not hang)."""
    ready, _, _ = select.select([stream], [], [], timeout_s)
    return stream.readline() if ready else ""


def test_labels_from_the_table_join_and_tail_metrics_follows_until_ctrl_c(served: Served) -> None:
    env = {**os.environ, **served.env}
    tail = subprocess.Popen([sys.executable, "-m", "streams", "tail", "metrics", "--follow"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        following = _readline(tail.stderr)  # the positions are taken: a snapshot from now on is shown
        sent = _cli(served.env, "produce-labels", str(served.table_path), "--id-column", "application",
                    "--entity-column", "customer", "--label-column", "approved")  # fmt: skip
        first = _readline(tail.stdout)
        running = tail.poll() is None
        tail.send_signal(signal.SIGINT)  # Ctrl-C
        code = tail.wait(30)
    finally:
        tail.kill()
    err = following + tail.stderr.read()
    print(following, first, err)
    assert following == f"following {served.topic('METRICS')} from where it ends now; Ctrl-C stops\n"
    assert running, "--follow keeps reading after the first record"
    assert code == 0 and "Traceback" not in err

    # the first snapshot after the labels, as the topic holds it
    partition, offset, text = _lines(subprocess.CompletedProcess([], 0, first, ""))[0]
    shown = served.read("METRICS", 1, counted=lambda r: (r.partition, r.offset) == (partition, offset))[-1]
    snapshot = MetricsSnapshot.model_validate_json(shown.value)
    j = snapshot.labels
    assert 0 < j.matched <= ROWS
    counts = f"waiting {j.pending_events} events / {j.pending_labels} labels, expired 0, unmatched 0"
    assert text.startswith(f"labels matched {j.matched}, {counts} | loans:1 (champion) accuracy ")

    first_line, last_line = sent.stdout.splitlines()
    assert first_line.startswith("inventing label times now + N ms (")
    assert first_line.endswith(" on); --time-column takes the table's own")
    assert last_line == f"produced {ROWS} labels to {served.topic('LABELS')} at {served.bootstrap}"
    keyed = {r.key.decode() for r in served.read("LABELS", ROWS)}
    assert keyed == set(served.table["customer"])  # keyed by entity, as the scale-out contract says

    def joined(record: Record) -> bool:
        return MetricsSnapshot.model_validate_json(record.value).labels.matched == ROWS

    snapshots = served.read("METRICS", 1, counted=joined)
    final = MetricsSnapshot.model_validate_json(snapshots[-1].value)
    print(final.labels)
    assert (final.labels.matched, final.labels.unmatched_labels, final.labels.expired_events) == (ROWS, 0, 0)
    ((_, _, last),) = _lines(_cli(served.env, "tail", "metrics", "--last", "1"))
    row = final.overall(final.champion)
    assert last.startswith(f"labels matched {ROWS}, waiting 0 events / 0 labels, expired 0, unmatched 0 | ")
    assert f"| loans:1 (champion) accuracy {row.cumulative['accuracy']:.3g} over {ROWS}, " in last


def test_a_garbage_record_shows_as_undecodable_and_tail_goes_on(served: Served) -> None:
    prediction = served.read("PREDICTIONS", 1)[0]
    garbage = b"\x1b[31mnot a prediction\xff"
    produce(served.bootstrap, served.topic("PREDICTIONS"), [(b"gx", garbage), (b"gx", prediction.value)])
    produce(served.bootstrap, served.topic("DRIFT"), [(b"gx", b'{"type": "weather_report"}')])
    done = _cli(served.env, "tail", "predictions", "--last", "2")

    (_, _, bad), (_, _, good) = _lines(done)
    assert bad.startswith("undecodable: not JSON") and "\x1b" not in done.stdout and "\\x1b[31m" in bad
    p = orjson.loads(prediction.value)
    assert good.startswith(f"{p['entity_id']}  {p['event_id']}  loans:1  score {p['score']:.4f}")
    drift = _lines(_cli(served.env, "tail", "drift", "--last", "1"))
    assert drift[0][2].startswith("undecodable: type 'weather_report' is not a message of the drift topic")


@pytest.mark.parametrize("mode", ["mtls"])
def test_tail_reads_over_tls_with_the_workers_settings(
    mode: str, tls_cluster: TlsCluster, tmp_path: Path
) -> None:
    env = {**names_env(uuid.uuid4().hex[:10], tmp_path), **tls_cluster.env(mode)}
    client = tls_cluster.client(mode)
    labels = [(b"c1", orjson.dumps({"event_id": f"e{i}", "label": 1.0, "label_time": 1714554000000 + i}))
              for i in range(3)]  # fmt: skip
    produce(client["bootstrap.servers"], env["STREAMSCORE_TOPIC_LABELS"], labels, client=client)
    lines = _lines(_cli(env, "tail", "labels", "--from-beginning"))
    assert [text for _, _, text in lines] == [
        f"c1  e{i}  label 1  at 2024-05-01T09:00:00.00{i}Z" for i in range(3)
    ]
