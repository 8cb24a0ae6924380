"""The inference protocol's logic without HTTP or Kafka: tensors, layouts, the handler's request path."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.lifecycle import ChallengerMode
from scoring.lifecycle.routing import to_challenger
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import agrawal_frame, events_from_frame, numeric_frame
from scoring.offline.training import train_bundle
from streams.services.inference.errors import BadRequest, NotFound, NotReady
from streams.services.inference.protocol import InferenceService
from streams.services.inference.tensors import Tensor, decode, read_request
from streams.services.score.handler import RowRefused, ScoreHandler
from streams.settings import Settings
from streams.web.inference_metrics import ENDPOINTS, InferenceCollector, InferenceCounters
from tests.unit.test_handler import Record, Sink

SETTINGS = Settings(kafka_bootstrap="x:1")


@pytest.fixture(scope="module")
def frame():
    return agrawal_frame(60, seed=5, classification_function=2).drop(columns=["approved"])


@pytest.fixture(scope="module")
def events(frame) -> list[dict]:
    return list(events_from_frame(frame, prefix="u"))


@pytest.fixture(scope="module")
def v2(tmp_path_factory) -> ModelBundle:
    frame = agrawal_frame(1500, seed=12, classification_function=2)
    return train_bundle(
        frame, "approved", tmp_path_factory.mktemp("v2") / "l2", name="loans", version="2", num_trees=8
    )


def _columns(spec, rows: list[dict]) -> list[dict]:
    inputs = []
    for f in spec.features:
        datatype = "FP64" if f.kind.value == "numeric" else "BYTES"
        inputs.append(
            {
                "name": f.name,
                "datatype": datatype,
                "shape": [len(rows)],
                "data": [r["features"][f.name] for r in rows],
            }
        )
    return inputs


def _body(inputs: list[dict], **extra) -> bytes:
    return orjson.dumps({"inputs": inputs, **extra})


def _scores(response: dict) -> tuple[list[float], list[str]]:
    out = {o["name"]: o["data"] for o in response["outputs"]}
    return out["score"], out["model_version"]


def _stream(handler: ScoreHandler, events: list[dict]) -> dict[str, tuple[float, str]]:
    sink = Sink()
    handler.handle([Record(orjson.dumps(e), offset_=i) for i, e in enumerate(events)], sink.emit)
    bodies = [orjson.loads(o.value) for o in sink.on(SETTINGS.topic_predictions)]
    return {b["event_id"]: (b["score"], b["model_version"]) for b in bodies}


def test_a_request_scores_as_the_stream_does_under_a_split_and_in_shadow(agrawal_bundle, v2, events) -> None:
    handler = ScoreHandler(SETTINGS, agrawal_bundle)
    service = InferenceService(handler, lambda: True)
    entity = {"inputs": [*_columns(agrawal_bundle.spec, events)]}
    entity["inputs"].append(
        {
            "name": "entity_id",
            "datatype": "BYTES",
            "shape": [len(events)],
            "data": [e["entity_id"] for e in events],
        }
    )
    entity["inputs"].append(
        {
            "name": "event_id",
            "datatype": "BYTES",
            "shape": [len(events)],
            "data": [e["event_id"] for e in events],
        }
    )
    for mode, share in ((None, 0.0), (ChallengerMode.split, 0.5), (ChallengerMode.shadow, 0.0)):
        handler.swap(agrawal_bundle, v2 if mode else None, mode, share)
        stream = _stream(handler, events)
        scores, versions = _scores(service.infer("loans", None, orjson.dumps(entity)).response)
        assert (
            dict(zip([e["event_id"] for e in events], zip(scores, versions, strict=True), strict=True))
            == stream
        )
        if mode is ChallengerMode.split:
            routed = to_challenger([e["entity_id"] for e in events], share)
            assert versions == ["2" if r else "1" for r in routed] and 0 < routed.sum() < len(events)
        else:
            assert set(versions) == {"1"}


def test_a_named_version_scores_every_row_and_an_unserved_one_is_not_found(
    agrawal_bundle, v2, events
) -> None:
    handler = ScoreHandler(SETTINGS, agrawal_bundle)
    handler.swap(agrawal_bundle, v2, ChallengerMode.shadow, 0.0)
    service = InferenceService(handler, lambda: True)
    body = _body(_columns(agrawal_bundle.spec, events[:5]))
    scores, versions = _scores(service.infer("loans", "2", body).response)
    assert versions == ["2"] * 5
    assert (
        scores
        == v2.predict(
            np.asarray([handler._plan.validator.parse(orjson.dumps(e)).row for e in events[:5]])
        ).tolist()
    )
    with pytest.raises(NotFound, match="versions serving: \\['1', '2'\\]"):
        service.infer("loans", "3", body)
    with pytest.raises(NotFound, match="serves 'loans'"):
        service.metadata("cars")
    with pytest.raises(KeyError):
        handler.score_events([orjson.dumps(events[0])], "3")


def test_not_ready_refuses_before_reading_the_body(agrawal_bundle) -> None:
    service = InferenceService(ScoreHandler(SETTINGS, agrawal_bundle), lambda: False)
    with pytest.raises(NotReady):
        service.infer("loans", None, b"not even json")
    assert service.model_ready("loans") is False


def test_the_matrix_layout_takes_category_codes_and_equals_the_feature_layout(
    agrawal_bundle, frame, events
) -> None:
    service = InferenceService(ScoreHandler(SETTINGS, agrawal_bundle), lambda: True)
    matrix = agrawal_bundle.spec.encode_frame(frame)
    by_matrix = {"name": "features", "datatype": "FP64", "shape": list(matrix.shape), "data": matrix.tolist()}
    scores, _ = _scores(service.infer("loans", None, _body([by_matrix])).response)
    by_feature, _ = _scores(
        service.infer("loans", None, _body(_columns(agrawal_bundle.spec, events))).response
    )
    assert scores == by_feature == agrawal_bundle.predict(matrix).tolist()
    car = agrawal_bundle.spec.names.index("car")
    bad = matrix.copy()
    bad[2, car] = 2.5
    with pytest.raises(BadRequest, match=r"row 2, column 4 \('car'\): 2.5 is not a category code"):
        service.infer("loans", None, _body([{**by_matrix, "data": bad.ravel().tolist()}]))
    with pytest.raises(BadRequest, match="'salary' beside 'features'"):
        service.infer("loans", None, _body([by_matrix, _columns(agrawal_bundle.spec, events)[0]]))


def test_entity_ids_from_a_parameter_route_every_row_of_that_entity_to_one_model(
    agrawal_bundle, v2, events
) -> None:
    handler = ScoreHandler(SETTINGS, agrawal_bundle)
    handler.swap(agrawal_bundle, v2, ChallengerMode.split, 0.5)
    service = InferenceService(handler, lambda: True)
    inputs = _columns(agrawal_bundle.spec, events)
    for entity in ("alice", "bob", "carol", "dave"):
        _, versions = _scores(
            service.infer("loans", None, _body(inputs, parameters={"entity_id": entity})).response
        )
        assert versions == ["2" if to_challenger([entity], 0.5)[0] else "1"] * len(events)
    with pytest.raises(BadRequest, match="a list of 60 strings"):
        service.infer("loans", None, _body(inputs, parameters={"entity_id": ["a", "b"]}))


def test_an_optional_feature_may_be_left_out_or_null_and_takes_its_default() -> None:
    data = numeric_frame(300, n_features=4, seed=4)
    data.loc[data.index % 5 == 0, "f01"] = np.nan
    bundle = train_bundle(data, "y", num_trees=4, name="opt")
    service = InferenceService(ScoreHandler(SETTINGS, bundle), lambda: True)
    f00 = {"name": "f00", "datatype": "FP64", "shape": [2], "data": [0.5, 0.1]}
    f02 = {"name": "f02", "datatype": "FP64", "shape": [2, 1], "data": [[1.0], [2.0]]}
    f03 = {"name": "f03", "datatype": "FP64", "shape": [2], "data": [0.0, -1.0]}
    left_out, _ = _scores(service.infer("opt", None, _body([f00, f02, f03])).response)
    null = {"name": "f01", "datatype": "FP64", "shape": [2], "data": [None, None]}
    as_null, _ = _scores(service.infer("opt", None, _body([f00, null, f02, f03])).response)
    expected = bundle.predict(np.array([[0.5, np.nan, 1.0, 0.0], [0.1, np.nan, 2.0, -1.0]]))
    assert left_out == as_null == expected.tolist()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"inputs": []}', "non-empty list"),
        (b'{"inputs": [{"name": "a", "shape": [-1], "datatype": "FP64", "data": []}]}', "non-negative"),
        (b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP64"}]}', "'data' must be a list"),
        (
            b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}, '
            b'{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}]}',
            "more than once",
        ),
        (b'{"id": 5, "inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}]}', "'id'"),
    ],
)
def test_malformed_requests_are_refused_with_what_is_wrong(body: bytes, words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        read_request(body)


@pytest.mark.parametrize(
    ("tensor", "words"),
    [
        (Tensor("a", "FP64", (2,), [1.0, "2"]), "must be numbers"),
        (Tensor("a", "FP64", (2,), [1.0, True]), "must be numbers"),
        (Tensor("a", "FP64", (3,), [1.0, 2.0]), "holds 3 values, the data 2"),
        (Tensor("a", "BYTES", (1,), [3]), "must be strings"),
        (Tensor("a", "FP32", (1,), [3.0]), "not one of"),
        (Tensor("a", "FP64", (1,), np.array([np.inf]).tobytes()), "infinite"),
        (Tensor("a", "FP64", (1,), b"1234567"), "multiple of 8"),
        (Tensor("a", "BYTES", (1,), struct.pack("<I", 9) + b"abc"), "cut short"),
        (Tensor("a", "BYTES", (1,), struct.pack("<I", 2) + b"\xff\xfe"), "not UTF-8"),
    ],
)
def test_tensor_data_that_does_not_match_its_datatype_or_shape_is_refused(tensor: Tensor, words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        decode(tensor)


def test_binary_tensors_read_as_tritonclient_writes_them() -> None:
    numbers = np.array([[1.5, np.nan], [3.0, -0.25]])
    words = ["car1", "élan", ""]
    packed = b"".join(struct.pack("<I", len(w.encode())) + w.encode() for w in words)
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [2, 2], "datatype": "FP64", "parameters": {"binary_data_size": 32}},
                {
                    "name": "w",
                    "shape": [3],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(packed)},
                },
            ]
        }
    )
    request = read_request(header + numbers.tobytes() + packed, len(header))
    assert [decode(t) for t in request.inputs] == [[1.5, None, 3.0, -0.25], words]
    with pytest.raises(BadRequest, match="after the last input"):
        read_request(header + numbers.tobytes() + packed + b"x", len(header))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=3, max_size=3),
        min_size=1,
        max_size=20,
    )
)
def test_nested_and_flat_json_data_decode_alike(rows: list[list[float]]) -> None:
    nested = Tensor("m", "FP64", (len(rows), 3), rows)
    flat = Tensor("m", "FP64", (len(rows), 3), [v for r in rows for v in r])
    assert decode(nested) == decode(flat) == [float(v) for r in rows for v in r]


def test_a_refused_row_names_its_position(agrawal_bundle, events) -> None:
    handler = ScoreHandler(SETTINGS, agrawal_bundle)
    broken = {**events[1], "features": {**events[1]["features"], "age": "old"}}
    with pytest.raises(RowRefused) as caught:
        handler.score_events([orjson.dumps(events[0]), orjson.dumps(broken)])
    assert caught.value.row == 1 and "'age' must be a number" in caught.value.reason


def test_every_inference_series_is_exported_from_the_start() -> None:
    families = {f.name: f for f in InferenceCollector(InferenceCounters()).collect()}
    requests = {s.labels["endpoint"]: s.value for s in families["streamscore_inference_requests"].samples}
    assert requests == dict.fromkeys(ENDPOINTS, 0)
    reasons = {s.labels["reason"] for s in families["streamscore_inference_errors"].samples}
    assert reasons == {
        "bad_request",
        "unauthorized",
        "not_found",
        "too_large",
        "model_failed",
        "not_ready",
        "busy",
    }
