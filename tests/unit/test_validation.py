"""EventValidator: raw event bytes -> model row, or InvalidEvent with a stage and a reason."""

from __future__ import annotations

import contextlib
import copy
import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import FeatureEvent
from scoring.errors import InvalidEvent, Stage
from scoring.model.features import Feature, FeatureKind, FeatureSpec
from scoring.model.validation import EventValidator
from scoring.offline.synthetic import INVALID_KINDS, agrawal_frame, events_from_frame, invalid_payload

DECODE_KINDS = {"malformed_json", "nan", "infinity", "bad_utf8", "null_value"}

# words a producer would look for in the reason of each invalid kind
REASON_WORDS = {
    "malformed_json": ["malformed JSON"],
    "not_an_object": ["JSON object", "array"],
    "missing_event_id": ["event_id", "missing"],
    "missing_feature": ["salary", "missing"],
    "wrong_type": ["salary", "number", "string"],
    "nan": ["NaN"],
    "infinity": ["Infinity"],
    "bad_utf8": ["UTF-8"],
    "bad_event_time": ["event_time", "RFC 3339"],
    "null_value": ["null"],
}

# a hand-made spec: required and optional, numeric and categorical
SPEC = FeatureSpec(
    features=[
        Feature(name="amount", kind=FeatureKind.numeric),
        Feature(name="score", kind=FeatureKind.numeric, required=False, default=2.5),
        Feature(name="rate", kind=FeatureKind.numeric, required=False),
        Feature(name="color", kind=FeatureKind.categorical, categories=["blue", "green", "red"]),
        Feature(
            name="size", kind=FeatureKind.categorical, required=False, default="m", categories=["l", "m", "s"]
        ),
        Feature(name="member", kind=FeatureKind.categorical, required=False, categories=["false", "true"]),
    ]
)


def _event(features: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "entity_id": "cust-1",
        "event_time": 1_700_000_000_000,
        "features": features,
        **fields,
    }


def _full_features(**overrides: Any) -> dict[str, Any]:
    return {"amount": 10.0, "score": 1.0, "rate": 0.25, "color": "red", "size": "s", **overrides}


@pytest.fixture(scope="module")
def agrawal_events() -> tuple[pd.DataFrame, list[dict]]:
    frame = agrawal_frame(40, seed=21, classification_function=2).drop(columns=["approved"])
    return frame, list(events_from_frame(frame))


def test_valid_event_row_equals_encode_frame_of_the_same_row(agrawal_bundle, agrawal_events) -> None:
    frame, events = agrawal_events
    validator = EventValidator(agrawal_bundle.spec)

    parsed = [validator.parse(orjson.dumps(e)) for e in events]

    np.testing.assert_array_equal(np.array([p.row for p in parsed]), agrawal_bundle.spec.encode_frame(frame))
    assert [p.event_id for p in parsed] == [e["event_id"] for e in events]
    assert [p.entity_id for p in parsed] == [e["entity_id"] for e in events]
    assert [p.event_time_ms for p in parsed] == [e["event_time"] for e in events]


@pytest.mark.parametrize("kind", INVALID_KINDS)
def test_each_invalid_kind_raises_with_its_stage_and_a_reason(
    kind: str, agrawal_bundle, agrawal_events
) -> None:
    _, events = agrawal_events
    payload = invalid_payload(kind, events[0], "salary")

    with pytest.raises(InvalidEvent) as caught:
        EventValidator(agrawal_bundle.spec).parse(payload)

    expected_stage = Stage.decode if kind in DECODE_KINDS else Stage.validate
    assert caught.value.stage is expected_stage
    for word in REASON_WORDS[kind]:
        assert word in caught.value.reason


def test_oversize_message_is_rejected_at_decode_before_parsing() -> None:
    validator = EventValidator(SPEC, max_bytes=100)
    valid_but_big = orjson.dumps(_event(_full_features(), padding="x" * 200))
    malformed_and_big = b"{" * 500

    for payload in (valid_but_big, malformed_and_big):
        with pytest.raises(InvalidEvent) as caught:
            validator.parse(payload)
        assert caught.value.stage is Stage.decode
        assert f"{len(payload)} bytes exceeds the 100 limit" in caught.value.reason


def test_message_at_the_size_limit_is_accepted() -> None:
    payload = orjson.dumps(_event(_full_features()))
    assert EventValidator(SPEC, max_bytes=len(payload)).parse(payload).row[0] == 10.0


def test_unseen_category_maps_to_the_unseen_code_and_is_not_rejected(agrawal_bundle, agrawal_events) -> None:
    _, events = agrawal_events
    spec = agrawal_bundle.spec
    event = {**events[0], "features": {**events[0]["features"], "car": "car-from-the-future"}}

    row = EventValidator(spec).parse(orjson.dumps(event)).row

    car = spec.names.index("car")
    assert row[car] == spec.features[car].unseen_code == len(spec.features[car].categories)


def test_null_or_missing_optional_features_get_their_default() -> None:
    features = {"amount": 3, "score": None, "color": "blue"}  # rate and size missing, score null

    row = EventValidator(SPEC).parse(orjson.dumps(_event(features))).row

    assert row[0] == 3.0
    assert row[1] == 2.5  # the numeric default
    assert math.isnan(row[2])  # no default: missing
    assert row[3] == 0.0  # "blue"
    assert row[4] == 1.0  # default "m" encoded by its category position


@pytest.mark.parametrize("value, state", [(None, "null"), ("absent", "missing")])
def test_null_or_missing_required_feature_is_rejected(value: Any, state: str) -> None:
    features = _full_features(amount=value)
    if value == "absent":
        del features["amount"]

    with pytest.raises(InvalidEvent) as caught:
        EventValidator(SPEC).parse(orjson.dumps(_event(features)))

    assert caught.value.stage is Stage.validate
    assert caught.value.reason == f"required feature 'amount' is {state}"


def test_unknown_features_are_ignored_by_default() -> None:
    payload = orjson.dumps(_event(_full_features(surprise=1.0)))
    expected = EventValidator(SPEC).parse(orjson.dumps(_event(_full_features()))).row

    assert EventValidator(SPEC).parse(payload).row == expected


def test_unknown_features_are_rejected_with_reject_unknown() -> None:
    payload = orjson.dumps(_event(_full_features(surprise=1.0)))

    with pytest.raises(InvalidEvent) as caught:
        EventValidator(SPEC, reject_unknown=True).parse(payload)

    assert caught.value.stage is Stage.validate
    assert "surprise" in caught.value.reason


def test_reject_unknown_also_catches_an_unknown_feature_in_place_of_a_missing_optional_one() -> None:
    features = _full_features(surprise=1.0)
    del features["rate"]  # same number of keys as the spec

    with pytest.raises(InvalidEvent, match="surprise"):
        EventValidator(SPEC, reject_unknown=True).parse(orjson.dumps(_event(features)))


@pytest.mark.parametrize("feature, expected", [("amount", "a number"), ("color", "a string")])
def test_booleans_are_neither_numbers_nor_strings(feature: str, expected: str) -> None:
    payload = orjson.dumps(_event(_full_features(**{feature: True})))

    with pytest.raises(InvalidEvent) as caught:
        EventValidator(SPEC).parse(payload)

    assert caught.value.stage is Stage.validate
    assert caught.value.reason == f"feature {feature!r} must be {expected}, got boolean"


@pytest.mark.parametrize("value, code", [(False, 0.0), (True, 1.0), ("false", 0.0), ("true", 1.0)])
def test_a_two_valued_feature_takes_json_booleans_and_their_names_alike(value: Any, code: float) -> None:
    row = EventValidator(SPEC).parse(orjson.dumps(_event(_full_features(member=value)))).row
    assert row[SPEC.names.index("member")] == code


def test_a_two_valued_feature_refuses_a_number_and_sends_other_strings_down_the_unseen_branch() -> None:
    with pytest.raises(InvalidEvent) as caught:
        EventValidator(SPEC).parse(orjson.dumps(_event(_full_features(member=1))))
    assert caught.value.reason == "feature 'member' must be true, false or a string, got number"

    row = EventValidator(SPEC).parse(orjson.dumps(_event(_full_features(member="yes")))).row
    assert row[SPEC.names.index("member")] == 2.0  # the unseen code, as for any category


def test_an_unknown_feature_may_be_a_boolean_as_the_contract_allows() -> None:
    payload = orjson.dumps(_event(_full_features(newsletter=True)))
    assert EventValidator(SPEC).parse(payload).row[0] == 10.0
    assert FeatureEvent.model_validate_json(payload).features["newsletter"] is True


def test_numbers_are_not_categories() -> None:
    with pytest.raises(InvalidEvent, match="'color' must be a string, got number"):
        EventValidator(SPEC).parse(orjson.dumps(_event(_full_features(color=3))))


@pytest.mark.parametrize(
    "event_time, epoch_ms",
    [
        (1_704_067_200_123, 1_704_067_200_123),
        ("2024-01-01T00:00:00.123Z", 1_704_067_200_123),
        ("2024-01-01T01:30:00.123+01:30", 1_704_067_200_123),
        ("2023-12-31T19:00:00.123-05:00", 1_704_067_200_123),
        ("2026-05-17T08:09:10.011Z", 1_779_005_350_011),
    ],
)
def test_rfc3339_and_epoch_ms_event_time_parse_to_the_same_epoch_ms(event_time: Any, epoch_ms: int) -> None:
    parsed = EventValidator(SPEC).parse(orjson.dumps(_event(_full_features(), event_time=event_time)))
    assert parsed.event_time_ms == epoch_ms


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1)))
# instants that float arithmetic (timestamp() * 1000) rounds one millisecond down
@example(datetime(2004, 8, 9, 21, 35, 34, 567000))
@example(datetime(1987, 2, 1, 0, 0, 0, 4000))
def test_any_millisecond_instant_in_rfc3339_parses_to_its_epoch_ms(instant: datetime) -> None:
    instant = instant.replace(microsecond=instant.microsecond // 1000 * 1000, tzinfo=UTC)
    epoch_ms = (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    text = instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    parsed = EventValidator(SPEC).parse(orjson.dumps(_event(_full_features(), event_time=text)))

    assert parsed.event_time_ms == epoch_ms, text


@pytest.mark.parametrize("event_time", ["yesterday at noon", "", 1.5, True, None, [2024]])
def test_event_time_neither_rfc3339_nor_epoch_ms_is_rejected(event_time: Any) -> None:
    with pytest.raises(InvalidEvent) as caught:
        EventValidator(SPEC).parse(orjson.dumps(_event(_full_features(), event_time=event_time)))
    assert caught.value.stage is Stage.validate
    assert "event_time" in caught.value.reason


@pytest.mark.parametrize("event_time", ["2024-W01-1", "20240101T000000Z", "2024-01-01T00Z"])
def test_iso8601_forms_that_are_not_rfc3339_are_rejected_like_the_contract(event_time: str) -> None:
    payload = orjson.dumps(_event(_full_features(), event_time=event_time))
    with pytest.raises(ValidationError):
        FeatureEvent.model_validate_json(payload)

    accepted = _accepts(EventValidator(SPEC), payload)

    assert not accepted, f"validator accepts event_time {event_time!r}, which FeatureEvent rejects"


@pytest.mark.parametrize(
    "event",
    [
        _event(_full_features(extra=[1, 2])),
        _event(_full_features(extra={"nested": 1})),
        _event(_full_features(), schema_version="two"),
    ],
    ids=["unknown-feature-array", "unknown-feature-object", "schema-version-string"],
)
def test_event_the_contract_rejects_is_not_accepted(event: dict) -> None:
    payload = orjson.dumps(event)
    with pytest.raises(ValidationError):
        FeatureEvent.model_validate_json(payload)

    accepted = _accepts(EventValidator(SPEC), payload)

    assert not accepted, f"validator accepts an event FeatureEvent rejects: {payload!r}"


# --- properties against the published contract -------------------------------------------------

MISSING = object()

json_scalars = st.one_of(
    st.floats(),  # includes nan and +-inf, written as NaN / Infinity literals
    st.integers(),
    st.integers(min_value=2**63, max_value=10**400),
    st.integers(min_value=-(10**400), max_value=-(2**63)),
    st.text(max_size=8),
    st.none(),
    st.booleans(),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)


def _mostly(good: st.SearchStrategy, bad: st.SearchStrategy) -> st.SearchStrategy:
    """``good`` four times in five, so that accepted events are common."""
    return st.integers(0, 4).flatmap(lambda i: good if i else bad)


rfc3339_times = st.builds(
    lambda instant, minutes, zulu: (
        instant.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
        if zulu
        else instant.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat()
    ),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
    st.integers(min_value=-18 * 60 + 1, max_value=18 * 60 - 1),
    st.booleans(),
)
identifiers = _mostly(st.text(min_size=1, max_size=6), st.one_of(st.just(""), json_values, st.just(MISSING)))
event_times = _mostly(
    st.one_of(st.integers(min_value=-(2**53), max_value=2**53), rfc3339_times),
    st.one_of(
        st.sampled_from(["yesterday at noon", "", "2024-13-01T00:00:00Z", "2024-01-01T25:00:00Z"]),
        st.just(MISSING),
    ),
)


def _values_for(feature: Feature) -> st.SearchStrategy:
    if feature.kind is FeatureKind.numeric:
        good = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**53), 2**53))
    elif feature.two_valued:
        good = st.one_of(st.booleans(), st.sampled_from([*feature.categories, "maybe"]))
    else:
        good = st.one_of(st.sampled_from([*feature.categories, "never-seen"]), st.text(max_size=5))
    return _mostly(good, st.one_of(json_values, st.just(MISSING)))


spec_features = st.fixed_dictionaries({f.name: _values_for(f) for f in SPEC.features}).map(
    lambda d: {k: v for k, v in d.items() if v is not MISSING}
)
contract_valid_extras = st.dictionaries(
    st.text(max_size=4).filter(lambda k: k not in SPEC.names),
    st.one_of(
        st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**60), 2**60), st.text(), st.none()
    ),
    max_size=2,
)
any_extras = st.dictionaries(
    st.text(max_size=4).filter(lambda k: k not in SPEC.names), json_values, max_size=2
)


def _build(event_id: Any, entity_id: Any, event_time: Any, features: Any) -> dict:
    fields = {"event_id": event_id, "entity_id": entity_id, "event_time": event_time, "features": features}
    return {k: v for k, v in fields.items() if v is not MISSING}


def _dumps(event: Any) -> bytes:
    return json.dumps(
        event, allow_nan=True
    ).encode()  # NaN / Infinity literals, as a careless producer writes


def _accepts(validator: EventValidator, payload: bytes) -> bool:
    try:
        validator.parse(payload)
    except InvalidEvent:
        return False
    return True


def _contract_accepts(payload: bytes) -> bool:
    try:
        FeatureEvent.model_validate_json(payload)
    except ValidationError:
        return False
    return True


def _finite(number: float) -> bool:
    try:
        return math.isfinite(float(number))
    except OverflowError:  # an integer beyond the float range
        return False


def _spec_types_ok(features: dict) -> bool:
    for feature in SPEC.features:
        value = features.get(feature.name)
        if value is None:
            if feature.required:
                return False
        elif feature.kind is FeatureKind.numeric:
            if type(value) not in (int, float) or not _finite(value):
                return False
        elif type(value) is not str and not (feature.two_valued and type(value) is bool):
            return False
    return True


@given(
    event_id=identifiers,
    entity_id=identifiers,
    event_time=event_times,
    features=st.builds(lambda known, extra: {**extra, **known}, spec_features, contract_valid_extras),
)
def test_validator_accepts_exactly_contract_events_whose_spec_features_have_the_right_type(
    event_id: Any, entity_id: Any, event_time: Any, features: dict
) -> None:
    payload = _dumps(_build(event_id, entity_id, event_time, features))

    expected = _contract_accepts(payload) and _spec_types_ok(features)

    assert _accepts(EventValidator(SPEC), payload) == expected


@given(
    event_id=identifiers,
    entity_id=identifiers,
    event_time=_mostly(event_times, st.one_of(json_values, st.text(max_size=30))),
    features=_mostly(
        st.builds(lambda known, extra: {**extra, **known}, spec_features, any_extras), json_values
    ),
    extra_fields=st.dictionaries(st.sampled_from(["schema_version", "source", "x"]), json_values, max_size=2),
)
@example(  # an unknown feature holding an array
    event_id="e",
    entity_id="c",
    event_time=1,
    features={"amount": 1.0, "color": "red", "x": [1]},
    extra_fields={},
)
def test_anything_the_validator_accepts_is_a_valid_feature_event(
    event_id: Any, entity_id: Any, event_time: Any, features: Any, extra_fields: dict
) -> None:
    payload = _dumps({**extra_fields, **_build(event_id, entity_id, event_time, features)})

    if _accepts(EventValidator(SPEC), payload):
        assert _contract_accepts(payload), payload


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_nothing_but_invalid_event(payload: bytes) -> None:
    try:
        EventValidator(SPEC).parse(payload)
    except InvalidEvent as exc:
        assert exc.stage in (Stage.decode, Stage.validate)


@given(json_values, st.text(max_size=40))
def test_arbitrary_json_raises_nothing_but_invalid_event(value: Any, event_time: str) -> None:
    validator = EventValidator(SPEC, reject_unknown=True)
    for candidate in (value, _event(value), _event(_full_features(), event_time=event_time)):
        with contextlib.suppress(InvalidEvent):
            validator.parse(_dumps(candidate))


@given(features=st.builds(lambda known, extra: {**extra, **known}, spec_features, contract_valid_extras))
def test_parse_and_row_do_not_mutate_their_input(features: dict) -> None:
    validator = EventValidator(SPEC)
    before = copy.deepcopy(features)
    payload = bytearray(_dumps(_event(features)))
    payload_before = bytes(payload)

    for call in (lambda: validator.row(features), lambda: validator.parse(payload)):
        with contextlib.suppress(InvalidEvent):
            call()

    assert features == before
    assert bytes(payload) == payload_before
