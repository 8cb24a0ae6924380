"""Explanations on the live worker, and file scoring against the stream, on a real broker."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import orjson
import pandas as pd
import pytest

from schemas.messages import Prediction
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import agrawal_frame, events_from_frame
from tests.integration.kafka_tools import WorkerProcess, produce, read_topic

pytestmark = pytest.mark.integration


def _post(worker: WorkerProcess, path: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{worker.port}{path}", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_score_file_gives_the_stream_scores_and_predictions_explain_themselves(
    bootstrap, topic_env, agrawal_bundle: ModelBundle, agrawal_bundle_dir, tmp_path, workers
):
    n = 100_000
    frame = agrawal_frame(n, seed=31, classification_function=2).drop(columns=["approved"])
    env = {**topic_env, "STREAMSCORE_ROLES": "score", "STREAMSCORE_EXPLAIN_SHARE": "0.01"}
    worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready()
    events = list(events_from_frame(frame, prefix="f"))
    produce(
        bootstrap,
        topic_env["STREAMSCORE_TOPIC_FEATURES"],
        [(e["entity_id"].encode(), orjson.dumps(e)) for e in events],
    )
    records = read_topic(bootstrap, topic_env["STREAMSCORE_TOPIC_PREDICTIONS"], n, timeout_s=180)
    stream = {p.event_id: p for p in (Prediction.model_validate_json(r.value) for r in records)}
    assert len(stream) == n

    table = frame.assign(event_id=[e["event_id"] for e in events])
    table.to_csv(tmp_path / "applications.csv", index=False)
    out = tmp_path / "scores.csv"
    cli = [sys.executable, "-m", "streams", "score-file", str(tmp_path / "applications.csv"),
           "--model", str(agrawal_bundle_dir), "--out", str(out), "--id-column", "event_id"]  # fmt: skip
    done = subprocess.run(cli, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    scored = pd.read_csv(out, float_precision="round_trip")
    assert len(scored) == n and len(pd.read_csv(tmp_path / "scores.rejects.csv")) == 0
    worst = max(abs(s - stream[e].score) for e, s in zip(scored["event_id"], scored["score"], strict=True))
    print(f"score-file vs stream on {n:,} rows: max |difference| = {worst:.3g}")
    assert worst <= 1e-12

    explained = [p for p in stream.values() if p.explanation is not None]
    print(f"{len(explained)} of {n:,} predictions carry an explanation (share 0.01)")
    assert 800 < len(explained) < 1200
    for p in explained:
        e = p.explanation
        raw = np.log(p.score / (1 - p.score)) if 0 < p.score < 1 else e.raw_score
        assert abs(e.bias + sum(c.contribution for c in e.top) + e.rest - e.raw_score) <= 1e-6
        assert abs(e.raw_score - raw) <= 1e-6

    status, body = _post(worker, "/explain", orjson.dumps(events[0]))
    assert status == 200 and body["event_id"] == events[0]["event_id"]
    assert body["score"] == pytest.approx(stream[events[0]["event_id"]].score, abs=1e-12)
    contributions = body["explanation"]["top"]
    assert len(contributions) == len(agrawal_bundle.spec.names) and body["explanation"]["rest"] == 0.0
    total = body["explanation"]["bias"] + sum(c["contribution"] for c in contributions)
    assert total == pytest.approx(body["explanation"]["raw_score"], abs=1e-6)
    status, body = _post(worker, "/explain", b'{"event_id": "x", "features": {}}')
    assert status == 400 and body["error"]
