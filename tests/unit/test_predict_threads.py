"""``STREAMSCORE_PREDICT_THREADS`` takes effect: every LightGBM predict of the score path runs with it.

The setting goes the way a worker's does: read from the environment at the entry point
(``load_settings``) into the ``ScoreHandler`` the worker builds (``streams/app.py``); the test
watches the calls that reach LightGBM's ``Booster.predict`` (it still runs them: the scores
are LightGBM's own).
"""

from __future__ import annotations

import lightgbm
import orjson
import pytest

from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import agrawal_frame, events_from_frame
from streams.environment import load_settings
from streams.services.score.handler import ScoreHandler
from tests.unit.fake_kafka import FakeRecord


@pytest.mark.parametrize("threads", [None, "3"])
def test_every_predict_of_the_score_path_gets_the_configured_threads(
    threads: str | None, agrawal_bundle: ModelBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    if threads is not None:
        monkeypatch.setenv("STREAMSCORE_PREDICT_THREADS", threads)
    frame = agrawal_frame(500, seed=21, classification_function=2).drop(columns=["approved"])
    expected = agrawal_bundle.booster.predict(agrawal_bundle.spec.encode_frame(frame))
    asked: list[int | None] = []
    predict = lightgbm.Booster.predict

    def watched(self, data, *args, **kwargs):
        asked.append(kwargs.get("num_threads"))
        return predict(self, data, *args, **kwargs)

    monkeypatch.setattr(lightgbm.Booster, "predict", watched)
    handler = ScoreHandler(load_settings(kafka_bootstrap="unused:1"), agrawal_bundle)
    records = [
        FakeRecord("features", 0, i, value_=orjson.dumps(event))
        for i, event in enumerate(events_from_frame(frame, prefix="t"))
    ]
    outputs: list[tuple[str, bytes]] = []
    stats = handler.handle(
        records, lambda topic, key, value, headers, partition=None: outputs.append((topic, value))
    )

    scores = [orjson.loads(v)["score"] for t, v in outputs if t == handler.settings.topic_predictions]
    print(f"STREAMSCORE_PREDICT_THREADS={threads}: LightGBM asked for num_threads {set(asked)}")
    assert stats.scored == len(records) and scores == expected.tolist()
    assert asked and set(asked) == {int(threads or 1)}  # 1 when unset, the documented default
