"""Create streamscore's topics with the partition count the settings ask for.

Creating them explicitly matters: a producer writing to a missing topic gets it
auto-created with the broker's default partition count.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.kafka.config import admin_config
from streams.settings import Settings

log = logging.getLogger(__name__)

COMPACTED = {"cleanup.policy": "compact"}


def ensure_topics(settings: Settings, timeout_s: float = 15.0) -> list[str]:
    """Create the missing topics; returns the names it created."""
    admin = AdminClient(admin_config(settings))
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [
        NewTopic(
            name,
            num_partitions=1
            if name in (settings.topic_checkpoints, settings.topic_drift_partials)
            else settings.partitions,
            replication_factor=settings.replication_factor,
            config=COMPACTED if name in (settings.topic_model_updates, settings.topic_checkpoints) else {},
        )
        for name in dict.fromkeys(settings.all_topics())
        if name not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    log.info("created topics %s", created)
    return created
