"""Checkpoint payloads: JSON state plus river objects as a pickle signed with HMAC-SHA256.

River estimators have no portable serialisation, so they are pickled; a pickle is
code, so it is loaded only after its HMAC-SHA256 under the worker's state key
checks out. Whoever can write the checkpoint topic but does not hold the key can
make the worker start fresh, never run code in it.

A signature binds what the record claims to be (issue 29): the HMAC covers a
``binding`` of the topic, the record's key (application, role, partition, generation or
window) and the deployment (the app id) before the payload, so a record signed for
``APP/learn/p0`` does not verify as ``APP/learn/p1``, on another topic or in another
deployment. Format ``s2:<hex>`` NL payload; the format before it (``<hex>`` NL payload,
the payload alone signed) is refused by name: a worker upgraded over such checkpoints
starts fresh. What a signature cannot prove: that a holder of the key told the truth,
or that a record is the latest one written under its key (an older record of the same
key, replayed, still verifies).
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
_FORMAT = b"s2:"
_OLD_FORMAT_LENGTH = 64  # hex digits of the signature before the binding


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


def binding(topic: str, record_key: str, deployment: str) -> bytes:
    """What a signature binds a payload to: the topic, the record's key and the deployment (app id)."""
    return orjson.dumps(["streamscore-state", topic, record_key, deployment])


def encode(state: dict, objects: object, key: bytes, bound: bytes) -> bytes:
    """``s2:signature hex`` NL ``JSON state`` NL ``pickle``; the signature covers ``bound`` and both."""
    body = orjson.dumps(state) + _SEP + pickle.dumps(objects, protocol=pickle.HIGHEST_PROTOCOL)
    return sign(body, key, bound)


def decode(payload: bytes, key: bytes, bound: bytes) -> tuple[dict, object]:
    """The state and objects of an ``encode``d payload; ``CheckpointRejected`` unless signed for ``bound``."""
    state, _, pickled = verify(payload, key, bound).partition(_SEP)
    return orjson.loads(state), _MovedAware(io.BytesIO(pickled)).load()  # the signature was verified


# classes of ours that checkpoints pickle, by the module they were in before a move
_MOVED_MODULES = {"scoring.challenger": "scoring.feedback.challenger"}


class _MovedAware(pickle.Unpickler):
    """Reads checkpoints written before a module of ours moved (the River challenger's pipeline
    holds ``PresentOnly``)."""

    def find_class(self, module: str, name: str) -> object:
        return super().find_class(_MOVED_MODULES.get(module, module), name)


def sign(data: bytes, key: bytes, bound: bytes) -> bytes:
    """``s2:signature hex`` NL ``data``: bytes only a holder of the state key can make, for ``bound`` only."""
    return _FORMAT + _mac(key, bound, data) + _SEP + data


def verify(payload: bytes | bytearray | memoryview, key: bytes, bound: bytes) -> bytes:
    """The data of a ``sign``ed payload; ``CheckpointRejected`` unless it was signed for ``bound``."""
    signature, _, data = bytes(payload).partition(_SEP)
    if not signature.startswith(_FORMAT):
        if len(signature) == _OLD_FORMAT_LENGTH and all(c in b"0123456789abcdef" for c in signature):
            raise CheckpointRejected(
                "signed in the format before issue 29, which did not bind the record's key: not loaded "
                "(a worker upgraded over old state starts fresh)"
            )
        raise CheckpointRejected("not a signed state record (no signature line)")
    if not hmac.compare_digest(signature[len(_FORMAT) :], _mac(key, bound, data)):
        raise CheckpointRejected(
            "signature does not match the state key for this topic, record key and deployment"
        )
    return data


def _mac(key: bytes, bound: bytes, data: bytes) -> bytes:
    mac = hmac.new(key, len(bound).to_bytes(4, "big"), hashlib.sha256)
    mac.update(bound)
    mac.update(data)
    return mac.hexdigest().encode()
