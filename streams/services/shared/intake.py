"""One decoding step per consumed side topic: every record bounded before a role computes on it.

The drift and learn roles read ``monitor`` and ``labels``, which anyone with write access
can fill. Each record passes its topic's codec (``schemas.monitor``, ``schemas.messages.Label``)
and, for monitoring records, a check of its rows (and a multiclass model's class probabilities)
against the model version it names (``scoring.model.monitor_rows``); a label for a multiclass
model must name one of its classes, a label for any other model must be a number. What fails
goes to the topic's dead-letter topic with the reason (the same shape as ``features.dlq``) and
is counted per topic and reason; a role never sees it. Event and label times past the record's
broker timestamp by more than ``max_clock_skew_s`` are clamped there and counted.

The drift and learn roles both read ``monitor``: in a worker running both, a record both
refuse (or clamp) is dead-lettered and counted once, by whichever role comes to it first
(``Refusals.first``), and decoded once (``monitor_decodes``). Separate drift and learn
workers each count what they refuse.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import TypeAdapter, ValidationError

from schemas.keys import ModelKey
from schemas.messages import FiniteFloat, Label
from schemas.monitor import MonitorColumns, MonitorRejected, decode_monitor
from scoring.model.metadata import class_lookup, class_text
from scoring.model.monitor_rows import RecordShape
from streams.kafka.records import Emit, KafkaRecord
from streams.services.shared.dead_letters import dead_letter
from streams.services.shared.monitor_decodes import MonitorDecodes
from streams.settings import Settings

log = logging.getLogger(__name__)

REMEMBERED = 10_000  # positions of recent refusals kept, so the other role reading a topic skips them


class Refusal(StrEnum):
    """Why a side-topic record was not used (a label of ``streamscore_records_refused_total``)."""

    schema = "schema"  # not a well-formed message of the topic
    spec = "spec"  # rows that are not inputs of the model version named
    failed = "failed"  # a role raised on it (a defect; the record is kept for a look)


@dataclass
class Refusals:
    """Records refused per (topic, reason), and times clamped per topic; read by ``/metrics``."""

    refused: dict[tuple[str, str], int] = field(default_factory=dict)
    clamped: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _seen: OrderedDict[tuple, None] = field(default_factory=OrderedDict, repr=False)

    def first(self, record: KafkaRecord, what: str) -> bool:
        """True the first time ``what`` (a refusal, a clamp) happens to this record in this process."""
        key = (what, record.topic(), record.partition(), record.offset())
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = None
            if len(self._seen) > REMEMBERED:
                self._seen.popitem(last=False)
            return True

    def refuse(self, topic: str, reason: StrEnum) -> None:
        """One record of ``topic`` not used for ``reason`` (a ``Refusal``, or a ``StateRefusal``)."""
        with self._lock:
            key = (topic, reason.value)
            self.refused[key] = self.refused.get(key, 0) + 1

    def clamp(self, topic: str, n: int) -> None:
        with self._lock:
            self.clamped[topic] = self.clamped.get(topic, 0) + n

    def start(self, topics: list[str], reasons: type[StrEnum] = Refusal) -> None:
        """Every (topic, reason) series at 0, so an alert on their increase sees the first one."""
        with self._lock:
            for topic in topics:
                if reasons is Refusal:
                    self.clamped.setdefault(topic, 0)
                for reason in reasons:
                    self.refused.setdefault((topic, reason.value), 0)


class Intake:
    """Decodes one side topic's records; what fails is dead-lettered with the reason and counted."""

    def __init__(self, settings: Settings, topic: str, dead_letters: str, refusals: Refusals) -> None:
        self.topic = topic
        self.dead_letters = dead_letters
        self.refusals = refusals
        self.skew_ms = int(settings.max_clock_skew_s * 1000)
        self.max_value_bytes = settings.max_message_bytes  # dead letters cut as on features.dlq

    def refuse(
        self, record: KafkaRecord, reason: Refusal, message: str, emit: Emit, error_class: str
    ) -> None:
        if not self.refusals.first(record, "refused"):
            return  # the other role reading this topic in this process refused it already
        self.refusals.refuse(self.topic, reason)
        log.warning(
            "%s [%s] @%s refused (%s): %s",
            record.topic(),
            record.partition(),
            record.offset(),
            reason,
            message,
        )
        dead_letter(record, reason.value, error_class, message, emit, self.dead_letters, self.max_value_bytes)


class MonitorIntake(Intake):
    """``decodes``: shared with the other role reading ``monitor`` in this process, so each record
    is decoded once (``monitor_decodes``); None to decode every record here."""

    def __init__(
        self,
        settings: Settings,
        refusals: Refusals,
        shape_for: Callable[[str, str], RecordShape | None],
        decodes: MonitorDecodes | None = None,
    ) -> None:
        super().__init__(settings, settings.topic_monitor, settings.topic_monitor_dlq, refusals)
        self.shape_for = shape_for
        self.decodes = decodes

    def decode_stats(self) -> dict[str, int]:
        """Records decoded in this process, taken from the other role's decoding, and taken as this
        process's score role wrote them (not decoded)."""
        if self.decodes is None:
            return {}
        decodes = self.decodes
        return {
            "monitor_decoded": decodes.decoded,
            "monitor_decodes_shared": decodes.shared,
            "monitor_from_score": decodes.from_score,
        }

    def decode(self, record: KafkaRecord, emit: Emit) -> MonitorColumns | None:
        try:
            if self.decodes is None:
                columns = decode_monitor(record.value(), _written_ms(record), self.skew_ms)
            else:
                columns = self.decodes.decode(record, _written_ms(record), self.skew_ms, self)
        except MonitorRejected as exc:
            self.refuse(record, Refusal.schema, str(exc), emit, "MonitorRejected")
            return None
        shape = self.shape_for(columns.model_name, columns.model_version)
        problem = None if shape is None else shape.problem(columns)
        if problem is not None:
            model = ModelKey(columns.model_name, columns.model_version)
            self.refuse(record, Refusal.spec, f"not inputs of {model}: {problem}", emit, "SpecMismatch")
            return None
        if columns.clamped and self.refusals.first(record, "clamped"):
            self.refusals.clamp(self.topic, columns.clamped)
        return columns


class LabelIntake(Intake):
    """``classes``: a multiclass model's class names, which its labels must name; () for another model,
    whose labels are numbers."""

    def __init__(self, settings: Settings, refusals: Refusals, classes: Sequence[str | int] = ()) -> None:
        super().__init__(settings, settings.topic_labels, settings.topic_labels_dlq, refusals)
        self.classes = list(classes)
        self._lookup = class_lookup(self.classes)

    def decode(self, record: KafkaRecord, emit: Emit) -> Label | None:
        try:
            label = Label.model_validate_json(record.value() or b"")
        except ValidationError as exc:
            self.refuse(record, Refusal.schema, _first_error(exc), emit, "ValidationError")
            return None
        problem = self._label_problem(label.label)
        if problem is not None:
            self.refuse(record, Refusal.schema, problem, emit, "ValidationError")
            return None
        written = _written_ms(record)
        limit = None if written is None else written + self.skew_ms
        if limit is not None and label.label_time > limit:
            self.refusals.clamp(self.topic, 1)
            label = label.model_copy(update={"label_time": limit})
        return label

    def _label_problem(self, value: float | str) -> str | None:
        if self.classes:
            if class_text(value) in self._lookup:
                return None
            return f"label: {value!r} is not a class of the model ({', '.join(map(str, self.classes[:8]))})"
        if isinstance(value, str):  # a number was asked for: the error says so, as it always has
            try:
                _NUMBER.validate_python(value)
            except ValidationError as exc:
                return f"label: {exc.errors(include_url=False)[0]['msg']} (1 problem)"
        return None


_NUMBER = TypeAdapter(FiniteFloat)


def _written_ms(record: KafkaRecord) -> int | None:
    """The record's broker timestamp (create or log-append time); None when it has none."""
    stamp = record.timestamp()[1]
    return stamp if stamp > 0 else None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in error["loc"]) or "message"
    return f"{where}: {error['msg']} ({exc.error_count()} problem{'s' if exc.error_count() > 1 else ''})"
