"""Contender: a Quix Streams 3.x Application scoring one event at a time.

    python bench/contenders/quix_app.py BOOTSTRAP IN_TOPIC OUT_TOPIC MODEL_TXT GROUP

Idiomatic Quix: JSON deserializer (orjson inside), ``sdf.apply`` per event with a
1x20 ``Booster.predict``, ``sdf.to_topic`` (the message key, entity_id, is kept).
"""

from __future__ import annotations

import argparse
import tempfile

import lightgbm as lgb
import numpy as np
from quixstreams import Application


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("bootstrap", "in_topic", "out_topic", "model", "group"):
        parser.add_argument(name)
    args = parser.parse_args()

    booster = lgb.Booster(model_file=args.model)
    names = booster.feature_name()

    def score(ev: dict) -> dict:
        feats = ev["features"]
        x = np.array([[feats[n] for n in names]], dtype=np.float64)
        return {
            "event_id": ev["event_id"],
            "entity_id": ev["entity_id"],
            "score": float(booster.predict(x, num_threads=1)[0]),
        }

    state_dir = tempfile.TemporaryDirectory(prefix="quix-state-")  # stateless app: stays empty
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        consumer_extra_config={"session.timeout.ms": 6000},
        state_dir=state_dir.name,
        loglevel="WARNING",
    )
    source = app.topic(args.in_topic, key_deserializer="bytes", value_deserializer="json")
    sink = app.topic(args.out_topic, key_serializer="bytes", value_serializer="json")
    sdf = app.dataframe(source)
    sdf = sdf.apply(score)
    sdf.to_topic(sink)
    try:
        app.run()
    finally:
        state_dir.cleanup()


if __name__ == "__main__":
    main()
