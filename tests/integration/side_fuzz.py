"""Payloads for the side-topic fuzz: per topic, kinds known good or bad by construction.

Each recipe is (kind, parameters hypothesis drew for it). A renderer turns it into a Kafka
record and says what the worker must do with it; the schema of the topic cross-checks each
verdict at render time, so a wrong construction fails here and not as a worker "defect".
"""

from __future__ import annotations

import copy
import time

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.messages import Label, MonitorBatch
from scoring.model.features import FeatureSpec
from scoring.model.monitor_rows import spec_problem

DAY_MS = 86_400_000
finite = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | finite | st.text(max_size=20)
BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80", b"\xfe"]


def draw(kinds: dict[str, int], params: dict[str, st.SearchStrategy], n: int, seed: int) -> list[tuple]:
    """``n`` (kind, parameters) recipes, kinds weighted by ``kinds``; the same every run."""
    pool = [k for k, weight in kinds.items() for _ in range(weight)]
    drawn: list[tuple] = []

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    # the salt makes every draw distinct, so a kind without parameters is drawn as often as its weight says
    @given(
        st.sampled_from(pool).flatmap(lambda k: st.tuples(st.just(k), params.get(k, st.none()))),
        st.integers(0, 10**9),
    )
    def collect(recipe: tuple, salt: int) -> None:
        drawn.append(recipe)

    collect()
    assert len(drawn) == n, f"hypothesis drew {len(drawn)} of {n}"
    return drawn[:n]


def literal(body: dict, path: list, text: str) -> bytes:
    """``body`` as JSON with raw JSON ``text`` at ``path`` (keys and list indexes)."""
    body = copy.deepcopy(body)
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = "__literal__"
    return orjson.dumps(body).replace(b'"__literal__"', text.encode())


def malformed(body: dict, how: tuple) -> bytes:
    text = orjson.dumps(body)
    kind, arg = how
    return text[: max(1, min(arg, len(text) - 1))] if kind == "truncate" else b"{" + arg.encode() + b","


MALFORMED = st.one_of(
    st.integers(1, 300).map(lambda cut: ("truncate", cut)), st.text(max_size=40).map(lambda j: ("junk", j))
)

# -- labels: good ones name a distinct event the worker scored (or repeat one: not joined twice)

LABEL_KINDS = {
    "valid": 30,
    "integer_label": 6,
    "with_schema_version": 6,
    "future_time": 6,
    "null_key": 6,
    "duplicate": 6,
    "malformed_json": 4,
    "bad_utf8": 4,
    "nan_literal": 4,
    "huge_label": 4,
    "huge_time": 4,
    "negative_time": 4,
    "fractional_time": 4,
    "unknown_field": 4,
    "missing_field": 4,
    "wrong_type": 4,
    "empty_id": 4,
    "long_id": 4,
    "not_an_object": 4,
    "null_value": 4,
    "deep_nesting": 4,
    "schema_version_2": 4,
}
LABEL_PARAMS = {
    "malformed_json": MALFORMED,
    "bad_utf8": st.sampled_from(BAD_UTF8),
    "nan_literal": st.sampled_from(["NaN", "Infinity", "-Infinity"]),
    "huge_label": st.integers(309, 5000).map(lambda e: f"1e{e}"),
    "huge_time": st.integers(20, 400).map(lambda digits: "9" * digits),
    "negative_time": st.integers(-(2**63), -1),
    "fractional_time": st.floats(0.01, 0.99).map(lambda f: 1_700_000_000_000 + f),
    "unknown_field": st.tuples(st.text(min_size=1, max_size=10), scalars),
    "missing_field": st.sampled_from(["event_id", "label", "label_time"]),
    "wrong_type": st.sampled_from(
        [
            ("label", "x"),
            ("label", None),
            ("label", [1]),
            ("event_id", 5),
            ("event_id", None),
            ("label_time", "soon"),
            ("label_time", None),
            ("label", {"v": 1}),
        ]
    ),
    "long_id": st.integers(257, 5000),
    "not_an_object": st.one_of(scalars, st.lists(scalars, max_size=3)),
    "deep_nesting": st.integers(1, 3000),
    "duplicate": st.integers(1, 40),
}


def render_label(
    kind: str, params, event_ids: list[str], used: list[str]
) -> tuple[bytes | None, bytes | None, str]:
    """(key, value, verdict): verdict is "bad", or the event_id a good label names."""
    repeat = kind == "duplicate" and used
    event_id = used[max(0, len(used) - params)] if repeat else event_ids[len(used)]
    body = {"event_id": event_id, "label": 1.0, "label_time": int(time.time() * 1000)}
    key: bytes | None = event_id.encode()
    good = True
    value: bytes | None
    if kind == "integer_label":
        body["label"] = 0
    elif kind == "with_schema_version":
        body["schema_version"] = 1
    elif kind == "future_time":
        body["label_time"] += DAY_MS
    elif kind == "null_key":
        key = None
    elif kind not in ("valid", "duplicate"):
        good = False
        body["event_id"] = f"bad-{event_id}"
    value = orjson.dumps(body) if good else _bad_label(kind, params, body)
    check_binary_label(value, good, kind)
    if (good and kind != "duplicate") or (kind == "duplicate" and not used):
        used.append(event_id)
    return key, value, event_id if good else "bad"


def _bad_label(kind: str, params, body: dict) -> bytes | None:
    if kind == "malformed_json":
        return malformed(body, params)
    if kind == "bad_utf8":
        return orjson.dumps(body).replace(b'"bad-', b'"bad-' + params, 1)
    if kind in ("nan_literal", "huge_label"):
        return literal(body, ["label"], params)
    if kind in ("huge_time", "negative_time", "fractional_time"):
        return literal(body, ["label_time"], str(params))
    if kind == "unknown_field":
        body[f"x_{params[0]}"] = params[1]
    elif kind == "missing_field":
        del body[params]
    elif kind == "wrong_type":
        body[params[0]] = params[1]
    elif kind == "empty_id":
        body["event_id"] = ""
    elif kind == "long_id":
        body["event_id"] = "i" * params
    elif kind == "not_an_object":
        return orjson.dumps(params)
    elif kind == "null_value":
        return None
    elif kind == "deep_nesting":
        return literal(body, ["label"], "[" * params + "]" * params)
    elif kind == "schema_version_2":
        body["schema_version"] = 2
    else:
        raise AssertionError(kind)
    return orjson.dumps(body)


def check(model, value: bytes | None, good: bool, kind: str) -> None:
    try:
        model.model_validate_json(value or b"")
        valid = True
    except ValidationError:
        valid = False
    assert valid == good, f"{kind}: the schema says {'good' if valid else 'bad'} for {(value or b'')[:120]!r}"


def check_binary_label(value: bytes | None, good: bool, kind: str) -> None:
    """``check`` of a label for the binary model the worker serves: the schema takes it and it is a
    number (a label of text names a class of a multiclass model; a binary worker's intake refuses it)."""
    try:
        valid = not isinstance(Label.model_validate_json(value or b"").label, str)
    except ValidationError:
        valid = False
    assert valid == good, f"{kind}: the intake says {'good' if valid else 'bad'} for {(value or b'')[:120]!r}"


# -- monitor: good records (1 to 5 rows taken from the worker's own) count in windows and the join

MONITOR_KINDS = {
    "valid": 30,
    "missing_cells": 6,
    "future_times": 6,
    "with_schema_version": 6,
    "malformed_json": 3,
    "bad_utf8": 3,
    "not_an_object": 3,
    "null_value": 3,
    "missing_field": 3,
    "unknown_field": 3,
    "wrong_type": 3,
    "length_mismatch": 3,
    "huge_time": 3,
    "negative_offset": 3,
    "nan_cell": 3,
    "huge_score": 3,
    "deep_nesting": 3,
    "long_name": 3,
    "schema_version_2": 3,
    "bool_cell": 3,
    "category_out_of_range": 3,
    "fractional_category": 3,
    "other_feature_names": 3,
    "narrow": 3,
}
SPEC_KINDS = {"category_out_of_range", "fractional_category", "other_feature_names", "narrow"}
MONITOR_PARAMS = {
    "valid": st.integers(1, 5),
    "missing_cells": st.integers(0, 4),
    "malformed_json": MALFORMED,
    "bad_utf8": st.sampled_from(BAD_UTF8),
    "not_an_object": st.one_of(scalars, st.lists(scalars, max_size=3)),
    "missing_field": st.sampled_from(
        ["model_name", "event_ids", "rows", "scores", "event_times", "partition"]
    ),
    "unknown_field": st.text(min_size=1, max_size=10),
    "wrong_type": st.sampled_from(
        [
            ("scores", ["x"]),
            ("event_ids", [5]),
            ("rows", "r"),
            ("partition", "0"),
            ("model_version", 1),
            ("offsets", [1.5]),
        ]
    ),
    "huge_time": st.sampled_from(["1e30", "99999999999999999999", "32503680000001"]),
    "nan_cell": st.sampled_from(["NaN", "Infinity", "-Infinity"]),
    "huge_score": st.integers(309, 2000).map(lambda e: f"1e{e}"),
    "deep_nesting": st.integers(1, 3000),
    "long_name": st.integers(257, 3000),
    "category_out_of_range": st.integers(4, 1000),
}


def monitor_body(template: dict, event_ids: list[str]) -> dict:
    """A monitoring record like ``template`` (one the worker wrote) for ``event_ids``, timed now."""
    k, per_event = len(event_ids), ("offsets", "entity_ids", "scores", "rows", "event_ids", "event_times")
    # the template's columns hold a whole batch: copy only the k values taken (a deep copy of all of it
    # for each of 2,000 records was most of the test's time)
    body = copy.deepcopy({name: value for name, value in template.items() if name not in per_event})
    for column in ("offsets", "entity_ids", "scores", "rows"):
        values = template[column]
        body[column] = copy.deepcopy([values[j % len(values)] for j in range(k)])  # rows share no list
    body["event_ids"], body["event_times"] = list(event_ids), [int(time.time() * 1000)] * k
    return body


def render_monitor(
    kind: str, params, template: dict, spec: FeatureSpec, index: int
) -> tuple[bytes | None, str, int]:
    """(value, verdict, rows): verdict "good", "schema" or "spec"; rows a good record adds."""
    k = params if kind == "valid" else 2
    body = monitor_body(template, [f"fzm-{index}-{j}" for j in range(k)])
    categorical = next(j for j, f in enumerate(spec.features) if f.kind.value == "categorical")
    verdict = "good"
    if kind == "missing_cells":
        body["rows"][0][params] = None
    elif kind == "future_times":
        body["event_times"] = [t + DAY_MS for t in body["event_times"]]
    elif kind == "with_schema_version":
        body["schema_version"] = 1
    elif kind in SPEC_KINDS:
        verdict = "spec"
        if kind == "category_out_of_range":
            body["rows"][0][categorical] = float(spec.features[categorical].unseen_code + params)
        elif kind == "fractional_category":
            body["rows"][0][categorical] = 0.5
        elif kind == "other_feature_names":
            body["feature_names"] = list(reversed(body["feature_names"]))
        else:
            body["feature_names"], body["rows"] = body["feature_names"][:1], [r[:1] for r in body["rows"]]
    elif kind != "valid":
        verdict = "schema"
    value = orjson.dumps(body) if verdict != "schema" else _bad_monitor(kind, params, body)
    check(MonitorBatch, value, verdict != "schema", kind)
    if verdict != "schema":
        columns = orjson.loads(value)
        problem = spec_problem(columns["feature_names"], _rows(columns["rows"]), spec)
        assert (problem is None) == (verdict == "good"), f"{kind}: {problem}"
    return value, verdict, k if verdict == "good" else 0


def _rows(rows: list) -> object:
    import numpy as np

    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)


def _bad_monitor(kind: str, params, body: dict) -> bytes | None:
    if kind == "malformed_json":
        return malformed(body, params)
    if kind == "bad_utf8":
        return orjson.dumps(body).replace(b'"fzm-', b'"fzm-' + params, 1)
    if kind == "huge_time":
        return literal(body, ["event_times", 0], params)
    if kind == "nan_cell":
        return literal(body, ["rows", 0, 0], params)
    if kind == "huge_score":
        return literal(body, ["scores", 0], params)
    if kind == "deep_nesting":
        return literal(body, ["rows", 0, 0], "[" * params + "]" * params)
    if kind == "not_an_object":
        return orjson.dumps(params)
    if kind == "null_value":
        return None
    if kind == "missing_field":
        del body[params]
    elif kind == "unknown_field":
        body[f"x_{params}"] = 1
    elif kind == "wrong_type":
        body[params[0]] = params[1]
    elif kind == "length_mismatch":
        body["event_ids"] = body["event_ids"][:1]
    elif kind == "negative_offset":
        body["offsets"][0] = -1
    elif kind == "long_name":
        body["model_name"] = "m" * params
    elif kind == "schema_version_2":
        body["schema_version"] = 2
    elif kind == "bool_cell":
        body["rows"][0][0] = True
    else:
        raise AssertionError(kind)
    return orjson.dumps(body)
