"""Explanations and file scoring, without Kafka."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from schemas.messages import Prediction
from scoring.model.bundle import ModelBundle
from scoring.model.explain import Explainer, sampled
from scoring.offline.batch_file import score_frame
from scoring.offline.synthetic import agrawal_frame, events_from_frame
from streams.services.score.handler import ScoreHandler
from streams.settings import Settings
from tests.unit.test_handler import Record


def test_contributions_plus_bias_equal_the_raw_score(agrawal_bundle: ModelBundle) -> None:
    frame = agrawal_frame(500, seed=21, classification_function=2).drop(columns=["approved"])
    matrix = agrawal_bundle.spec.encode_frame(frame)
    raw = agrawal_bundle.booster.predict(matrix, raw_score=True)
    explanations = Explainer(agrawal_bundle, top_k=3).explain(matrix)
    for e, expected in zip(explanations, raw, strict=True):
        assert e["raw_score"] == pytest.approx(expected, abs=1e-6)
        total = e["bias"] + sum(c["contribution"] for c in e["top"]) + e["rest"]
        assert total == pytest.approx(expected, abs=1e-6)
        magnitudes = [abs(c["contribution"]) for c in e["top"]]
        assert magnitudes == sorted(magnitudes, reverse=True) and len(magnitudes) == 3
    categorical = {c["feature"]: c["value"] for e in explanations for c in e["top"]}
    if "elevel" in categorical:
        assert str(categorical["elevel"]).startswith("edu")


def test_the_sample_is_a_stable_share_of_event_ids() -> None:
    ids = [f"evt-{i}" for i in range(20_000)]
    picked = sampled(ids, 0.1)
    assert 1_800 < len(picked) < 2_200
    assert picked == sampled(list(ids), 0.1)
    assert sampled(ids, 0.0) == [] and len(sampled(ids, 1.0)) == len(ids)


def test_sampled_predictions_carry_an_explanation_that_adds_up(agrawal_bundle: ModelBundle) -> None:
    settings = Settings(explain_share=0.25, explain_top_k=4, monitor_enabled=False)
    handler = ScoreHandler(settings, agrawal_bundle)
    frame = agrawal_frame(400, seed=22, classification_function=2).drop(columns=["approved"])
    records = [Record(orjson.dumps(e), offset_=i) for i, e in enumerate(events_from_frame(frame))]
    out: list = []
    handler.handle(records, lambda topic, key, value, headers, partition=None: out.append(value))
    predictions = [Prediction.model_validate_json(v) for v in out]
    explained = [p for p in predictions if p.explanation is not None]
    chosen = sampled([p.event_id for p in predictions], 0.25)
    assert {p.event_id for p in explained} == {predictions[i].event_id for i in chosen}
    assert 60 < len(explained) < 140
    for p in explained:
        e = p.explanation
        raw = np.log(p.score / (1 - p.score))
        assert e.bias + sum(c.contribution for c in e.top) + e.rest == pytest.approx(raw, abs=1e-6)
        assert len(e.top) == 4


def test_score_frame_matches_the_handler_and_rejects_with_reasons(agrawal_bundle: ModelBundle) -> None:
    frame = agrawal_frame(3000, seed=23, classification_function=2).drop(columns=["approved"])
    frame["event_id"] = [f"evt-{i}" for i in range(len(frame))]
    frame.loc[7, "salary"] = np.nan  # a required feature missing
    frame.loc[11, "age"] = np.inf
    scored, rejects = score_frame(agrawal_bundle, frame, id_column="event_id")
    assert sorted(rejects["event_id"]) == ["evt-11", "evt-7"]
    assert all(rejects["reason"].str.len() > 0)
    clean = frame.drop(index=[7, 11]).drop(columns=["event_id"])
    expected = agrawal_bundle.predict(agrawal_bundle.spec.encode_frame(clean))
    np.testing.assert_array_equal(scored["score"].to_numpy(), expected)
    assert scored["event_id"].tolist() == [f"evt-{i}" for i in range(3000) if i not in (7, 11)]
    assert isinstance(scored, pd.DataFrame)


def test_the_explain_command_prints_every_contribution(agrawal_bundle_dir, tmp_path, capsys) -> None:
    from streams.cli import main

    frame = agrawal_frame(1, seed=24, classification_function=2).drop(columns=["approved"])
    event = next(events_from_frame(frame))
    (tmp_path / "event.json").write_bytes(orjson.dumps(event))
    assert main(["explain", str(tmp_path / "event.json"), "--model", str(agrawal_bundle_dir), "--json"]) == 0
    result = orjson.loads(capsys.readouterr().out)
    e = result["explanation"]
    assert result["event_id"] == event["event_id"] and len(e["top"]) == len(frame.columns)
    assert e["bias"] + sum(c["contribution"] for c in e["top"]) == pytest.approx(e["raw_score"], abs=1e-6)
    (tmp_path / "bad.json").write_bytes(b'{"event_id": 1}')
    assert main(["explain", str(tmp_path / "bad.json"), "--model", str(agrawal_bundle_dir)]) == 2
