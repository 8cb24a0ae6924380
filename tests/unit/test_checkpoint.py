"""Signed checkpoints: what round-trips, and what is refused before anything is unpickled."""

from __future__ import annotations

import pickle
import stat

import pytest
from river import linear_model

from scoring import checkpoint


def test_a_checkpoint_round_trips_with_its_key(tmp_path) -> None:
    key = checkpoint.load_or_create_key(tmp_path / "state.key")
    assert stat.S_IMODE((tmp_path / "state.key").stat().st_mode) == 0o600
    assert checkpoint.load_or_create_key(tmp_path / "state.key") == key
    model = linear_model.LogisticRegression()
    model.learn_one({"x": 1.0}, True)
    state, objects = checkpoint.decode(checkpoint.encode({"n": 3}, {"model": model}, key), key)
    assert state == {"n": 3}
    assert objects["model"].predict_proba_one({"x": 1.0}) == model.predict_proba_one({"x": 1.0})


class _Boom:
    def __reduce__(self):
        return (pytest.fail, ("an unsigned pickle was loaded",))


@pytest.mark.parametrize("forge", ["other key", "tampered state", "swapped pickle"])
def test_a_forged_or_tampered_checkpoint_is_refused_unread(forge: str) -> None:
    key, payload = b"k" * 32, checkpoint.encode({"n": 3}, {"model": None}, b"k" * 32)
    if forge == "other key":
        payload = checkpoint.encode({"n": 3}, _Boom(), b"x" * 32)
    elif forge == "tampered state":
        payload = payload.replace(b'{"n":3}', b'{"n":4}')
    else:
        signature, _, body = payload.partition(b"\n")
        state, _, _ = body.partition(b"\n")
        payload = signature + b"\n" + state + b"\n" + pickle.dumps(_Boom())
    with pytest.raises(checkpoint.CheckpointRejected):
        checkpoint.decode(payload, key)
