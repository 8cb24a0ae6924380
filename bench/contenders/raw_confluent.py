"""Contender (upper baseline): a plain confluent-kafka batch loop.

    python bench/contenders/raw_confluent.py BOOTSTRAP IN_TOPIC OUT_TOPIC MODEL_TXT GROUP

consume(2000) -> orjson decode -> one batch predict -> produce each -> flush -> commit.
"""

from __future__ import annotations

import argparse
import signal

import lightgbm as lgb
import numpy as np
import orjson
from confluent_kafka import Consumer, Producer


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("bootstrap", "in_topic", "out_topic", "model", "group"):
        parser.add_argument(name)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()

    booster = lgb.Booster(model_file=args.model)
    names = booster.feature_name()
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "linger.ms": 5,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    running = True

    def on_term(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    consumer.subscribe([args.in_topic])
    out = args.out_topic
    while running:
        msgs = [m for m in consumer.consume(args.batch, 0.5) if m.error() is None]
        if not msgs:
            continue
        events = [orjson.loads(m.value()) for m in msgs]
        x = np.array([[ev["features"][n] for n in names] for ev in events], dtype=np.float64)
        scores = booster.predict(x, num_threads=1).tolist()
        for m, ev, s in zip(msgs, events, scores, strict=True):
            value = orjson.dumps({"event_id": ev["event_id"], "entity_id": ev["entity_id"], "score": s})
            producer.produce(out, value, m.key())
        producer.poll(0)
        producer.flush()
        consumer.commit(asynchronous=True)
    producer.flush(10)
    consumer.close()


if __name__ == "__main__":
    main()
