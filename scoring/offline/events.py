"""A table's rows as feature events and labels: its own ids, entities and times, or invented ones.

``TableKeys`` names the columns that hold each row's event id, entity id and time; what it
does not name is invented, the same way for events and for labels (row ``i``: event id
``PREFIX-i``, entity ``cust-{i % 1000}``, time ``now + i`` steps), so the labels of a table
match the events produced from it. ``invented`` says in one line what was made up.

Times are epoch milliseconds, ISO 8601 text (no zone: UTC) or a datetime column. Every
refusal is a ``ConfigError`` naming the column, the row (1 = the first data row) and the
value, never a pandas traceback.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from schemas.messages import EPOCH_MS_MAX, MAX_IDENTIFIER_LENGTH
from scoring.errors import ConfigError

N_ENTITIES = 1000  # invented entity ids cycle through cust-0 .. cust-999
FLAGS = ("--id-column", "--entity-column", "--time-column")  # the command line's names of the columns
SECONDS_LIKE = 100_000_000_000  # epoch ms below this are before March 1973: epoch seconds, surely


@dataclass(frozen=True)
class TableKeys:
    """Which columns hold the event id, entity id and time of each row (None: invented)."""

    id_column: str | None = None
    entity_column: str | None = None
    time_column: str | None = None
    prefix: str = "evt"

    def columns(self) -> list[str]:
        return [c for c in (self.id_column, self.entity_column, self.time_column) if c]

    def check(self, frame: pd.DataFrame, source: str) -> None:
        for flag, column in zip(FLAGS, _named(self), strict=True):
            if column and column not in frame.columns:
                have = ", ".join(map(str, frame.columns[:12])) + (", ..." if len(frame.columns) > 12 else "")
                raise ConfigError(f"{source} has no column {column!r} ({flag}); its columns: {have}")


def invented(
    keys: TableKeys, now_ms: int, step_ms: float, what: str = "event", hint: bool = True
) -> str | None:
    """One line saying what is made up for the rows (None: nothing is), and the flags that would not."""
    step = "N ms" if step_ms == 1 else f"N x {step_ms:g} ms"
    made = {
        FLAGS[0]: f"event ids {keys.prefix}-0.." if not keys.id_column else None,
        FLAGS[1]: f"entity ids cust-0..cust-{N_ENTITIES - 1}" if not keys.entity_column else None,
        FLAGS[2]: f"{what} times now + {step} ({iso_ms(now_ms)} on)" if not keys.time_column else None,
    }
    if what == "label" and keyed_by_event(keys):
        made[FLAGS[1]] = None  # no entity at all: the labels are keyed by event id
    flags = [flag for flag, thing in made.items() if thing]
    if not flags:
        return None
    take = "take" if len(flags) > 1 else "takes"
    said = f"inventing {', '.join(t for t in made.values() if t)}"
    return said + (f"; {', '.join(flags)} {take} the table's own" if hint else "")


def _named(keys: TableKeys) -> tuple[str | None, str | None, str | None]:
    return keys.id_column, keys.entity_column, keys.time_column


def events_from_table(
    frame: pd.DataFrame, keys: TableKeys, now_ms: int, step_ms: float = 1.0, source: str = "the table"
) -> Iterator[dict]:
    """A feature event per row; the key columns are not features. NaN cells become null."""
    keys.check(frame, source)
    ids = event_ids(frame, keys, source)
    entities = entity_ids(frame, keys, source)
    times = row_times(frame, keys, now_ms, step_ms, source)
    features = frame.drop(columns=keys.columns())
    names = list(features.columns)
    for i, values in enumerate(features.itertuples(index=False, name=None)):
        yield {
            "event_id": ids[i],
            "entity_id": entities[i],
            "event_time": times[i],
            "features": {c: (None if _missing(v) else v) for c, v in zip(names, values, strict=True)},
        }


def labels_from_table(
    frame: pd.DataFrame,
    keys: TableKeys,
    label_column: str,
    now_ms: int,
    step_ms: float = 1.0,
    source: str = "the table",
) -> tuple[list[tuple[str, dict]], int]:
    """``(Kafka key, Label body)`` per labelled row, and how many rows had no label (left out).

    Keyed by entity id (docs/scaling.md), the table's or the invented one; by event id only
    when the table's own event ids come without its entities (see ``keyed_by_event``).
    """
    keys.check(frame, source)
    if label_column not in frame.columns:
        raise ConfigError(f"{source} has no column {label_column!r} (--label-column)")
    ids = event_ids(frame, keys, source)
    owners = ids if keyed_by_event(keys) else entity_ids(frame, keys, source)
    times = row_times(frame, keys, now_ms, step_ms, source)
    labels = label_values(frame[label_column], label_column)
    out = [
        (owners[i], {"event_id": ids[i], "label": labels[i], "label_time": times[i]})
        for i in range(len(frame))
        if not math.isnan(labels[i])
    ]
    return out, len(frame) - len(out)


def keyed_by_event(keys: TableKeys) -> bool:
    """Labels of the table's own event ids with no entity column: the entity is unknown."""
    return bool(keys.id_column) and not keys.entity_column


def event_ids(frame: pd.DataFrame, keys: TableKeys, source: str) -> list[str]:
    if not keys.id_column:
        return [f"{keys.prefix}-{i}" for i in range(len(frame))]
    ids = identifiers(frame[keys.id_column], keys.id_column)
    seen: dict[str, int] = {}
    for row, value in enumerate(ids, start=1):
        if value in seen:
            raise ConfigError(
                f"{source}: column {keys.id_column!r} holds {value!r} in rows {seen[value]} and {row}; "
                "event ids must be unique (consumers deduplicate predictions on them)"
            )
        seen[value] = row
    return ids


def entity_ids(frame: pd.DataFrame, keys: TableKeys, source: str) -> list[str]:
    if not keys.entity_column:
        return [f"cust-{i % N_ENTITIES}" for i in range(len(frame))]
    return identifiers(frame[keys.entity_column], keys.entity_column)


def row_times(frame: pd.DataFrame, keys: TableKeys, now_ms: int, step_ms: float, source: str) -> list[int]:
    if not keys.time_column:
        return [now_ms + round(i * step_ms) for i in range(len(frame))]
    return epoch_ms(frame[keys.time_column], keys.time_column)


def identifiers(column: pd.Series, name: str) -> list[str]:
    """The column as text ids: none missing, none empty or longer than the service takes."""
    if column.isna().any():
        raise ConfigError(f"column {name!r} has no value in row {_first(column.isna())}; every row needs one")
    ids = [str(v) for v in column.tolist()]
    for row, value in enumerate(ids, start=1):
        if not 1 <= len(value) <= MAX_IDENTIFIER_LENGTH:
            raise ConfigError(
                f"column {name!r} row {row}: an id must be 1 to {MAX_IDENTIFIER_LENGTH} characters, "
                f"this one has {len(value)}"
            )
    return ids


def epoch_ms(column: pd.Series, name: str) -> list[int]:
    """Epoch milliseconds of a time column: epoch ms numbers, ISO 8601 text, or datetimes."""
    if column.isna().any():
        raise ConfigError(f"column {name!r} has no time in row {_first(column.isna())}; every row needs one")
    if pd.api.types.is_bool_dtype(column):
        raise ConfigError(f"column {name!r} holds true/false, not times")
    if pd.api.types.is_numeric_dtype(column):
        values = column.to_numpy(dtype=np.float64)
        whole = np.isfinite(values) & (values == np.floor(values))
        if not whole.all():
            row = _first(~whole)
            raise ConfigError(
                f"column {name!r} row {row}: {column.iloc[row - 1]} is not whole epoch milliseconds"
            )
        ms = values.astype(np.int64)
    else:
        ms = _parsed_ms(column, name)
    low, high = ms < SECONDS_LIKE, ms > EPOCH_MS_MAX
    if low.any():
        raise ConfigError(
            f"column {name!r} row {_first(low)}: {ms[low][0]} is before March 1973 as epoch milliseconds; "
            "epoch seconds? give milliseconds (seconds x 1000) or ISO 8601 times"
        )
    if high.any():
        raise ConfigError(f"column {name!r} row {_first(high)}: {ms[high][0]} ms is after the year 3000")
    return ms.tolist()


def _parsed_ms(column: pd.Series, name: str) -> np.ndarray:
    """Datetimes (naive ones taken as UTC) or ISO 8601 text, to epoch milliseconds."""
    if pd.api.types.is_datetime64_any_dtype(column):
        moments = column.dt.tz_localize("UTC") if column.dt.tz is None else column.dt.tz_convert("UTC")
    else:
        moments = pd.to_datetime(column, utc=True, format="ISO8601", errors="coerce")
        if moments.isna().any():
            row = _first(moments.isna())
            raise ConfigError(
                f"column {name!r} row {row}: {str(column.iloc[row - 1])[:60]!r} is not a time; give epoch "
                "milliseconds or ISO 8601 (2024-05-01T12:00:00Z)"
            )
    return ((moments - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).to_numpy(dtype=np.int64)


def label_values(column: pd.Series, name: str) -> list[float]:
    """Labels as finite numbers (true/false as 1/0); a missing label is NaN."""
    numbers = pd.to_numeric(column.astype(object).where(column.notna(), None), errors="coerce")
    bad = numbers.isna() & column.notna()
    if bad.any():
        row = _first(bad)
        raise ConfigError(
            f"column {name!r} row {row}: {str(column.iloc[row - 1])[:60]!r} is not a number; labels are "
            "numbers (0/1 for a binary model)"
        )
    values = numbers.to_numpy(dtype=np.float64)
    infinite = np.isinf(values)
    if infinite.any():
        raise ConfigError(f"column {name!r} row {_first(infinite)}: a label must be a finite number")
    return values.tolist()


def iso_ms(epoch_ms_value: int) -> str:
    """``2024-05-01T12:00:00.000Z``."""
    moment = datetime.fromtimestamp(epoch_ms_value / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms_value % 1000:03d}Z"


def _first(mask) -> int:
    """The first row (1 = the first data row) where ``mask`` holds."""
    return int(np.flatnonzero(np.asarray(mask))[0]) + 1


def _missing(value: object) -> bool:
    return isinstance(value, float) and value != value
