"""A table's rows as events and labels: its own ids, entities and times, or invented ones (issue 32)."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from schemas.messages import FeatureEvent, Label
from scoring.errors import ConfigError
from scoring.offline.events import TableKeys, epoch_ms, events_from_table, invented, labels_from_table

NOW = 1_780_000_000_000  # 2026-05-28T...Z
CSV = """\
id,customer,at,income,band,ok
a1,c9,2024-05-01T12:00:00Z,10.5,x,1
a2,c3,2024-05-01 12:00:01.250,,y,0
a3,c9,2024-05-01T14:00:02+02:00,7,x,
"""


def _frame() -> pd.DataFrame:
    return pd.read_csv(io.StringIO(CSV))


def test_the_tables_columns_give_each_events_id_entity_and_time_and_are_not_features() -> None:
    keys = TableKeys("id", "customer", "at")
    events = list(events_from_table(_frame().drop(columns=["ok"]), keys, NOW))

    assert [(e["event_id"], e["entity_id"], e["event_time"]) for e in events] == [
        ("a1", "c9", 1714564800000),
        ("a2", "c3", 1714564801250),  # no zone: UTC
        ("a3", "c9", 1714564802000),  # +02:00 to UTC
    ]
    assert events[1]["features"] == {"income": None, "band": "y"}
    assert all(FeatureEvent.model_validate(e) for e in events)
    assert invented(keys, NOW, 1.0) is None


def test_what_is_not_named_is_invented_from_now_and_said_in_one_line() -> None:
    keys = TableKeys(time_column="at")
    events = list(events_from_table(_frame(), keys, NOW))
    assert [(e["event_id"], e["entity_id"]) for e in events] == [(f"evt-{i}", f"cust-{i}") for i in range(3)]
    assert invented(keys, NOW, 1.0) == (
        "inventing event ids evt-0.., entity ids cust-0..cust-999; "
        "--id-column, --entity-column take the table's own"
    )

    paced = list(events_from_table(_frame(), TableKeys(prefix="run"), NOW, step_ms=250.0))
    assert [e["event_time"] for e in paced] == [NOW, NOW + 250, NOW + 500]
    assert [e["event_id"] for e in paced] == ["run-0", "run-1", "run-2"]
    assert invented(TableKeys(), NOW, 250.0) == (
        "inventing event ids evt-0.., entity ids cust-0..cust-999, event times now + N x 250 ms "
        "(2026-05-28T20:26:40.000Z on); --id-column, --entity-column, --time-column take the table's own"
    )


def test_times_as_epoch_ms_iso_text_or_datetimes_agree() -> None:
    iso = pd.Series(["2024-05-01T12:00:00.5Z", "2024-05-01T12:00:01Z"])
    as_ms = pd.Series([1714564800500, 1714564801000])
    aware = pd.to_datetime(iso, utc=True, format="ISO8601")
    naive = aware.dt.tz_localize(None).astype("datetime64[us]")
    assert epoch_ms(iso, "t") == epoch_ms(as_ms, "t") == epoch_ms(aware, "t") == epoch_ms(naive, "t")
    assert epoch_ms(as_ms, "t") == [1714564800500, 1714564801000]


@pytest.mark.parametrize(
    ("values", "says"),
    [
        (["2024-05-01T12:00:00Z", "yesterday"], "column 't' row 2: 'yesterday' is not a time"),
        (
            [1714564800, 1714564801],
            "row 1: 1714564800 is before March 1973 as epoch milliseconds; epoch seconds?",
        ),
        ([1714564800000.5], "row 1: 1714564800000.5 is not whole epoch milliseconds"),
        (["2024-05-01T12:00:00Z", None], "column 't' has no time in row 2"),
        ([True, False], "column 't' holds true/false, not times"),
        ([40_000_000_000_000], "row 1: 40000000000000 ms is after the year 3000"),
    ],
)
def test_a_bad_time_is_refused_naming_the_column_row_and_value(values: list, says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("?", r"\?").replace("(", r"\(")):
        epoch_ms(pd.Series(values), "t")


def test_ids_must_be_present_short_and_unique() -> None:
    frame = _frame()
    with pytest.raises(
        ConfigError, match="column 'customer' holds 'c9' in rows 1 and 3; event ids must be unique"
    ):
        list(events_from_table(frame, TableKeys(id_column="customer"), NOW))
    with pytest.raises(ConfigError, match="column 'ok' has no value in row 3"):
        list(events_from_table(frame, TableKeys(id_column="ok"), NOW))
    refused = r"t\.csv has no column 'app' \(--entity-column\); its columns: id, customer, at"
    with pytest.raises(ConfigError, match=refused):
        list(events_from_table(frame, TableKeys(entity_column="app"), NOW, source="t.csv"))
    long = frame.assign(id=["a", "b" * 300, "c"])
    with pytest.raises(
        ConfigError, match="column 'id' row 2: an id must be 1 to 256 characters, this one has 300"
    ):
        list(events_from_table(long, TableKeys(id_column="id"), NOW))


def test_labels_are_keyed_by_entity_and_rows_without_one_are_left_out() -> None:
    keys = TableKeys("id", "customer", "at")
    labels, unlabelled = labels_from_table(_frame(), keys, "ok", NOW)

    assert labels == [
        ("c9", {"event_id": "a1", "label": 1.0, "label_time": 1714564800000}),
        ("c3", {"event_id": "a2", "label": 0.0, "label_time": 1714564801250}),
    ]
    assert unlabelled == 1
    assert all(Label.model_validate(body) for _, body in labels)


def test_labels_of_invented_ids_match_the_events_invented_for_the_same_rows() -> None:
    frame = _frame()
    events = list(events_from_table(frame.drop(columns=["ok"]), TableKeys(), NOW))
    labels, _ = labels_from_table(frame, TableKeys(), "ok", NOW + 5000)
    assert [(key, body["event_id"]) for key, body in labels] == [
        (e["entity_id"], e["event_id"]) for e in events[:2]
    ]
    assert [body["label_time"] for _, body in labels] == [NOW + 5000, NOW + 5001]


def test_labels_of_the_tables_ids_without_entities_are_keyed_by_event_id() -> None:
    labels, _ = labels_from_table(_frame(), TableKeys(id_column="id"), "ok", NOW)
    assert [key for key, _ in labels] == ["a1", "a2"]
    assert invented(TableKeys(id_column="id"), NOW, 1.0, what="label") == (
        "inventing label times now + N ms (2026-05-28T20:26:40.000Z on); --time-column takes the table's own"
    )


def test_true_false_labels_are_1_and_0_and_words_are_refused() -> None:
    frame = pd.DataFrame({"y": [True, False, None], "word": ["yes", "no", "yes"]})
    labels, unlabelled = labels_from_table(frame, TableKeys(), "y", NOW)
    assert [body["label"] for _, body in labels] == [1.0, 0.0] and unlabelled == 1
    with pytest.raises(ConfigError, match="column 'word' row 1: 'yes' is not a number"):
        labels_from_table(frame, TableKeys(), "word", NOW)
    with pytest.raises(ConfigError, match=r"has no column 'label' \(--label-column\)"):
        labels_from_table(frame, TableKeys(), "label", NOW)
