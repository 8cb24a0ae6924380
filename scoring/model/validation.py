"""Decode one raw feature event and check it against a model's feature spec.

This is the hot path: it runs once per Kafka message, so it is written with
plain type checks over a precompiled plan rather than a pydantic model. The
``schemas.FeatureEvent`` model is the published contract; tests hold the two in
agreement.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter

import orjson

from schemas.messages import EPOCH_MS_MAX, MAX_IDENTIFIER_LENGTH
from scoring.errors import InvalidEvent, Stage
from scoring.model.features import FeatureKind, FeatureSpec, category_name

_NAN = math.nan
_MISSING = object()
_NUMBERS = (int, float)
_NUMBER_TYPES = frozenset({int, float})
_VALUE_TYPES = frozenset({int, float, str, bool, type(None)})  # what the contract allows any feature
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?")


@dataclass(frozen=True, slots=True)
class _Slot:
    """How one feature's value becomes a float in the model row."""

    name: str
    numeric: bool
    required: bool
    default: float
    codes: dict[str, float]
    unseen: float
    two_valued: bool  # a boolean feature: JSON true/false are its categories "true"/"false"


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    event_id: str
    entity_id: str
    event_time_ms: int
    row: list[float]


class EventValidator:
    """Turns raw event bytes into a model row, or raises ``InvalidEvent`` with a reason."""

    def __init__(self, spec: FeatureSpec, reject_unknown: bool = False, max_bytes: int = 1_000_000) -> None:
        self.spec = spec
        self.reject_unknown = reject_unknown
        self.max_bytes = max_bytes
        self._slots = tuple(_slot(f) for f in spec.features)
        self._names = frozenset(spec.names)
        # All-numeric specs take a C-level fast path when every feature is present
        # and a number; anything else falls through to the per-slot checks.
        numeric = all(slot.numeric for slot in self._slots) and len(self._slots) > 1
        self._get_all = itemgetter(*spec.names) if numeric else None

    def parse(self, value: bytes | None) -> ParsedEvent:
        return ParsedEvent(*self.fields(value))

    def fields(self, value: bytes | None) -> tuple[str, str, int, list[float]]:
        """``parse`` as a tuple (event id, entity id, event time, row): the score step's loop takes it
        without an object per event."""
        event = self.decode(value)
        event_id = event.get("event_id", _MISSING)
        entity_id = event.get("entity_id", _MISSING)
        event_time = event.get("event_time", _MISSING)
        # the common case in one test; anything unusual takes the checks that name the problem
        if not (
            type(event_id) is str
            and 0 < len(event_id) <= MAX_IDENTIFIER_LENGTH
            and type(entity_id) is str
            and 0 < len(entity_id) <= MAX_IDENTIFIER_LENGTH
        ):
            event_id, entity_id = _identifier(event, "event_id"), _identifier(event, "entity_id")
        if type(event_time) is not int or not 0 <= event_time <= EPOCH_MS_MAX:
            event_time = _event_time(event_time)
        if "schema_version" in event and type(event["schema_version"]) is not int:
            raise InvalidEvent(
                Stage.validate, f"schema_version must be an integer, got {event['schema_version']!r:.40}"
            )
        return event_id, entity_id, event_time, self.row(event.get("features", _MISSING))

    def decode(self, value: bytes | None) -> dict:
        if value is None:
            raise InvalidEvent(Stage.decode, "empty message (null value)")
        if len(value) > self.max_bytes:
            raise InvalidEvent(
                Stage.decode, f"message of {len(value)} bytes exceeds the {self.max_bytes} limit"
            )
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent(Stage.decode, _decode_reason(value, exc)) from None
        if type(event) is not dict:
            raise InvalidEvent(Stage.validate, f"event must be a JSON object, got {_json_type(event)}")
        return event

    def row(self, features: object) -> list[float]:
        """The model row for a ``features`` object, in spec order."""
        if type(features) is not dict:
            if features is _MISSING:
                raise InvalidEvent(Stage.validate, "missing required field 'features'")
            raise InvalidEvent(Stage.validate, f"'features' must be an object, got {_json_type(features)}")
        if self._get_all is not None and len(features) == len(self._slots):
            try:
                values = self._get_all(features)
            except KeyError:
                values = None
            # orjson gives ints within 64 bits, so every int converts to float exactly enough
            if values is not None and set(map(type, values)) <= _NUMBER_TYPES:
                return list(values)
        row: list[float] = []
        append = row.append
        absent = 0
        for slot in self._slots:
            value = features.get(slot.name, _MISSING)
            kind = type(value)
            if slot.numeric:
                if kind is float:
                    append(value)
                    continue
                if kind is int:
                    append(_int_to_float(slot.name, value))
                    continue
            elif kind is str:
                append(slot.codes.get(value, slot.unseen))
                continue
            elif kind is bool and slot.two_valued:
                append(slot.codes["true" if value else "false"])
                continue
            if value is None or value is _MISSING:
                absent += value is _MISSING
                if slot.required:
                    state = "null" if value is None else "missing"
                    raise InvalidEvent(Stage.validate, f"required feature {slot.name!r} is {state}")
                append(slot.default)
                continue
            expected = (
                "a number" if slot.numeric else "true, false or a string" if slot.two_valued else "a string"
            )
            raise InvalidEvent(
                Stage.validate, f"feature {slot.name!r} must be {expected}, got {_json_type(value)}"
            )
        if len(features) + absent != len(self._slots):
            self._check_unknown(features)
        return row

    def _check_unknown(self, features: dict) -> None:
        """Features the model does not take: rejected by setting, else only type-checked."""
        unknown = features.keys() - self._names
        if not unknown:
            return
        if self.reject_unknown:
            raise InvalidEvent(Stage.validate, f"unknown features {sorted(unknown)[:10]}")
        for name in unknown:
            if type(features[name]) not in _VALUE_TYPES:
                got = _json_type(features[name])
                raise InvalidEvent(
                    Stage.validate, f"feature {name!r} must be a number, string, boolean or null, got {got}"
                )


def _slot(feature) -> _Slot:
    numeric = feature.kind is FeatureKind.numeric
    codes = {c: float(i) for i, c in enumerate(feature.categories)}
    if feature.default is None:
        default = _NAN
    elif numeric:
        default = float(feature.default)
    else:
        default = codes.get(category_name(feature.default), float(feature.unseen_code))
    unseen = float(feature.unseen_code)
    return _Slot(feature.name, numeric, feature.required, default, codes, unseen, feature.two_valued)


def _decode_reason(value: bytes, exc: orjson.JSONDecodeError) -> str:
    if (b"NaN" in value or b"Infinity" in value) and "unexpected character" in str(exc):
        return f"NaN or Infinity is not a valid JSON number ({exc})"
    return f"malformed JSON: {exc}"


def _identifier(event: dict, field: str) -> str:
    value = event.get(field, _MISSING)
    if type(value) is str and value:
        if len(value) > MAX_IDENTIFIER_LENGTH:
            raise InvalidEvent(
                Stage.validate, f"{field!r} is {len(value)} characters long, over {MAX_IDENTIFIER_LENGTH}"
            )
        return value
    if value is _MISSING:
        raise InvalidEvent(Stage.validate, f"missing required field {field!r}")
    raise InvalidEvent(Stage.validate, f"{field!r} must be a non-empty string, got {_json_type(value)}")


def _event_time(value: object) -> int:
    """Epoch milliseconds from an RFC 3339 string or an epoch-milliseconds integer, 1970 to the year 3000."""
    if type(value) is int:
        if 0 <= value <= EPOCH_MS_MAX:
            return value
        raise InvalidEvent(Stage.validate, f"event_time {value} is out of range (epoch ms from 1970 to 3000)")
    if type(value) is str:
        try:
            if not _RFC3339.fullmatch(value):
                raise ValueError
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEvent(Stage.validate, f"event_time {value[:40]!r} is not RFC 3339") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return _event_time((parsed - _EPOCH) // _MILLISECOND)
    if value is _MISSING:
        raise InvalidEvent(Stage.validate, "missing required field 'event_time'")
    raise InvalidEvent(
        Stage.validate, f"event_time must be RFC 3339 or epoch milliseconds, got {_json_type(value)}"
    )


def _int_to_float(name: str, value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        raise InvalidEvent(Stage.validate, f"feature {name!r} is out of the float range") from None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, _NUMBERS):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
