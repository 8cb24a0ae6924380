"""Every output of a batch fits a Kafka message, however long (within the contract) its identifiers are.

The fuzz through a live worker (tests/integration/test_fuzz.py) found that a valid
event with a 600 KB event_id made a prediction over the producer's 1 MiB limit: the
produce call raised, the score thread died, and the restarted worker would die again
on the same batch. Identifiers are now bounded, and monitoring messages are split by
their encoded size rather than a row estimate.
"""

from __future__ import annotations

import orjson
import pytest

from schemas import FeatureEvent, MonitorBatch
from schemas.messages import MAX_IDENTIFIER_LENGTH
from scoring.errors import InvalidEvent
from scoring.model.bundle import ModelBundle
from scoring.model.validation import EventValidator
from scoring.offline.synthetic import agrawal_frame, events_from_frame
from streams.kafka.config import producer_config
from streams.services.score.handler import ScoreHandler
from streams.settings import Settings
from tests.unit.test_handler import Record, Sink

SETTINGS = Settings(kafka_bootstrap="x:1")
LIMIT = producer_config(SETTINGS)["message.max.bytes"]


@pytest.mark.parametrize("field", ["event_id", "entity_id"])
def test_an_identifier_over_the_limit_is_invalid_for_validator_and_schema(agrawal_bundle: ModelBundle, field):
    event = next(
        events_from_frame(agrawal_frame(1, seed=2, classification_function=2).drop(columns=["approved"]))
    )
    validator = EventValidator(agrawal_bundle.spec)
    event[field] = "x" * MAX_IDENTIFIER_LENGTH
    validator.parse(orjson.dumps(event))
    FeatureEvent.model_validate(event)

    event[field] = "x" * (MAX_IDENTIFIER_LENGTH + 1)
    with pytest.raises(InvalidEvent, match=f"'{field}' is 257 characters long, over 256"):
        validator.parse(orjson.dumps(event))
    with pytest.raises(ValueError, match="at most 256 characters"):
        FeatureEvent.model_validate(event)


def test_a_batch_of_longest_identifiers_gives_outputs_that_each_fit_a_message(agrawal_bundle: ModelBundle):
    frame = agrawal_frame(2000, seed=5, classification_function=2).drop(columns=["approved"])
    records = []
    for i, event in enumerate(events_from_frame(frame)):
        # control characters: JSON escapes each as six bytes, the worst case per character
        suffix = f"-{i}"
        event["event_id"] = "\x01" * (MAX_IDENTIFIER_LENGTH - len(suffix)) + suffix
        event["entity_id"] = "\x02" * MAX_IDENTIFIER_LENGTH
        records.append(Record(orjson.dumps(event), offset_=i))
    sink = Sink()

    stats = ScoreHandler(SETTINGS, agrawal_bundle).handle(records, sink.emit)

    assert stats.scored == 2000
    monitor = [MonitorBatch.model_validate_json(o.value) for o in sink.on(SETTINGS.topic_monitor)]
    assert sum(len(m.event_ids) for m in monitor) == 2000
    assert len({e for m in monitor for e in m.event_ids}) == 2000
    sizes = [
        len(o.value) + len(o.key or b"") + sum(len(k) + len(v) for k, v in o.headers or [])
        for o in sink.emitted
    ]
    print(f"{len(monitor)} monitoring messages; largest output {max(sizes):,} bytes (limit {LIMIT:,})")
    assert max(sizes) < LIMIT
