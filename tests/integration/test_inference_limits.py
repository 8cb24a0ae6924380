"""Issue 29, item 6: the inference endpoint's memory and its caps on a live worker with every role.

Before: one 4 MB binary request of 52,000 rows took ~110 MB; four at once took the worker
from 388 MB to a 1,257 MB peak and 1,013 MB stayed. Now rows are made into events and
scored a slice at a time, at most ``STREAMSCORE_INFER_MAX_IN_FLIGHT`` requests are answered
at once (more get 503 with ``Retry-After`` before their body is read) and a request of more
than ``STREAMSCORE_INFER_MAX_ROWS`` rows gets 413. RSS is measured from outside with psutil.
"""

from __future__ import annotations

import http.client
import threading
import time

import numpy as np
import orjson
import psutil
import pytest

from scoring.offline.synthetic import agrawal_frame
from tests.integration.kafka_tools import WorkerProcess
from tests.integration.side_topics import metric, wait_until

pytestmark = pytest.mark.integration

MAX_BYTES, MAX_ROWS, IN_FLIGHT = 8 << 20, 60_000, 4
MIB = 2**20


def matrix_request(matrix: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """A binary-data request (tritonclient's default): the JSON header, then the matrix's FP64 bytes."""
    data = np.ascontiguousarray(matrix, dtype="<f8").tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "shape": list(matrix.shape),
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(data)},
                }
            ],
            "outputs": [{"name": "score"}],
        }
    )
    headers = {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": "application/octet-stream",
    }
    return header + data, headers


def post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/v2/models/loans/infer", body, headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), orjson.loads(response.read())
    finally:
        conn.close()


def in_flight(worker: WorkerProcess) -> int:
    return int(metric(worker, "streamscore_inference_in_flight"))


def steady_rss(worker: WorkerProcess, process: psutil.Process) -> int:
    """The worker's RSS once two samples a second apart are within 2 MiB (the roles have settled)."""
    samples = [process.memory_info().rss]

    def steady() -> bool:
        time.sleep(1.0)
        samples.append(process.memory_info().rss)
        return abs(samples[-1] - samples[-2]) < 2 * MIB

    wait_until(steady, 60, "a steady RSS", worker)
    return samples[-1]


class Sampler:
    """The worker's RSS every 20 ms in a thread, while it runs."""

    def __init__(self, process: psutil.Process) -> None:
        self.process, self.peak, self._stop = process, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)


def test_four_concurrent_4_mb_requests_keep_the_worker_within_150_mb_and_it_gives_it_back(
    topic_env, agrawal_bundle, agrawal_bundle_dir, tmp_path, workers
):
    env = {
        **topic_env,
        "STREAMSCORE_INFER_MAX_BYTES": str(MAX_BYTES),
        "STREAMSCORE_INFER_MAX_ROWS": str(MAX_ROWS),
        "STREAMSCORE_INFER_MAX_IN_FLIGHT": str(IN_FLIGHT),
    }
    worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready(120)
    process = psutil.Process(worker.process.pid)
    spec = agrawal_bundle.spec
    rows = 4_000_000 // (8 * len(spec.features))  # 55,555 rows of 9 features: a 4 MB body
    frame = agrawal_frame(rows, seed=8, classification_function=2).drop(columns="approved")
    matrix = spec.encode_frame(frame)
    body, headers = matrix_request(matrix)
    idle = steady_rss(worker, process)

    answers: list = [None] * 4

    def send(i: int) -> None:
        answers[i] = post(worker.port, body, headers)

    with Sampler(process) as sampler:
        threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        took = time.monotonic() - started
    try:
        settled = wait_until(lambda: process.memory_info().rss - idle < 50 * MIB, 60, "RSS back", worker)
    finally:
        after = process.memory_info().rss
        print(f"RSS idle {idle / MIB:.0f}, peak {sampler.peak / MIB:.0f}, now {after / MIB:.0f} MiB")
    print(
        f"item 6: 4 x {len(body) / 1e6:.2f} MB ({rows:,} rows x {len(spec.features)} FP64) at once: "
        f"statuses {[a[0] for a in answers]} in {took:.1f} s; RSS idle {idle / MIB:.0f} MiB, "
        f"peak {sampler.peak / MIB:.0f} (+{(sampler.peak - idle) / MIB:.0f}), "
        f"{(after - idle) / MIB:+.0f} MiB {settled:.1f} s later"
    )
    assert [a[0] for a in answers] == [200] * 4
    scores = np.asarray(answers[0][2]["outputs"][0]["data"])
    assert np.array_equal(scores, agrawal_bundle.predict(matrix)), "the model is served exactly"
    assert sampler.peak - idle < 150 * MIB

    # more rows than STREAMSCORE_INFER_MAX_ROWS: refused before any is scored
    wide, wide_headers = matrix_request(np.tile(matrix[:1], (MAX_ROWS + 1, 1)))
    status, _, error = post(worker.port, wide, wide_headers)
    print(f"  {MAX_ROWS + 1:,} rows: {status} {error}")
    assert status == 413 and "STREAMSCORE_INFER_MAX_ROWS" in error["error"]

    # STREAMSCORE_INFER_MAX_IN_FLIGHT requests whose bodies are still coming: the next one gets 503
    held = []
    for _ in range(IN_FLIGHT):
        conn = http.client.HTTPConnection("127.0.0.1", worker.port, timeout=60)
        conn.putrequest("POST", "/v2/models/loans/infer")
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            conn.putheader(name, value)
        conn.endheaders(body[:1000])
        held.append(conn)
    wait_until(lambda: in_flight(worker) == IN_FLIGHT, 30, "the held requests admitted", worker)
    status, response_headers, error = post(worker.port, body, headers)
    print(
        f"  with {IN_FLIGHT} in flight: {status} Retry-After {response_headers.get('Retry-After')}: {error}"
    )
    for conn in held:
        conn.send(body[1000:])
    finished = [conn.getresponse().status for conn in held]
    for conn in held:
        conn.close()
    assert status == 503 and response_headers.get("Retry-After") == "1"
    assert finished == [200] * IN_FLIGHT
    assert post(worker.port, body, headers)[0] == 200, "answered again once they are done"
