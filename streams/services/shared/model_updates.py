"""The serving state on ``model-updates``: read the recorded update of a model, publish a new one.

Every role and command that reads or writes the compacted ``model-updates`` topic goes
through here; the control role (``streams.services.control``) follows it and applies it.
"""

from __future__ import annotations

import logging
import os
import socket

from confluent_kafka import Producer
from pydantic import ValidationError

from schemas.lifecycle import ModelUpdate
from streams.kafka.config import command_producer_config
from streams.kafka.errors import DeliveryFailed
from streams.kafka.readers import read_latest
from streams.settings import Settings

log = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def live_update(settings: Settings, name: str) -> tuple[ModelUpdate | None, dict[int, int]]:
    """The recorded serving state of model ``name`` (None if never deployed) and the topic positions."""
    latest, positions = read_latest(settings, settings.topic_model_updates, idle_s=0.5)
    value = latest.get(name)
    if value is None:
        return None, positions
    try:
        return ModelUpdate.model_validate_json(value), positions
    except ValidationError:
        log.error("the recorded update of %s on %s is not a ModelUpdate", name, settings.topic_model_updates)
        return None, positions


def publish_update(settings: Settings, update: ModelUpdate) -> None:
    producer = Producer(command_producer_config(settings))
    producer.produce(settings.topic_model_updates, update.model_dump_json().encode(), update.champion.name)
    if producer.flush(15) != 0:
        raise DeliveryFailed(1, settings.topic_model_updates, settings.kafka_bootstrap)
