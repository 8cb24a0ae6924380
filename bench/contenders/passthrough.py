"""Contender (the two-hop floor): the worker's own service loop and client settings, no decode, no model.

    python bench/contenders/passthrough.py BOOTSTRAP IN_TOPIC OUT_TOPIC MODEL_TXT GROUP

consume -> produce each record's value unchanged -> acks -> commit, with the score role's
consumer and producer configuration (``streams.kafka.config``), its ``ServiceLoop`` and
its ``AfterAcks`` policy: what a streamscore worker would add to the broker's two hops if
scoring cost nothing. Latency above this is the score step's.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streams.kafka.config import group_consumer_config, producer_config
from streams.services.loop.policies import AfterAcks
from streams.services.loop.runner import kafka_clients
from streams.services.loop.service_loop import ServiceLoop
from streams.services.loop.step import LoopContext, Step, Subscribe
from streams.settings import Settings


class Passthrough(Step):
    def __init__(self, out_topic: str) -> None:
        self.out_topic = out_topic

    def process(self, records: list, context: LoopContext) -> None:
        emit, topic = context.emit, self.out_topic
        for record in records:
            emit(topic, record.key(), record.value(), None)


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("bootstrap", "in_topic", "out_topic", "model", "group"):
        parser.add_argument(name)
    args = parser.parse_args()
    settings = Settings(
        kafka_bootstrap=args.bootstrap, group_id=args.group
    )  # reads STREAMSCORE_* as a worker
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    clients = kafka_clients(group_consumer_config(settings, args.group), producer_config(settings))
    ServiceLoop(
        "passthrough",
        clients,
        Passthrough(args.out_topic),
        AfterAcks(),
        Subscribe([args.in_topic]),
        stopping,
        batch_size=settings.batch_size,
        linger_s=settings.batch_linger_ms / 1000.0,
    ).run()


if __name__ == "__main__":
    main()
