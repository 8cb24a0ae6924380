"""Checkpoint payloads: JSON state plus river objects as a pickle signed with HMAC-SHA256.

River estimators have no portable serialisation, so they are pickled; a pickle is
code, so it is loaded only after its HMAC-SHA256 under the worker's state key
checks out. Whoever can write the checkpoint topic but does not hold the key can
make the worker start fresh, never run code in it.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import pickle
import secrets
from pathlib import Path

import orjson

from scoring.errors import CheckpointRejected

_SEP = b"\n"


def load_or_create_key(path: Path) -> bytes:
    """The worker's state key: read from ``path``, or made and written there (mode 0600).

    Workers sharing a data directory may start together: the key is written to a file of
    its own and linked into place, so exactly one key wins and every worker reads that one.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f"{path.name}.{secrets.token_hex(8)}")
        draft.touch(mode=0o600)
        draft.write_text(secrets.token_bytes(32).hex())
        try:
            os.link(draft, path)  # atomic; fails if another worker's key is there already
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return bytes.fromhex(path.read_text().strip())


def encode(state: dict, objects: object, key: bytes) -> bytes:
    """``signature hex`` NL ``JSON state`` NL ``pickle``; the signature covers both."""
    body = orjson.dumps(state) + _SEP + pickle.dumps(objects, protocol=pickle.HIGHEST_PROTOCOL)
    return hmac.new(key, body, hashlib.sha256).hexdigest().encode() + _SEP + body


def decode(payload: bytes, key: bytes) -> tuple[dict, object]:
    signature, _, body = payload.partition(_SEP)
    expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(signature, expected):
        raise CheckpointRejected("checkpoint signature does not match this worker's state key; not loaded")
    state, _, pickled = body.partition(_SEP)
    return orjson.loads(state), _MovedAware(io.BytesIO(pickled)).load()  # the signature was verified above


# classes of ours that checkpoints pickle, by the module they were in before a move
_MOVED_MODULES = {"scoring.challenger": "scoring.feedback.challenger"}


class _MovedAware(pickle.Unpickler):
    """Reads checkpoints written before a module of ours moved (the River challenger's pipeline
    holds ``PresentOnly``)."""

    def find_class(self, module: str, name: str) -> object:
        return super().find_class(_MOVED_MODULES.get(module, module), name)


def sign(data: bytes, key: bytes) -> bytes:
    """``signature hex`` NL ``data``: bytes only a holder of the state key can make."""
    return hmac.new(key, data, hashlib.sha256).hexdigest().encode() + _SEP + data


def verify(payload: bytes, key: bytes) -> bytes:
    """The data of a ``sign``ed payload; ``CheckpointRejected`` if the signature does not match."""
    signature, _, data = payload.partition(_SEP)
    expected = hmac.new(key, data, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(signature, expected):
        raise CheckpointRejected("signature does not match the state key")
    return data
