"""One readable line per record of the data topics: events, predictions, labels, monitor, dead letters.

Each ``*_line`` takes a ``RecordView`` (what a Kafka record holds, without a client, so a test
builds one by hand) and returns a ``Line``: the text, and the entities and models it is
about (for ``--entity`` and ``--model``). It raises ``ValueError`` (pydantic's and orjson's
errors are ones) when the record is not what the topic carries; ``describe`` turns that into
an "undecodable" line. Every record is untrusted: ``clean`` escapes what a terminal would act on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from pydantic import ValidationError

from schemas import headers as h
from schemas.messages import FeatureEvent, Label, MonitorBatch, Prediction

START_BYTES = 80  # of a dead letter's or an undecodable record's value, shown
FEATURES_SHOWN = 100  # characters of a feature event's features, shown
CLASSES_SHOWN = 5  # of a multiclass prediction's class probabilities, shown


@dataclass(frozen=True)
class RecordView:
    """One record as read: where it sits, its broker timestamp (epoch ms) and its bytes."""

    partition: int
    offset: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    def header(self, name: str) -> str | None:
        value = dict(self.headers).get(name)
        return None if value is None else value.decode("utf-8", "replace")

    @property
    def key_text(self) -> str:
        return "" if self.key is None else self.key.decode("utf-8", "replace")


@dataclass(frozen=True)
class Line:
    """What one record says, and what ``--entity`` and ``--model`` match it on."""

    text: str
    entities: tuple[str, ...] = ()
    models: tuple[str, ...] = ()  # name:version
    undecodable: str | None = None  # why the record is not what its topic carries


Render = Callable[[RecordView], Line]


class Undecodable(ValueError):
    """The record is not a message of its topic; the text says why."""


def describe(render: Render, record: RecordView) -> Line:
    """``render(record)``, or an "undecodable" line saying why and how the value starts."""
    try:
        return render(record)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        if first["type"] == "json_invalid":
            reason = f"not JSON ({first['msg'].removeprefix('Invalid JSON: ')})"
        else:
            reason = f"not a {exc.title}: {where + ': ' if where else ''}{first['msg']}"
    except orjson.JSONDecodeError as exc:
        reason = f"not JSON ({exc})"
    except ValueError as exc:
        reason = str(exc)
    except Exception as exc:  # noqa: BLE001 - a record must never end the command
        reason = f"{type(exc).__name__}: {exc}"
    return Line(f"undecodable: {reason} | value {start_of(record.value)}", undecodable=reason)


def show(record: RecordView, line: Line) -> str:
    """The printed line: the record's time and place, then what it says, escaped for a terminal."""
    when = iso(record.timestamp) if record.timestamp is not None else "-"
    return clean(f"{when} p{record.partition}@{record.offset}  {line.text}")


def clean(text: str) -> str:
    """Control characters (escape sequences, newlines) as visible escapes: one line, inert."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def iso(epoch_ms: int) -> str:
    """``2024-05-01T12:00:00.000Z``; what is out of range is shown as the number."""
    try:
        moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return f"{epoch_ms} ms"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def start_of(value: bytes | None, limit: int = START_BYTES) -> str:
    """The first ``limit`` bytes as text (bytes that are not UTF-8 as \\x escapes)."""
    if value is None:
        return "(none)"
    text = value[:limit].decode("utf-8", "backslashreplace")
    return repr(text + ("..." if len(value) > limit else ""))


def body(record: RecordView) -> bytes:
    if record.value is None:
        raise Undecodable("no value (a tombstone)")
    return record.value


def feature_line(record: RecordView) -> Line:
    event = FeatureEvent.model_validate_json(body(record))
    when = iso(event.event_time) if isinstance(event.event_time, int) else event.event_time.isoformat()
    shown = ", ".join(f"{k}={v}" for k, v in event.features.items())
    if len(shown) > FEATURES_SHOWN:
        shown = shown[:FEATURES_SHOWN] + "..."
    text = f"{event.entity_id}  {event.event_id}  at {when}  {len(event.features)} features: {shown}"
    return Line(text, entities=(event.entity_id,))


def prediction_line(record: RecordView) -> Line:
    p = Prediction.model_validate_json(body(record))
    model = f"{p.model_name}:{p.model_version}"
    if p.probabilities is not None:  # multiclass: the class, then every class's probability (the first few)
        items = list(p.probabilities.items())
        shown = ", ".join(f"{c} {v:.3f}" for c, v in items[:CLASSES_SHOWN])
        more = f", +{len(items) - CLASSES_SHOWN} more" if len(items) > CLASSES_SHOWN else ""
        outcome = f"class {p.label} p {p.score:.4f} ({shown}{more})"
    elif p.label is None:
        outcome = f"score {p.score:.6g}"
    else:
        outcome = f"score {p.score:.4f} class {int(p.label)}"
    origin = " (api)" if record.header(h.PREDICTION_ORIGIN) == h.ORIGIN_API.decode() else ""
    text = f"{p.entity_id}  {p.event_id}  {model}  {outcome}  latency {p.latency_ms:.0f} ms{origin}"
    return Line(text, entities=(p.entity_id,), models=(model,))


def label_line(record: RecordView) -> Line:
    label = Label.model_validate_json(body(record))
    value = label.label if isinstance(label.label, str) else f"{label.label:g}"
    text = f"{record.key_text}  {label.event_id}  label {value}  at {iso(label.label_time)}"
    return Line(text, entities=(record.key_text,))


def monitor_line(record: RecordView) -> Line:
    batch = MonitorBatch.model_validate_json(body(record))
    model = f"{batch.model_name}:{batch.model_version}"
    span = f"offsets {batch.offsets[0]}..{batch.offsets[-1]}" if batch.offsets else "no offsets"
    text = f"{model}  {batch.source_topic}[{batch.partition}] {span}: {len(batch.scores)} events"
    if batch.classes is not None:
        text += f" of {len(batch.classes)} classes"
    models = (model,)
    if batch.shadow_model_name is not None:
        shadow = f"{batch.shadow_model_name}:{batch.shadow_model_version}"
        text, models = f"{text}, shadow {shadow}", (model, shadow)
    return Line(text, entities=tuple(batch.entity_ids), models=models)


def dead_letter_line(record: RecordView) -> Line:
    """The stage, where the original came from, the reason, and how the original value starts."""
    stage = record.header(h.DLQ_STAGE)
    if stage is None:
        raise Undecodable(f"no {h.DLQ_STAGE} header: not a dead letter")
    source = f"{record.header(h.DLQ_TOPIC)}[{record.header(h.DLQ_PARTITION)}]@{record.header(h.DLQ_OFFSET)}"
    reason = f"{record.header(h.DLQ_CLASS)}: {record.header(h.DLQ_MESSAGE)}"
    cut = record.header(h.DLQ_ORIGINAL_SIZE)
    original = start_of(record.value) + (f" (cut from {cut} bytes)" if cut else "")
    return Line(f"{stage}  {source}  {reason} | original {original}", entities=(record.key_text,))


def opaque_line(record: RecordView) -> Line:
    """State records (signed checkpoints, drift partials): their key and size, not their contents."""
    if record.value is None:
        return Line(f"{record.key_text}  deleted (a tombstone)")
    return Line(f"{record.key_text}  {len(record.value)} bytes of signed state (--json shows them)")
