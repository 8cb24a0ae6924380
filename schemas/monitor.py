"""The codec of ``monitor``: a ``MonitorBatch`` message's bytes to numpy columns, every field bounded.

``decode_monitor`` is the fast path of ``MonitorBatch.model_validate_json``: it accepts
exactly what the pydantic model accepts (tests hold the two equal) and returns the columns
the drift and learn roles compute on. What it refuses raises ``MonitorRejected`` with a
reason; it never raises anything else on any input.

A multiclass model's records (``schema_version`` 2) add ``classes`` and ``probabilities``, decoded
to ``MonitorColumns.classes`` and an events x classes array; records of other models have neither.
In shadow mode they may add ``shadow_probabilities``: the challenger's, a row of nulls (NaN) where it
failed.

Times may be bounded further against the record's own broker timestamp: an event time more
than ``max_skew_ms`` past it is clamped there (``clamped`` counts them), so one event with a
clock far ahead cannot move the event-time clock of a window or of the label join.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import chain

import numpy as np
import orjson

from schemas.messages import (
    EPOCH_MS_MAX,
    INT64_MAX,
    MAX_IDENTIFIER_LENGTH,
    MULTICLASS_SCHEMA_VERSION,
    SCHEMA_VERSION,
)

MAX_MONITOR_BYTES = 4_000_000

_REQUIRED = {
    "model_name",
    "model_version",
    "source_topic",
    "partition",
    "offsets",
    "event_ids",
    "entity_ids",
    "event_times",
    "scores",
    "feature_names",
    "rows",
}
_OPTIONAL = {"shadow_model_name", "shadow_model_version", "shadow_scores", "schema_version"}
_OPTIONAL |= {"classes", "probabilities", "shadow_probabilities"}  # multiclass
_NUMBER = {int, float}
_CELL = {int, float, type(None)}


class MonitorRejected(ValueError):
    """A monitoring record that is not a well-formed ``MonitorBatch``."""


@dataclass(frozen=True, slots=True)
class MonitorColumns:
    """Scored events of one monitoring message, in columns (row i of each is one event)."""

    model_name: str
    model_version: str
    source_topic: str
    partition: int
    offsets: Sequence[int]
    event_ids: Sequence[str]
    event_times: Sequence[int]
    scores: np.ndarray
    rows: np.ndarray  # events x features, encoded model inputs, NaN = missing
    shadow_model: str | None = None  # "name:version" of a challenger scoring in shadow mode
    shadow_scores: np.ndarray | None = None  # its score per row, NaN where it failed
    feature_names: Sequence[str] = ()
    clamped: int = 0  # event times brought back to the record's timestamp + skew
    classes: Sequence[str] = ()  # multiclass: the class names as text, in the model's order
    probabilities: np.ndarray | None = None  # multiclass: events x classes, each class's probability
    shadow_probabilities: np.ndarray | None = None  # multiclass shadow: the challenger's, NaN where it failed

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, start: int, stop: int) -> MonitorColumns:
        return MonitorColumns(
            self.model_name,
            self.model_version,
            self.source_topic,
            self.partition,
            self.offsets[start:stop],
            self.event_ids[start:stop],
            self.event_times[start:stop],
            self.scores[start:stop],
            self.rows[start:stop],
            self.shadow_model,
            None if self.shadow_scores is None else self.shadow_scores[start:stop],
            self.feature_names,
            classes=self.classes,
            probabilities=None if self.probabilities is None else self.probabilities[start:stop],
            shadow_probabilities=None
            if self.shadow_probabilities is None
            else self.shadow_probabilities[start:stop],
        )


def decode_monitor(
    value: bytes | None, record_time_ms: int | None = None, max_skew_ms: int | None = None
) -> MonitorColumns:
    """The columns of one ``MonitorBatch`` message, or ``MonitorRejected`` saying what is wrong."""
    if value is None:
        raise MonitorRejected("empty message (null value)")
    if len(value) > MAX_MONITOR_BYTES:
        raise MonitorRejected(f"message of {len(value)} bytes exceeds {MAX_MONITOR_BYTES}")
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise MonitorRejected(f"not JSON: {exc}") from None
    if type(body) is not dict:
        raise MonitorRejected("not a JSON object")
    missing, unknown = _REQUIRED - body.keys(), body.keys() - _REQUIRED - _OPTIONAL
    if missing or unknown:
        raise MonitorRejected(f"fields missing {sorted(missing)[:5]}, unknown {sorted(unknown)[:5]}")
    version = body.get("schema_version", SCHEMA_VERSION)
    if type(version) is not int or version not in (SCHEMA_VERSION, MULTICLASS_SCHEMA_VERSION):
        raise MonitorRejected(f"schema_version must be {SCHEMA_VERSION} or {MULTICLASS_SCHEMA_VERSION}")
    names = _strings(body, "feature_names")
    n = len(_list(body, "scores"))
    event_ids = _strings(body, "event_ids", n)
    _strings(body, "entity_ids", n)
    offsets = _integers(body, "offsets", n, INT64_MAX)
    times = _integers(body, "event_times", n, EPOCH_MS_MAX)
    scores = _finite(body, "scores", n)
    rows = _rows(body, n, len(names))
    shadow_model, shadow_scores = _shadow(body, n)
    classes, probabilities = _classes(body, n, version == MULTICLASS_SCHEMA_VERSION)
    shadow_probabilities = _shadow_probabilities(body, n, len(classes))
    if shadow_model is None:  # probabilities of no named challenger: nothing to measure them with
        shadow_probabilities = None
    partition = body["partition"]
    if type(partition) is not int or not 0 <= partition < 2**31:
        raise MonitorRejected("partition must be an integer in [0, 2^31)")
    columns = MonitorColumns(
        model_name=_identifier(body, "model_name"),
        model_version=_identifier(body, "model_version"),
        source_topic=_identifier(body, "source_topic"),
        partition=partition,
        offsets=offsets,
        event_ids=event_ids,
        event_times=times,
        scores=scores,
        rows=rows,
        shadow_model=shadow_model,
        shadow_scores=shadow_scores,
        feature_names=names,
        classes=classes,
        probabilities=probabilities,
        shadow_probabilities=shadow_probabilities,
    )
    return clamp_times(columns, record_time_ms, max_skew_ms)


def clamp_times(
    columns: MonitorColumns, record_time_ms: int | None, max_skew_ms: int | None
) -> MonitorColumns:
    """``columns`` with every event time more than ``max_skew_ms`` past the record's broker timestamp
    brought back to it, ``clamped`` counting them (``columns`` itself when none is)."""
    times = columns.event_times
    if record_time_ms is None or max_skew_ms is None or not len(times):
        return columns
    limit = record_time_ms + max_skew_ms
    if max(times) <= limit:
        return columns
    clamped = sum(t > limit for t in times)
    return replace(columns, event_times=[min(t, limit) for t in times], clamped=clamped)


def _list(body: dict, name: str, n: int | None = None) -> list:
    values = body[name]
    if type(values) is not list:
        raise MonitorRejected(f"{name} must be a list")
    if n is not None and len(values) != n:
        raise MonitorRejected(f"{name} has {len(values)} entries for {n} scores")
    return values


def _identifier(body: dict, name: str) -> str:
    value = body[name]
    if type(value) is not str or not 0 < len(value) <= MAX_IDENTIFIER_LENGTH:
        raise MonitorRejected(f"{name} must be a string of 1 to {MAX_IDENTIFIER_LENGTH} characters")
    return value


def _strings(body: dict, name: str, n: int | None = None) -> list[str]:
    values = _list(body, name, n)
    if not set(map(type, values)) <= {str} or not all(0 < len(v) <= MAX_IDENTIFIER_LENGTH for v in values):
        raise MonitorRejected(f"{name} must hold strings of 1 to {MAX_IDENTIFIER_LENGTH} characters")
    return values


def _integers(body: dict, name: str, n: int, upper: int) -> list[int]:
    values = _list(body, name, n)
    if not set(map(type, values)) <= {int} or (values and not (min(values) >= 0 and max(values) <= upper)):
        raise MonitorRejected(f"{name} must hold integers in [0, {upper}]")
    return values


def _finite(body: dict, name: str, n: int) -> np.ndarray:
    values = _list(body, name, n)
    if not set(map(type, values)) <= _NUMBER:
        raise MonitorRejected(f"{name} must hold numbers")
    try:
        array = np.asarray(values, dtype=float)
    except OverflowError:
        raise MonitorRejected(f"{name} holds a number out of the float range") from None
    if not np.isfinite(array).all():
        raise MonitorRejected(f"{name} must be finite")
    return array


def _rows(body: dict, n: int, width: int) -> np.ndarray:
    rows = _list(body, "rows", n)
    if not set(map(type, rows)) <= {list} or any(len(row) != width for row in rows):
        raise MonitorRejected(f"rows must be {n} lists of {width} values (one per feature name)")
    if not set(map(type, chain.from_iterable(rows))) <= _CELL:
        raise MonitorRejected("row values must be numbers or null")
    try:
        array = np.array(rows, dtype=float).reshape(n, width)
    except OverflowError:
        raise MonitorRejected("a row value is out of the float range") from None
    if np.isinf(array).any():  # None became NaN (missing); infinity is not a value
        raise MonitorRejected("row values must be finite")
    return array


def _shadow(body: dict, n: int) -> tuple[str | None, np.ndarray | None]:
    scores = body.get("shadow_scores")
    name, version = body.get("shadow_model_name"), body.get("shadow_model_version")
    for field_name, value in (("shadow_model_name", name), ("shadow_model_version", version)):
        if value is not None and (type(value) is not str or not 0 < len(value) <= MAX_IDENTIFIER_LENGTH):
            raise MonitorRejected(f"{field_name} must be a string of 1 to {MAX_IDENTIFIER_LENGTH} characters")
    if scores is None:
        return None, None
    values = _list(body, "shadow_scores", n)
    if not set(map(type, values)) <= _CELL:
        raise MonitorRejected("shadow_scores must hold numbers or null")
    try:
        array = np.array(values, dtype=float)
    except OverflowError:
        raise MonitorRejected("a shadow score is out of the float range") from None
    if np.isinf(array).any():
        raise MonitorRejected("shadow_scores must be finite or null")
    if name is None or version is None:  # scores of no named challenger: nothing to compare them with
        return None, None
    return f"{name}:{version}", array


def _classes(body: dict, n: int, multiclass: bool) -> tuple[list[str], np.ndarray | None]:
    """A multiclass record's class names and its events x classes probabilities; none in another."""
    if not multiclass:
        if body.get("classes") is not None or body.get("probabilities") is not None:
            raise MonitorRejected("classes and probabilities come in schema_version 2 only")
        return [], None
    if body.get("classes") is None or body.get("probabilities") is None:
        raise MonitorRejected("a record of schema_version 2 has classes and probabilities")
    classes = _strings(body, "classes")
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise MonitorRejected("classes must name at least 2 distinct classes")
    rows = _list(body, "probabilities", n)
    width = len(classes)
    if not set(map(type, rows)) <= {list} or any(len(row) != width for row in rows):
        raise MonitorRejected(f"probabilities must be {n} lists of {width} numbers (one per class)")
    if not set(map(type, chain.from_iterable(rows))) <= _NUMBER:
        raise MonitorRejected("probabilities must hold numbers")
    try:
        array = np.array(rows, dtype=float).reshape(n, width)
    except OverflowError:
        raise MonitorRejected("a probability is out of the float range") from None
    if not np.isfinite(array).all():
        raise MonitorRejected("probabilities must be finite")
    return classes, array


def _shadow_probabilities(body: dict, n: int, width: int) -> np.ndarray | None:
    """A multiclass shadow challenger's events x classes probabilities (NaN rows where it failed)."""
    if body.get("shadow_probabilities") is None:
        return None
    if not width or body.get("shadow_scores") is None:
        raise MonitorRejected("shadow_probabilities come with shadow_scores, in schema_version 2 only")
    rows = _list(body, "shadow_probabilities", n)
    if not set(map(type, rows)) <= {list, type(None)} or any(
        row is not None and len(row) != width for row in rows
    ):
        raise MonitorRejected(f"shadow_probabilities must be {n} lists of {width} numbers or null")
    values = [v for row in rows if row is not None for v in row]
    if not set(map(type, values)) <= _NUMBER:
        raise MonitorRejected("shadow_probabilities must hold numbers")
    nan = [float("nan")] * width
    try:
        array = np.array([nan if row is None else row for row in rows], dtype=float).reshape(n, width)
    except OverflowError:
        raise MonitorRejected("a shadow probability is out of the float range") from None
    if np.isinf(array).any():  # JSON has no NaN: a NaN row is a null
        raise MonitorRejected("shadow_probabilities must be finite")
    return array
