"""Bad input at volume: 10,000 payloads drawn by hypothesis, mixed with valid events, through a live worker.

Each payload is made good or bad by construction (a kind, and parameters hypothesis
draws for it), so the test knows the answer before the worker does: every bad one
must come out on the dead-letter topic with its bytes (cut at max_message_bytes if
longer) and a reason, every good one as a prediction, and the worker must be the same
process at the end.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.integration.kafka_tools import WorkerProcess, produce, read_topic

pytestmark = pytest.mark.integration

N = 10_000
MAX_BYTES = 1_000_000  # the worker's default max_message_bytes
NUMERIC = ["salary", "commission", "age", "hvalue", "hyears", "loan"]
CATEGORICAL = ["elevel", "car", "zipcode"]
TOP_LEVEL = ["event_id", "entity_id", "event_time", "features"]

# how often each kind is drawn (sampled uniformly from this list) and, for bad kinds, where it must fail
GOOD = {
    "valid": 40,
    "null_kafka_key": 8,
    "unknown_top_level_field": 8,
    "unknown_feature": 8,
    "duplicate_event_id": 8,
    "extreme_but_finite_numbers": 8,
    "rfc3339_event_time": 6,
    "unicode_identifiers": 8,
    "large_category": 1,  # 50-400 KB strings
}
BAD = {
    "malformed_json": (8, {"decode"}),
    "bad_utf8": (8, {"decode"}),
    "nan_infinity_literal": (8, {"decode"}),
    "huge_float_1e400": (8, {"decode"}),
    "huge_int_10e400": (8, {"decode"}),
    "deep_nesting": (8, {"decode", "validate"}),
    "oversize_1mb_string": (1, {"decode"}),
    "null_value": (8, {"decode"}),
    "not_an_object": (8, {"validate"}),
    "missing_field": (8, {"validate"}),
    "wrong_type": (8, {"validate"}),
    "empty_identifier": (8, {"validate"}),
    "long_identifier": (8, {"validate"}),
    "huge_identifier": (1, {"validate"}),  # 100-900 KB ids: a prediction carrying one would not fit
}
BIG = {"large_category", "oversize_1mb_string", "huge_identifier"}
KINDS = [k for k, w in GOOD.items() for _ in range(w)] + [k for k, (w, _) in BAD.items() for _ in range(w)]
KINDS = [
    k for k in KINDS for _ in range(1 if k in BIG else 2)
]  # megabyte payloads: a few dozen, not hundreds

finite = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | finite | st.text(max_size=30)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
not_a_string = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | finite
    | st.lists(scalars, max_size=2)
    | st.just({})
)
not_a_number = st.booleans() | st.text(max_size=10) | st.lists(scalars, max_size=2) | st.just({"v": 1})

PARAMS = {
    "valid": st.none(),
    "null_kafka_key": st.none(),
    "unknown_top_level_field": st.tuples(st.text(max_size=12), json_values),
    "unknown_feature": st.tuples(
        st.text(max_size=12), st.none() | finite | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)
    ),
    "duplicate_event_id": st.integers(1, 50),
    "extreme_but_finite_numbers": st.tuples(
        st.sampled_from(NUMERIC),
        st.one_of(
            st.integers(-(2**63), 2**64 - 1).map(str),  # 64-bit integers
            st.integers(20, 300).map(lambda digits: "9" * digits),  # wider: parsed as a finite float
            st.floats(allow_nan=False, allow_infinity=False).map(repr),  # up to 1.8e308, subnormals, -0.0
        ),
    ),
    "rfc3339_event_time": st.datetimes(datetime(1970, 1, 2), datetime(2200, 1, 1), timezones=st.just(UTC)),
    "unicode_identifiers": st.tuples(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40)),
    "large_category": st.integers(50_000, 400_000),
    "malformed_json": st.one_of(
        st.integers(1, 400).map(lambda cut: ("truncate", cut)),
        st.text(max_size=60).map(lambda junk: ("junk", junk)),
    ),
    "bad_utf8": st.sampled_from(
        [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xfe"]
    ),
    "nan_infinity_literal": st.tuples(
        st.sampled_from(NUMERIC), st.sampled_from(["NaN", "Infinity", "-Infinity"])
    ),
    "huge_float_1e400": st.tuples(
        st.sampled_from(NUMERIC), st.sampled_from(["", "-"]), st.integers(309, 100_000)
    ),
    "huge_int_10e400": st.tuples(
        st.sampled_from(NUMERIC), st.sampled_from(["", "-"]), st.integers(310, 5000)
    ),
    "deep_nesting": st.tuples(st.sampled_from(NUMERIC + CATEGORICAL), st.integers(1, 3000)),
    "oversize_1mb_string": st.integers(MAX_BYTES, MAX_BYTES + 100_000),
    "null_value": st.none(),
    "not_an_object": st.one_of(scalars, st.lists(json_values, max_size=4)),
    "missing_field": st.sampled_from(TOP_LEVEL + [f"features.{f}" for f in NUMERIC + CATEGORICAL]),
    "wrong_type": st.one_of(
        st.tuples(st.sampled_from(["event_id", "entity_id"]), not_a_string),
        st.tuples(
            st.just("event_time"), st.none() | st.booleans() | finite | st.just([1]) | st.just("yesterday")
        ),
        st.tuples(st.just("features"), not_a_string),
        st.tuples(st.sampled_from([f"features.{f}" for f in NUMERIC]), not_a_number | st.none()),
        st.tuples(st.sampled_from([f"features.{f}" for f in CATEGORICAL]), not_a_string),
        st.tuples(st.just("schema_version"), st.text(max_size=3) | st.just(1.5)),
    ),
    "empty_identifier": st.sampled_from(["event_id", "entity_id"]),
    "long_identifier": st.tuples(st.sampled_from(["event_id", "entity_id"]), st.integers(257, 5000)),
    "huge_identifier": st.tuples(st.sampled_from(["event_id", "entity_id"]), st.integers(100_000, 900_000)),
}


@st.composite
def recipes(draw) -> tuple[str, int, object]:
    kind = draw(st.sampled_from(KINDS))
    return kind, draw(st.integers(0, 499)), draw(PARAMS[kind])


def draw_recipes(n: int) -> list[tuple[str, int, object]]:
    """``n`` recipes from hypothesis, the same every run (derandomized, no example database)."""
    drawn: list[tuple[str, int, object]] = []

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(recipes())
    def collect(recipe) -> None:
        drawn.append(recipe)

    collect()
    return drawn


def _literal(event: dict, path: str, literal: str) -> bytes:
    """The event as JSON with ``literal`` (raw JSON text) as the value at ``path``."""
    marker = "__literal__"
    _set(event, path, marker)
    return orjson.dumps(event).replace(f'"{marker}"'.encode(), literal.encode())


def _set(event: dict, path: str, value: object) -> None:
    if path.startswith("features."):
        event["features"][path.split(".", 1)[1]] = value
    else:
        event[path] = value


def render(
    index: int, recipe: tuple, base: dict, good_ids: list[str]
) -> tuple[bytes | None, bytes | None, str | None]:
    """(Kafka key, value, event_id if the payload is good) for one recipe."""
    kind, _, params = recipe
    event = copy.deepcopy(base)
    event["event_id"] = f"fz-{index}"
    key = event["entity_id"].encode()
    good = event["event_id"]
    if kind == "null_kafka_key":
        key = None
    elif kind == "unknown_top_level_field":
        event[f"x_{params[0]}"] = params[1]
    elif kind == "unknown_feature":
        event["features"][f"u_{params[0]}"] = params[1]
    elif kind == "duplicate_event_id":
        good = event["event_id"] = good_ids[max(0, len(good_ids) - params)] if good_ids else good
    elif kind == "extreme_but_finite_numbers":
        return key, _literal(event, f"features.{params[0]}", params[1]), good
    elif kind == "rfc3339_event_time":
        event["event_time"] = params.isoformat()
    elif kind == "unicode_identifiers":
        event["event_id"] = good = f"fz-{index}-{params[0]}"
        event["entity_id"] = params[1]
        key = params[1].encode()
    elif kind == "large_category":
        event["features"]["car"] = "c" * params
    elif kind in GOOD:
        assert kind == "valid"
    else:
        return key, _bad_value(kind, params, event), None
    return key, orjson.dumps(event), good


def _bad_value(kind: str, params, event: dict) -> bytes | None:
    if kind == "malformed_json":
        how, arg = params
        text = orjson.dumps(event)
        return text[: min(arg, len(text) - 1)] if how == "truncate" else b"{" + arg.encode() + b","
    if kind == "bad_utf8":
        return orjson.dumps(event).replace(b'"cust-', b'"cust-' + params, 1)
    if kind == "nan_infinity_literal":
        return _literal(event, f"features.{params[0]}", params[1])
    if kind == "huge_float_1e400":
        return _literal(event, f"features.{params[0]}", f"{params[1]}1e{params[2]}")
    if kind == "huge_int_10e400":
        return _literal(event, f"features.{params[0]}", params[1] + "1" + "0" * params[2])
    if kind == "deep_nesting":
        return _literal(event, f"features.{params[0]}", "[" * params[1] + "]" * params[1])
    if kind == "oversize_1mb_string":
        event["features"]["car"] = "c" * params
        return orjson.dumps(event)
    if kind == "null_value":
        return None
    if kind == "not_an_object":
        return orjson.dumps(params)
    if kind == "missing_field":
        if params.startswith("features."):
            del event["features"][params.split(".", 1)[1]]
        else:
            del event[params]
        return orjson.dumps(event)
    if kind == "wrong_type":
        _set(event, params[0], params[1])
        return orjson.dumps(event)
    if kind == "empty_identifier":
        event[params] = ""
        return orjson.dumps(event)
    if kind in ("long_identifier", "huge_identifier"):
        event[params[0]] = "i" * params[1]
        return orjson.dumps(event)
    raise AssertionError(kind)


def test_ten_thousand_fuzzed_payloads_through_a_live_worker(
    bootstrap, topic_env, agrawal_bundle_dir, tmp_path, workers
):
    from scoring.offline.synthetic import agrawal_frame, events_from_frame

    started = time.monotonic()
    recipes_ = draw_recipes(N)
    drawn_s = time.monotonic() - started
    assert len(recipes_) == N, f"hypothesis drew {len(recipes_)} payloads"
    frame = agrawal_frame(500, seed=75, classification_function=2).drop(columns=["approved"])
    bases = list(events_from_frame(frame, prefix="base"))

    payloads: list[tuple[bytes | None, bytes | None]] = []
    good_ids: list[str] = []
    expected_dead: Counter[bytes | None] = Counter()
    stages_of: dict[bytes | None, set[str]] = {}
    kinds: Counter[str] = Counter()
    for index, recipe in enumerate(recipes_):
        key, value, good = render(index, recipe, bases[recipe[1]], good_ids)
        payloads.append((key, value))
        kinds[recipe[0]] += 1
        if good is not None:
            good_ids.append(good)
            continue
        dead_value = value[:MAX_BYTES] if value is not None else None
        expected_dead[dead_value] += 1
        stages_of.setdefault(dead_value, set()).update(BAD[recipe[0]][1])
    n_bad = sum(expected_dead.values())
    print(f"hypothesis drew {N:,} payloads in {drawn_s:.1f} s: {len(good_ids):,} good, {n_bad:,} bad")
    print("  by kind: " + ", ".join(f"{k} {c}" for k, c in sorted(kinds.items(), key=lambda kv: -kv[1])))
    assert set(kinds) == set(GOOD) | set(BAD), "every kind drawn at least once"

    env = {**topic_env, "STREAMSCORE_ROLES": "drift,learn,score"}
    worker = WorkerProcess(env, agrawal_bundle_dir, tmp_path / "worker.log")
    workers.append(worker)
    worker.wait_ready(90)
    pid = worker.process.pid
    produce(bootstrap, topic_env["STREAMSCORE_TOPIC_FEATURES"], payloads, {"message.max.bytes": 2_000_000})

    dead = read_topic(bootstrap, topic_env["STREAMSCORE_TOPIC_DLQ"], n_bad, timeout_s=180, idle_s=1.0)
    scored = read_topic(
        bootstrap, topic_env["STREAMSCORE_TOPIC_PREDICTIONS"], len(good_ids), timeout_s=180, idle_s=1.0
    )
    stats = worker.get("/stats")
    print(
        f"worker pid {pid} alive={worker.alive()}: consumed {stats['consumed']:,}, "
        f"scored {stats['scored']:,}, dead letters {stats['dead_letters']}; "
        f"{time.monotonic() - started:.0f} s in all"
    )
    reasons = Counter(r.headers["streamscore.errors.exception.message"].decode()[:28] for r in dead)
    print("  commonest reasons: " + "; ".join(f"{r!r} {c}" for r, c in reasons.most_common(8)))

    assert worker.alive() and worker.process.pid == pid, f"the worker died:\n{worker.log_tail()}"
    assert Counter(r.value for r in dead) == expected_dead, (
        "each bad payload dead-lettered once, with its bytes"
    )
    for record in dead:
        assert record.headers["streamscore.errors.exception.message"], "every dead letter names its reason"
        assert record.headers["streamscore.errors.stage"].decode() in stages_of[record.value]
    assert Counter(orjson.loads(r.value)["event_id"] for r in scored) == Counter(good_ids)
    assert (
        stats["consumed"] == N and stats["scored"] == len(good_ids) and stats["dead_letters_total"] == n_bad
    )
