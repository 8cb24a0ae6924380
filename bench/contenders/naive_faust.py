"""Contender: a naive Faust (faust-streaming) agent, one event at a time.

    python bench/contenders/naive_faust.py BOOTSTRAP IN_TOPIC OUT_TOPIC MODEL_TXT GROUP

``async for`` per event, orjson decode of the raw value, a 1x20 predict, and one
``await topic.send(...)`` per event. The Faust app id is the consumer group.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import faust
import lightgbm as lgb
import numpy as np
import orjson


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("bootstrap", "in_topic", "out_topic", "model", "group"):
        parser.add_argument(name)
    args = parser.parse_args()

    booster = lgb.Booster(model_file=args.model)
    names = booster.feature_name()
    datadir = tempfile.TemporaryDirectory(prefix="faust-data-")
    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        broker_session_timeout=6,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        store="memory://",
        datadir=datadir.name,
        topic_disable_leader=True,
    )
    source = app.topic(args.in_topic, key_serializer="raw", value_serializer="raw")
    sink = app.topic(args.out_topic, key_serializer="raw", value_serializer="raw")

    @app.agent(source)
    async def score(stream: faust.StreamT) -> None:
        async for key, value in stream.items():
            ev = orjson.loads(value)
            feats = ev["features"]
            x = np.array([[feats[n] for n in names]], dtype=np.float64)
            s = float(booster.predict(x, num_threads=1)[0])
            out = {"event_id": ev["event_id"], "entity_id": ev["entity_id"], "score": s}
            await sink.send(key=key, value=orjson.dumps(out))

    loglevel = os.environ.get("BENCH_LOGLEVEL", "warning")
    try:
        faust.Worker(app, loglevel=loglevel, redirect_stdouts=False).execute_from_commandline()
    finally:
        datadir.cleanup()


if __name__ == "__main__":
    main()
