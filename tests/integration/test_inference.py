"""The Open Inference Protocol on a real worker, driven by tritonclient (the protocol's reference client).

One worker (score role, a bearer token, a small body limit) answers the metadata, ready,
infer and error tests; the comparison with the stream and the not-ready state get workers
of their own.
"""

from __future__ import annotations

import urllib.error
import uuid
from collections import Counter

import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from scoring.lifecycle.routing import to_challenger
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import agrawal_frame, events_from_frame
from tests.integration.kafka_tools import WorkerProcess, produce, read_topic
from tests.integration.test_lifecycle import _cli, _wait

pytestmark = pytest.mark.integration

TOKEN = "oip-test-token"
MAX_BYTES = 200_000


class Bearer(triton.InferenceServerClientPlugin):
    """Adds the bearer token to every request (tritonclient's plugin hook)."""

    def __call__(self, request) -> None:
        request.headers["Authorization"] = f"Bearer {TOKEN}"


def client(worker: WorkerProcess, token: bool = True) -> triton.InferenceServerClient:
    c = triton.InferenceServerClient(url=f"127.0.0.1:{worker.port}", network_timeout=30)
    if token:
        c.register_plugin(Bearer())
    return c


def events(n: int, prefix: str, seed: int = 41) -> list[dict]:
    frame = agrawal_frame(n, seed=seed, classification_function=2).drop(columns=["approved"])
    return list(events_from_frame(frame, prefix=prefix))


def feature_inputs(metadata: dict, rows: list[dict], binary: bool = False) -> list[triton.InferInput]:
    """One tensor per feature, named and typed as the metadata lists them, plus each row's entity."""
    inputs = []
    for spec in metadata["inputs"]:
        dtype = np.float64 if spec["datatype"] == "FP64" else np.object_
        array = np.asarray([r["features"][spec["name"]] for r in rows], dtype=dtype)
        inputs.append(triton.InferInput(spec["name"], [len(rows)], spec["datatype"]))
        inputs[-1].set_data_from_numpy(array, binary_data=binary)
    for name in ("entity_id", "event_id"):
        tensor = triton.InferInput(name, [len(rows)], "BYTES")
        inputs.append(
            tensor.set_data_from_numpy(np.asarray([r[name] for r in rows], dtype=np.object_), binary)
        )
    return inputs


def matrix_input(bundle: ModelBundle, rows: list[dict]) -> triton.InferInput:
    """One FP64 [batch, n_features] tensor, categories as their codes (LightGBM's own matrix)."""
    import pandas as pd

    frame = pd.DataFrame([r["features"] for r in rows])
    matrix = bundle.spec.encode_frame(frame)
    tensor = triton.InferInput("features", list(matrix.shape), "FP64")
    return tensor.set_data_from_numpy(matrix, binary_data=False)


def answer(result: triton.InferResult) -> tuple[np.ndarray, list[str]]:
    versions = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("model_version")]
    return result.as_numpy("score"), versions


@pytest.fixture(scope="module")
def served(bootstrap, agrawal_bundle_dir, v2_dir, tmp_path_factory) -> dict:
    """A score worker serving loans v1 (v2 registered, not serving), its /v2 behind a token."""
    run = uuid.uuid4().hex[:10]
    tmp = tmp_path_factory.mktemp("oip")
    env = {
        "STREAMSCORE_KAFKA_BOOTSTRAP": bootstrap,
        "STREAMSCORE_APP_ID": f"app-{run}",
        "STREAMSCORE_GROUP_ID": f"scorer-{run}",
        **{f"STREAMSCORE_TOPIC_{t.upper()}": f"{t}-{run}" for t in ("features", "predictions", "monitor")},
        "STREAMSCORE_TOPIC_MODEL_UPDATES": f"model-updates-{run}",
        "STREAMSCORE_TOPIC_DLQ": f"features.dlq-{run}",
        "STREAMSCORE_DATA_DIR": str(tmp / "data"),
        "STREAMSCORE_REGISTRY": str(tmp / "registry"),
        "STREAMSCORE_ROLES": "score",
        "STREAMSCORE_INFER_TOKEN": TOKEN,
        "STREAMSCORE_INFER_MAX_BYTES": str(MAX_BYTES),
    }
    assert _cli(env, "model", "register", str(v2_dir)).returncode == 0
    worker = WorkerProcess(env, agrawal_bundle_dir, tmp / "worker.log")
    try:
        worker.wait_ready()
        yield {"worker": worker, "env": env}
    finally:
        worker.kill()


def test_health_metadata_and_ready_through_the_protocol_client(served, agrawal_bundle) -> None:
    c = client(served["worker"])
    assert c.is_server_live() and c.is_server_ready()
    assert c.get_server_metadata()["name"] == "streamscore"
    assert c.is_model_ready("loans") and c.is_model_ready("loans", "1")
    assert not c.is_model_ready("loans", "2"), "registered but not serving"
    assert not c.is_model_ready("mortgages")

    metadata = c.get_model_metadata("loans")
    print(orjson.dumps({k: metadata[k] for k in ("name", "versions", "outputs")}).decode())
    assert metadata["name"] == "loans" and metadata["versions"] == ["1"]
    spec = agrawal_bundle.spec
    assert [i["name"] for i in metadata["inputs"]] == spec.names
    kinds = {f.name: "FP64" if f.kind.value == "numeric" else "BYTES" for f in spec.features}
    assert {i["name"]: i["datatype"] for i in metadata["inputs"]} == kinds
    assert {"BYTES", "FP64"} == set(kinds.values()), "the model has numeric and categorical inputs"
    assert [(o["name"], o["datatype"]) for o in metadata["outputs"]] == [
        ("score", "FP64"),
        ("label", "BOOL"),
        ("model_version", "BYTES"),
    ]
    assert metadata["parameters"]["optional_inputs"]["features"]["shape"] == [-1, len(spec.names)]
    assert c.get_model_metadata("loans", "1")["inputs"] == metadata["inputs"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_single_and_batch_infer_equal_the_models_own_scores(served, agrawal_bundle, binary) -> None:
    c = client(served["worker"])
    metadata = c.get_model_metadata("loans")
    rows = events(200, f"batch-{binary}")
    frame = agrawal_frame(200, seed=41, classification_function=2).drop(columns=["approved"])
    expected = agrawal_bundle.predict(agrawal_bundle.spec.encode_frame(frame))

    single = c.infer("loans", feature_inputs(metadata, rows[:1], binary), request_id="one")
    scores, versions = answer(single)
    assert single.get_response()["id"] == "one" and versions == ["1"]
    assert abs(scores[0] - expected[0]) <= 1e-12

    batch = c.infer("loans", feature_inputs(metadata, rows, binary))
    scores, versions = answer(batch)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(batch.as_numpy("label"), expected >= agrawal_bundle.metadata.threshold)
    assert set(versions) == {"1"} and batch.get_response()["model_version"] == "1"

    by_matrix, _ = answer(c.infer("loans", [matrix_input(agrawal_bundle, rows)], model_version="1"))
    np.testing.assert_allclose(by_matrix, expected, rtol=0, atol=1e-12)
    print(
        f"{len(rows)} rows ({'binary' if binary else 'JSON'}): max |api - offline| = "
        f"{np.abs(scores - expected).max():.1e}"
    )


def _refusal(call) -> tuple[int, str]:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return int(caught.value.status()), caught.value.message()


def test_every_bad_request_gets_the_protocols_status_and_names_the_input(served, agrawal_bundle) -> None:
    c = client(served["worker"])
    metadata = c.get_model_metadata("loans")
    rows = events(3, "bad")
    good = feature_inputs(metadata, rows)

    def replaced(name: str, tensor: triton.InferInput) -> list[triton.InferInput]:
        return [tensor if i.name() == name else i for i in good]

    as_fp32 = triton.InferInput("salary", [3], "FP32").set_data_from_numpy(
        np.ones(3, dtype=np.float32), binary_data=False
    )
    wide = triton.InferInput("salary", [1, 3], "FP64").set_data_from_numpy(np.ones((1, 3)), binary_data=False)
    stray = triton.InferInput("salry", [3], "FP64").set_data_from_numpy(np.ones(3), binary_data=False)
    # NaN in binary FP64 is a missing value, as null is in JSON and in an event
    null = triton.InferInput("salary", [3], "FP64").set_data_from_numpy(np.array([1.0, np.nan, 2.0]))
    cases = {
        "bad datatype": (lambda: c.infer("loans", replaced("salary", as_fp32)), 400, "'salary' must be FP64"),
        "wrong shape": (lambda: c.infer("loans", replaced("salary", wide)), 400, "'salary' must have shape"),
        "unknown input": (lambda: c.infer("loans", [*good, stray]), 400, "unknown input 'salry'"),
        "missing input": (
            lambda: c.infer("loans", [i for i in good if i.name() != "age"]),
            400,
            "missing input 'age'",
        ),
        "invalid value": (lambda: c.infer("loans", replaced("salary", null)), 400, "row 1: required feature"),
        "unknown output": (
            lambda: c.infer("loans", good, outputs=[triton.InferRequestedOutput("odds", binary_data=False)]),
            400,
            "unknown output 'odds'",
        ),
        "unknown model": (lambda: c.infer("mortgages", good), 404, "'mortgages' is not served"),
        "unknown version": (lambda: c.infer("loans", good, model_version="9"), 404, "no version '9'"),
        "version not serving": (lambda: c.get_model_metadata("loans", "2"), 404, "no version '2'"),
        "no token": (lambda: client(served["worker"], token=False).infer("loans", good), 401, "bearer token"),
        "too large": (
            lambda: c.infer("loans", feature_inputs(metadata, events(4000, "big"))),
            413,
            f"({MAX_BYTES} bytes)",
        ),
    }
    before = _metrics(served["worker"])
    for what, (call, status, words) in cases.items():
        got = _refusal(call)
        print(f"{what}: {got[0]} {got[1]}")
        assert got[0] == status and words in got[1], what
    # nothing was lost: the worker still answers, and /metrics counted each refusal by its reason
    assert c.infer("loans", good).as_numpy("score").shape == (3,)
    after = _metrics(served["worker"])
    grew = {k: after[k] - before[k] for k in after if after[k] != before[k] and "_bucket" not in k}
    print(f"/metrics grew by {grew}")
    errors = 'streamscore_inference_errors_total{reason="%s"}'
    assert {
        r: grew.get(errors % r, 0) for r in ("bad_request", "not_found", "too_large", "unauthorized")
    } == {
        "bad_request": 6,
        "not_found": 3,
        "too_large": 1,
        "unauthorized": 1,
    }
    assert grew['streamscore_inference_requests_total{endpoint="infer"}'] == 11
    assert grew['streamscore_inference_request_duration_seconds_count{endpoint="infer"}'] == 11


def _metrics(worker: WorkerProcess) -> dict[str, float]:
    """Every sample of the inference series on /metrics."""
    lines = worker.get_text("/metrics").splitlines()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("streamscore_inference_")
    }


def _stream_and_api(bootstrap, env, worker, rows: list[dict], prefix: str) -> tuple[dict, dict, list]:
    """The stream's prediction and the endpoint's answer for each event id; and the API's own records."""
    produce(
        bootstrap,
        env["STREAMSCORE_TOPIC_FEATURES"],
        [(r["entity_id"].encode(), orjson.dumps(r)) for r in rows],
    )
    c = client(worker, token=False)
    metadata = c.get_model_metadata("loans")
    api = {}
    for start in range(0, len(rows), 100):
        part = rows[start : start + 100]
        scores, versions = answer(c.infer("loans", feature_inputs(metadata, part, binary=True)))
        api.update({r["event_id"]: (s, v) for r, s, v in zip(part, scores.tolist(), versions, strict=True)})
    wanted = {r["event_id"] for r in rows}
    records = read_topic(
        bootstrap,
        env["STREAMSCORE_TOPIC_PREDICTIONS"],
        2 * len(rows),
        counted=lambda rec: orjson.loads(rec.value)["event_id"] in wanted,
    )
    stream, from_api = {}, []
    for record in records:
        body = orjson.loads(record.value)
        if body["event_id"] not in wanted:
            continue
        if record.headers.get("streamscore.origin") == b"api":
            from_api.append(body)
        else:
            stream[body["event_id"]] = (body["score"], body["model_version"])
    return stream, api, from_api


def test_the_same_1000_events_get_the_same_scores_and_versions_from_the_stream_and_the_endpoint(
    bootstrap, topic_env, agrawal_bundle_dir, v2_dir, tmp_path, workers
) -> None:
    env = {
        **topic_env,
        "STREAMSCORE_REGISTRY": str(tmp_path / "registry"),
        "STREAMSCORE_ROLES": "score",
        "STREAMSCORE_INFER_PREDICTIONS": "true",
    }
    assert _cli(env, "model", "register", str(agrawal_bundle_dir)).returncode == 0
    assert _cli(env, "model", "register", str(v2_dir)).returncode == 0
    worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready()

    for phase in ("champion", "split"):
        if phase == "split":
            assert _cli(env, "model", "challenger", "2", "--share", "0.5").returncode == 0
            _wait(lambda: "challenger" in worker.get("/stats"), what="the 50/50 split")
        rows = events(1000, phase, seed=43 if phase == "split" else 42)
        stream, api, from_api = _stream_and_api(bootstrap, env, worker, rows, phase)
        assert len(stream) == len(api) == len(from_api) == 1000
        ids = sorted(api)
        gap = max(abs(stream[i][0] - api[i][0]) for i in ids)
        versions = Counter(api[i][1] for i in ids)
        print(f"{phase}: 1,000 events, max |stream - api| = {gap:.1e}, versions {dict(versions)}")
        assert gap <= 1e-12
        assert [stream[i][1] for i in ids] == [api[i][1] for i in ids], "a version differs"
        assert {b["event_id"]: b["score"] for b in from_api} == {i: api[i][0] for i in ids}
        if phase == "split":
            entities = {r["event_id"]: r["entity_id"] for r in rows}
            routed = to_challenger([entities[i] for i in ids], 0.5)
            assert [api[i][1] for i in ids] == ["2" if r else "1" for r in routed]
            assert 400 <= versions["2"] <= 600, "about half the entities go to the challenger"
        else:
            assert versions == {"1": 1000}
    print(f"API predictions carry topic {from_api[0]['topic']!r}, partition {from_api[0]['partition']}")


def test_a_worker_that_is_not_ready_answers_503(
    bootstrap, topic_env, agrawal_bundle_dir, tmp_path, workers
) -> None:
    """Two score workers in one group, one partition: one of them has nothing assigned, so it is not ready."""
    env = {**topic_env, "STREAMSCORE_ROLES": "score", "STREAMSCORE_PARTITIONS": "1"}
    pair = [WorkerProcess(env, agrawal_bundle_dir, tmp_path / f"worker-{i}.log") for i in range(2)]
    workers.extend(pair)

    def ready(worker: WorkerProcess) -> bool:
        try:
            return client(worker, token=False).is_server_ready()
        except (OSError, InferenceServerException):  # not listening yet
            return False

    _wait(lambda: sum(ready(w) for w in pair) == 1, timeout_s=90, what="one worker ready")
    idle = next(w for w in pair if not ready(w))
    c = client(idle, token=False)
    assert c.is_server_live() and not c.is_model_ready("loans")
    status, message = _refusal(
        lambda: c.infer("loans", feature_inputs(c.get_model_metadata("loans"), events(1, "x")))
    )
    print(f"idle worker: {status} {message}")
    assert status == 503 and "not ready" in message
    with pytest.raises(urllib.error.HTTPError) as not_ready:
        idle.get("/ready")
    assert not_ready.value.code == 503, "/v2/health/ready follows /ready"
