"""A supervised role's loop: real clients and a new loop, policy and source at each start."""

from __future__ import annotations

import threading
from collections.abc import Callable

from confluent_kafka import Consumer, Producer

from streams.services.loop.service_loop import ClientCallbacks, ClientFactory, CommitPolicy, ServiceLoop
from streams.services.loop.stats import LoopStats
from streams.services.loop.step import Assign, Step, Subscribe


def kafka_clients(consumer_config: dict, producer_config: dict) -> ClientFactory:
    """Real confluent-kafka clients, with the loop's callbacks added to their configurations."""

    def make(callbacks: ClientCallbacks) -> tuple[Consumer, Producer]:
        consumer = Consumer({**consumer_config, **callbacks.consumer})
        return consumer, Producer({**producer_config, **callbacks.producer})

    return make


def runner(
    name: str,
    clients: ClientFactory,
    step: Step,
    policy: Callable[[], CommitPolicy],
    source: Callable[[], Subscribe | Assign],
    stats: LoopStats,
    batch_size: int,
    linger_s: float,
    commit_deadline_s: float = 10.0,
) -> Callable[[threading.Event], None]:
    """A supervised role's work: a new loop, with new clients and a new policy, at each start."""

    def run(stopping: threading.Event) -> None:
        loop = ServiceLoop(
            name, clients, step, policy(), source(), stopping, batch_size, linger_s, stats, commit_deadline_s
        )
        loop.run()

    return run
