"""Payloads for the side-topic fuzz on the topics of state: ``model-updates`` and ``checkpoints``.

Like ``side_fuzz``: each recipe renders to records and what the worker must make of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
from hypothesis import strategies as st

from schemas.commands import ACTIONS
from schemas.lifecycle import ModelRef, ModelUpdate
from tests.integration.side_fuzz import BAD_UTF8, MALFORMED, check, literal, malformed, scalars

# -- model-updates: every record gets one alert; good ones are applied (or superseded in order)

UPDATE_KINDS = {
    "deploy": 16,
    "malformed_json": 6,
    "not_an_object": 6,
    "unknown_field": 6,
    "missing_field": 6,
    "wrong_type": 6,
    "bad_action": 6,
    "share_above_1": 6,
    "deep_nesting": 6,
    "outside_sources": 6,
    "missing_bundle": 6,
    "junk_key": 6,
    "name_not_key": 6,
    "null_key": 6,
    "bad_utf8": 6,
}
UPDATE_PARAMS = {
    "deploy": st.sampled_from(["1", "2"]),
    "malformed_json": MALFORMED,
    "not_an_object": st.one_of(scalars, st.lists(scalars, max_size=3)),
    "unknown_field": st.text(min_size=1, max_size=10),
    "missing_field": st.sampled_from(["action", "champion", "requested_at"]),
    "wrong_type": st.sampled_from(
        [("requested_at", "now"), ("champion", "loans"), ("history", {}), ("challenger_share", "half")]
    ),
    "bad_action": st.text(max_size=12).filter(lambda a: a not in ACTIONS),
    "share_above_1": st.floats(1.001, 1e6),
    "deep_nesting": st.integers(1, 3000),
    "outside_sources": st.sampled_from(
        ["/tmp/elsewhere/loans-2", "http://192.0.2.1/loans/2", "/etc", "s3://b/x"]
    ),
    "junk_key": st.tuples(st.text(min_size=1, max_size=20).filter(lambda k: k != "loans"), scalars),
    "bad_utf8": st.sampled_from(BAD_UTF8),
}
MESSAGE_KINDS = {"malformed_json", "not_an_object", "unknown_field", "missing_field", "wrong_type"}
MESSAGE_KINDS |= {"bad_action", "share_above_1", "deep_nesting", "bad_utf8"}


def render_update(kind: str, params, registry: str) -> tuple[bytes | None, bytes | None, str]:
    """(key, value, the alert it must bring): "applied", or "refused:<check>", or "ignored"."""
    version = params if kind == "deploy" else "2"
    ref = ModelRef(name="loans", version=version, uri=f"{registry}/loans/{version}")
    body = orjson.loads(
        ModelUpdate(action="deploy", champion=ref, requested_at=int(time.time() * 1000)).model_dump_json()
    )
    key: bytes | None = b"loans"
    if kind == "deploy":
        return key, orjson.dumps(body), "applied"
    if kind in MESSAGE_KINDS:
        return key, _bad_update(kind, params, body), "refused:message"
    if kind == "outside_sources":
        body["champion"]["uri"] = params
        return key, orjson.dumps(body), "refused:source"
    if kind == "missing_bundle":  # a version that never serves: nothing to reuse, so it must load
        body["champion"].update(version="77", uri=f"{registry}/loans/77")
        return key, orjson.dumps(body), "refused:load"
    if kind == "junk_key":
        return params[0].encode(), orjson.dumps(params[1]), "ignored"
    if kind == "name_not_key":
        body["champion"]["name"] = "other"
        return key, orjson.dumps(body), "ignored"
    assert kind == "null_key", kind
    return None, orjson.dumps(body), "ignored"


def _bad_update(kind: str, params, body: dict) -> bytes:
    if kind == "malformed_json":
        return malformed(body, params)
    if kind == "bad_utf8":
        return orjson.dumps(body).replace(b'"loans"', b'"lo' + params + b'ans"', 1)
    if kind == "deep_nesting":
        return literal(body, ["reason"], "[" * params + "]" * params)
    if kind == "not_an_object":
        return orjson.dumps(params)
    if kind == "unknown_field":
        body[f"x_{params}"] = 1
    elif kind == "missing_field":
        del body[params]
    elif kind == "wrong_type":
        body[params[0]] = params[1]
    elif kind == "bad_action":
        body["action"] = params
    elif kind == "share_above_1":
        body["challenger_share"] = params
    value = orjson.dumps(body)
    check(ModelUpdate, value, False, kind)
    return value


# -- checkpoints: a learner's real checkpoint under a prefix of its own per payload, damaged or not

CHECKPOINT_KINDS = {
    "intact": 10,
    "stale_keys": 6,
    "old_generation_left": 6,
    "duplicated": 6,
    "deleted_head": 4,
    "head_not_json": 4,
    "head_wrong_fields": 4,
    "head_more_chunks": 4,
    "head_other_generation": 4,
    "chunk_truncated": 4,
    "chunk_byte_flipped": 4,
    "chunk_random": 4,
    "chunk_empty": 4,
    "other_key": 4,
    "segment_missing": 4,
    "segment_corrupt": 4,
    "signed_without_board": 4,
    "signed_positions_not_a_dict": 4,
    "signed_bitmap_wrong": 4,
    "signed_objects_not_a_dict": 4,
    "signed_open_rows_cut": 4,
}
CHECKPOINT_PARAMS = {
    "stale_keys": st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4),
    "head_not_json": st.binary(max_size=40).filter(lambda b: not b.startswith(b"{")),
    "head_wrong_fields": st.dictionaries(st.text(max_size=8), scalars, max_size=3),
    "head_more_chunks": st.integers(1, 5),
    "head_other_generation": st.integers(3, 10_000),
    "chunk_truncated": st.integers(0, 20_000),
    "chunk_byte_flipped": st.tuples(st.integers(0, 20_000), st.integers(1, 255)),
    "chunk_random": st.binary(min_size=1, max_size=300),
    "segment_corrupt": st.tuples(st.integers(0, 2000), st.integers(1, 255)),
    "signed_open_rows_cut": st.integers(1, 7),
}


def render_checkpoint(
    kind: str, params, base: dict[str, bytes], prefix: str, key: bytes, bound: Callable[[str], bytes]
) -> tuple[list, str]:
    """(records under ``prefix``, expected outcome): "restored", "fresh" (nothing there) or "refused".

    The base checkpoint's payloads are signed again for ``prefix`` (``bound`` gives what a record
    key's signature binds, issue 29): a copy under another prefix would not verify.
    """
    from scoring import checkpoint

    records = {
        k.replace("base/learn", prefix, 1): _resigned(k, v, prefix, key, bound) for k, v in base.items()
    }
    head_key = f"{prefix}/head"
    generation = orjson.loads(records[head_key])["generation"]
    chunk = f"{prefix}/{generation}/0"
    signed_for = bound(f"{prefix}/{generation}")
    segments = sorted(k for k in records if "/seg/" in k and k.count("/") == 4)  # P/learn/seg/S/i
    out: list[tuple[str, bytes | None]] = list(records.items())
    outcome = "refused"
    if kind == "intact":
        outcome = "restored"
    elif kind == "stale_keys":
        out += [(f"{prefix}/{name}", b"stale") for name in params]
        outcome = "restored"
    elif kind == "old_generation_left":
        out.insert(0, (f"{prefix}/{generation - 1}/0", b"an older generation's chunk"))
        outcome = "restored"
    elif kind == "duplicated":
        out = out + out
        outcome = "restored"
    elif kind == "deleted_head":
        out.append((head_key, None))
        outcome = "fresh"
    elif kind == "head_not_json":
        out.append((head_key, params))
    elif kind == "head_wrong_fields":
        out.append((head_key, orjson.dumps(params)))
    elif kind == "head_more_chunks":
        out.append((head_key, orjson.dumps({"generation": generation, "chunks": 1 + params})))
    elif kind == "head_other_generation":
        out.append((head_key, orjson.dumps({"generation": params, "chunks": 1})))
    elif kind == "chunk_truncated":
        out.append((chunk, records[chunk][: params % len(records[chunk])]))
    elif kind == "chunk_byte_flipped":
        out.append((chunk, _flip(records[chunk], *params)))
    elif kind == "chunk_random":
        out.append((chunk, params))
    elif kind == "chunk_empty":
        out.append((chunk, b""))
    elif kind == "other_key":
        out.append(
            (
                chunk,
                checkpoint.encode(*checkpoint.decode(records[chunk], key, signed_for), b"o" * 32, signed_for),
            )
        )
    elif kind == "segment_missing":
        out.append((segments[0], None))
    elif kind == "segment_corrupt":
        out.append((segments[0], _flip(records[segments[0]], *params)))
    else:
        state, objects = checkpoint.decode(records[chunk], key, signed_for)
        _damage_signed(kind, params, state, objects)
        objects = "x" if kind == "signed_objects_not_a_dict" else objects
        out.append((chunk, checkpoint.encode(state, objects, key, signed_for)))
    return [(k.encode(), v) for k, v in out], outcome


def _resigned(record_key: str, value: bytes, prefix: str, key: bytes, bound: Callable[[str], bytes]) -> bytes:
    """A payload chunk of the base checkpoint (one chunk each: they are small) signed for ``prefix``."""
    from scoring import checkpoint

    parts = record_key.split("/")  # base/learn/G/0 or base/learn/seg/S/0 (base/learn/seg/S is a head)
    head_chunk = len(parts) == 4 and parts[2] != "seg" and parts[3] == "0"
    if not head_chunk and not (len(parts) == 5 and parts[2] == "seg" and parts[4] == "0"):
        return value
    where = "/".join(parts[2:-1])
    return checkpoint.sign(
        checkpoint.verify(value, key, bound(f"base/learn/{where}")), key, bound(f"{prefix}/{where}")
    )


def _flip(value: bytes, at: int, mask: int) -> bytes:
    at %= len(value)
    return value[:at] + bytes([value[at] ^ mask]) + value[at + 1 :]


def _damage_signed(kind: str, params, state: dict, objects: dict) -> None:
    """A state signed with the right key that this learner cannot take (another version's, a bug's)."""
    if kind == "signed_without_board":
        del state["board"]
    elif kind == "signed_positions_not_a_dict":
        state["positions"] = [1, 2]
    elif kind == "signed_bitmap_wrong":
        first = next(iter(state["segments"]["segments"]))
        state["segments"]["segments"][first]["count"] += 1
    elif kind == "signed_open_rows_cut":
        objects["open_rows"] = objects["open_rows"][:-params]
    else:
        assert kind == "signed_objects_not_a_dict", kind
