"""The drift path as a plain Faust agent over ``monitor`` (``STREAMSCORE_DRIFT_PATH=agent``)."""

from __future__ import annotations

import faust

from streams.kafka.records import Headers
from streams.services.drift.step import DriftStep
from streams.services.loop.faust_record import FaustRecord
from streams.settings import Settings


def register_drift_agent(app: faust.App, settings: Settings, step: DriftStep) -> None:
    """The drift path as a plain Faust agent over ``monitor`` (``STREAMSCORE_DRIFT_PATH=agent``)."""
    source = app.topic(settings.topic_monitor, key_serializer="raw", value_serializer="raw")
    sinks: dict[str, faust.TopicT] = {}

    def sink(name: str) -> faust.TopicT:
        if name not in sinks:
            sinks[name] = app.topic(name, key_serializer="raw", value_serializer="raw")
        return sinks[name]

    @app.agent(source, name="drift", concurrency=1)
    async def drift(stream: faust.StreamT) -> None:
        outgoing: list[tuple[str, bytes | None, bytes | None, Headers | None]] = []
        async for event in stream.events():
            outgoing.clear()
            step.handle(FaustRecord(event.message), lambda *r: outgoing.append(r))
            for topic, key, body, headers, *_ in outgoing:
                await sink(topic).send(key=key, value=body, headers=headers)
