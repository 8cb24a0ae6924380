"""Signed checkpoints: what round-trips, and what is refused before anything is unpickled."""

from __future__ import annotations

import multiprocessing
import pickle
import stat
from pathlib import Path

import pytest
from river import linear_model

from scoring import checkpoint
from scoring.errors import CheckpointRejected

BOUND = checkpoint.binding("checkpoints", "app/learn/p0/1", "app")


def test_a_checkpoint_round_trips_with_its_key(tmp_path) -> None:
    key = checkpoint.load_or_create_key(tmp_path / "state.key")
    assert stat.S_IMODE((tmp_path / "state.key").stat().st_mode) == 0o600
    assert checkpoint.load_or_create_key(tmp_path / "state.key") == key
    model = linear_model.LogisticRegression()
    model.learn_one({"x": 1.0}, True)
    state, objects = checkpoint.decode(checkpoint.encode({"n": 3}, {"model": model}, key, BOUND), key, BOUND)
    assert state == {"n": 3}
    assert objects["model"].predict_proba_one({"x": 1.0}) == model.predict_proba_one({"x": 1.0})


def _keys_when_released(folder: str, rounds: int, gate) -> list[str]:
    out = []
    for i in range(rounds):
        gate.wait()
        out.append(checkpoint.load_or_create_key(Path(folder) / str(i) / "state.key").hex())
    return out


def test_workers_starting_together_on_one_data_dir_get_one_key(tmp_path) -> None:
    """Four processes making the key at once, 30 times over: each reads the same one, no draft is left."""
    rounds = 30
    with multiprocessing.Manager() as manager:
        gate = manager.Barrier(4)
        with multiprocessing.get_context("spawn").Pool(4) as pool:
            keys = pool.starmap(_keys_when_released, [(str(tmp_path), rounds, gate)] * 4)
    for i in range(rounds):
        assert len({k[i] for k in keys}) == 1 and len(keys[0][i]) == 64, f"round {i}: {[k[i] for k in keys]}"
        assert [p.name for p in (tmp_path / str(i)).iterdir()] == ["state.key"]


def test_signed_bytes_are_refused_under_another_key() -> None:
    signed = checkpoint.sign(b"partial", b"a" * 32, BOUND)
    assert checkpoint.verify(signed, b"a" * 32, BOUND) == b"partial"
    with pytest.raises(CheckpointRejected):
        checkpoint.verify(signed, b"b" * 32, BOUND)
    with pytest.raises(CheckpointRejected):
        checkpoint.verify(signed.replace(b"partial", b"Partial"), b"a" * 32, BOUND)


@pytest.mark.parametrize(
    "elsewhere",
    [
        ("checkpoints", "app/learn/p1/1", "app"),  # another partition (issue 29: restored as shard 1)
        ("checkpoints", "app/learn/p0/2", "app"),  # another generation
        ("drift-partials", "app/learn/p0/1", "app"),  # another topic
        ("checkpoints", "app/learn/p0/1", "other-app"),  # another deployment with the same key
    ],
)
def test_a_signature_binds_the_topic_the_record_key_and_the_deployment(elsewhere) -> None:
    key = b"a" * 32
    signed = checkpoint.encode({"partition": 0}, None, key, BOUND)
    with pytest.raises(CheckpointRejected, match="record key"):
        checkpoint.decode(signed, key, checkpoint.binding(*elsewhere))


def test_a_record_signed_before_the_binding_is_refused_by_name() -> None:
    """The format before issue 29 signed the payload alone: a copy under another key verified."""
    import hashlib
    import hmac

    key, body = b"a" * 32, b'{"partition":0}\n' + pickle.dumps(None)
    old = hmac.new(key, body, hashlib.sha256).hexdigest().encode() + b"\n" + body
    with pytest.raises(CheckpointRejected, match="before issue 29"):
        checkpoint.decode(old, key, BOUND)


class _Boom:
    def __reduce__(self):
        return (pytest.fail, ("an unsigned pickle was loaded",))


@pytest.mark.parametrize("forge", ["other key", "tampered state", "swapped pickle"])
def test_a_forged_or_tampered_checkpoint_is_refused_unread(forge: str) -> None:
    key, payload = b"k" * 32, checkpoint.encode({"n": 3}, {"model": None}, b"k" * 32, BOUND)
    if forge == "other key":
        payload = checkpoint.encode({"n": 3}, _Boom(), b"x" * 32, BOUND)
    elif forge == "tampered state":
        payload = payload.replace(b'{"n":3}', b'{"n":4}')
    else:
        signature, _, body = payload.partition(b"\n")
        state, _, _ = body.partition(b"\n")
        payload = signature + b"\n" + state + b"\n" + pickle.dumps(_Boom())
    with pytest.raises(checkpoint.CheckpointRejected):
        checkpoint.decode(payload, key, BOUND)
