"""The topics of state fuzzed the way ``test_side_topic_fuzz.py`` fuzzes the side topics (issue 29).

Hypothesis draws (derandomized) 1,000 records for ``drift-partials`` of 20 kinds, each good
or refused for a known reason by construction, and sends them to a live worker with every
role, two partitions and ``STREAMSCORE_DRIFT_WINDOWS=partitions``. Then it writes damaged
records under every key of that worker's state on ``checkpoints`` (the drift shards', the
merge's, the learn shards' and the KPI partials', with partitions outside the topic's) and
starts a new worker over them. Both workers must count every refusal by its reason, restart
no role, and go on merging windows; the new one starts fresh where its state was damaged.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import orjson
import pytest
from hypothesis import strategies as st

from scoring import checkpoint
from scoring.drift import WindowPartial
from streams.kafka.readers import read_latest
from streams.services.learn.merge import PartialsFollower, partial_key
from streams.services.shared.intake import Refusals
from tests.integration import side_fuzz as fz
from tests.integration.conftest import topics_for
from tests.integration.kafka_tools import WorkerProcess
from tests.integration.test_shared_state import (
    KEY,
    PARTITIONS,
    a_partial,
    key_of,
    more_windows,
    produce_state,
    refused,
    restarts,
    settings_of,
    signed_chunk,
    state_env,
)

pytestmark = pytest.mark.integration

N = 1_000
CHUNK = "streamscore-chunk"
PARTIAL_KINDS = {
    "good": 8,  # windows 37 to 41 of version 1, both partitions, some sent twice: merged once, none refused
    "null_header": 4,
    "no_header": 4,
    "two_headers": 4,
    "header_text": 4,
    "count_over_max": 4,
    "index_not_below_count": 4,
    "first_chunk_short": 4,
    "chunk_too_long": 4,
    "null_value": 4,
    "null_key": 4,
    "key_not_utf8": 4,
    "key_too_long": 4,
    "key_not_a_partial": 4,
    "partition_outside": 4,
    "out_of_order": 4,
    "unsigned": 4,
    "another_deployment": 4,
    "copied_under_another_key": 4,
    "signed_junk": 4,
    "signed_impossible": 4,
}
PARTIAL_PARAMS = {
    "good": st.tuples(st.integers(37, 41), st.integers(0, PARTITIONS - 1)),
    "header_text": st.binary(max_size=12).filter(
        lambda b: b.count(b"/") != 1 or not b.replace(b"/", b"").isdigit()
    ),
    "count_over_max": st.integers(85, 10**9),
    "index_not_below_count": st.integers(1, 84),
    "key_not_a_partial": st.text(min_size=1, max_size=30).filter(lambda k: "/w" not in k),
    "partition_outside": st.sampled_from(["2", "7", "-1", " 1", "01", "999999", "1e0"]),
    "signed_junk": st.binary(max_size=200),
    "signed_impossible": st.sampled_from(["window", "offset", "future", "short"]),
}
REASONS = {
    "null_header": "header",
    "no_header": "header",
    "two_headers": "header",
    "header_text": "header",
    "count_over_max": "header",
    "index_not_below_count": "header",
    "out_of_order": "header",
    "first_chunk_short": "size",
    "chunk_too_long": "size",
    "null_value": "size",
    "null_key": "key",
    "key_not_utf8": "key",
    "key_too_long": "key",
    "key_not_a_partial": "key",
    "partition_outside": "key",
    "unsigned": "signature",
    "another_deployment": "signature",
    "copied_under_another_key": "signature",
    "signed_junk": "shape",
    "signed_impossible": "content",
}


def render(env: dict, bundle, kind: str, params) -> tuple[bytes | None, bytes | None, list | None]:
    """One record of ``kind`` for the partials topic."""
    honest = _partial(env, bundle, 40, 0)
    key, value, _ = signed_chunk(env, honest, key_of(honest))
    if kind == "good":
        partial = _partial(env, bundle, *params)
        return signed_chunk(env, partial, key_of(partial))
    one = [(CHUNK, b"0/1")]
    cases = {
        "null_header": lambda: (key, value, [(CHUNK, None)]),
        "no_header": lambda: (key, value, None),
        "two_headers": lambda: (key, value, one + one),
        "header_text": lambda: (key, value, [(CHUNK, params)]),
        "count_over_max": lambda: (key, b"x" * 900_000, [(CHUNK, f"0/{params}".encode())]),
        "index_not_below_count": lambda: (key, value, [(CHUNK, f"{params}/{params}".encode())]),
        "out_of_order": lambda: (b"loans:1/w40/p1", value, [(CHUNK, b"1/2")]),
        "first_chunk_short": lambda: (key, value[:1000], [(CHUNK, b"0/2")]),
        "chunk_too_long": lambda: (key, b"x" * 800_001, one),
        "null_value": lambda: (key, None, one),
        "null_key": lambda: (None, value, one),
        "key_not_utf8": lambda: (b"loans:1/w40/p\xff", value, one),
        "key_too_long": lambda: (b"l" * 2_000 + b":1/w40/p0", value, one),
        "key_not_a_partial": lambda: ((params or "x").encode(), value, one),
        "partition_outside": lambda: (f"loans:1/w40/p{params}".encode(), value, one),
        "unsigned": lambda: (key, honest.to_bytes(), one),
        "another_deployment": lambda: (
            key,
            checkpoint.sign(honest.to_bytes(), KEY, checkpoint.binding("t", "k", "x")),
            one,
        ),
        "copied_under_another_key": lambda: (b"loans:1/w41/p0", value, one),
        "signed_junk": lambda: _signed(env, key, params or b"x"),
    }
    if kind == "signed_impossible":
        change = {
            "window": {},
            "offset": {"spans": (honest.spans[0].model_copy(update={"last_offset": 10**17}),)},
            "future": {"end_time": int(time.time() * 1000) + 86_400_000},
            "short": {"rows": honest.rows[:-1], "scores": honest.scores[:-1]},
        }[params]
        partial = a_partial(env, bundle, 10**15 if params == "window" else 40, 0, **change)
        return signed_chunk(env, partial, key_of(partial))
    return cases[kind]()


_PARTIALS: dict[tuple, WindowPartial] = {}


def _partial(env: dict, bundle, window: int, partition: int) -> WindowPartial:
    """``a_partial``, made once per window and partition of a run (it scores a frame: 1,000 of them took
    most of the test's minute of drawing)."""
    made = (env["STREAMSCORE_APP_ID"], window, partition)
    if made not in _PARTIALS:
        _PARTIALS[made] = a_partial(env, bundle, window, partition)
    return _PARTIALS[made]


def _signed(env: dict, key: bytes, data: bytes) -> tuple[bytes, bytes, list]:
    bound = checkpoint.binding(
        env["STREAMSCORE_TOPIC_DRIFT_PARTIALS"], key.decode(), env["STREAMSCORE_APP_ID"]
    )
    return key, checkpoint.sign(data, KEY, bound), [(CHUNK, b"0/1")]


def test_a_thousand_drift_partials_and_damaged_state_under_every_key(
    bootstrap, agrawal_bundle, agrawal_bundle_dir, tmp_path_factory, workers
):
    root = tmp_path_factory.mktemp("statefuzz")
    env = state_env(topics_for(bootstrap, uuid.uuid4().hex[:10], str(root / "data")))
    first = WorkerProcess(env, agrawal_bundle_dir, root / "first.log")
    workers.append(first)
    first.wait_ready(120)
    more_windows(first, bootstrap, env, "warm", 2)
    pid, topic = first.process.pid, env["STREAMSCORE_TOPIC_DRIFT_PARTIALS"]

    drawn = fz.draw(PARTIAL_KINDS, PARTIAL_PARAMS, N, seed=29)
    expected = Counter(REASONS[kind] for kind, _ in drawn if kind != "good")
    kinds = Counter(kind for kind, _ in drawn)
    before = {reason: refused(first, topic, reason) for reason in expected}
    records = [render(env, agrawal_bundle, kind, params) for kind, params in drawn]
    drawn_s = time.monotonic()
    produce_state(bootstrap, topic, records)
    print(f"drift-partials: produced in {time.monotonic() - drawn_s:.1f} s")

    def counted() -> bool:
        return all(refused(first, topic, r) - before[r] == n for r, n in expected.items())

    deadline = time.monotonic() + 120
    while not counted() and time.monotonic() < deadline and first.alive():
        time.sleep(0.5)
    got = {r: refused(first, topic, r) - before[r] for r in expected}
    stats = more_windows(first, bootstrap, env, "after-fuzz", 1)
    print(
        f"drift-partials: {N:,} drawn {dict(kinds)}; refused {got}, expected {dict(expected)}; then {stats}"
    )
    assert got == dict(expected)
    assert first.alive() and first.process.pid == pid and restarts(first, "drift") == 0
    assert stats["refused_partials_by_reason"].get("dropped", 0) == 0 and stats["partials_held_bytes"] == 0

    # every key of this worker's state, damaged, and keys outside the topic's partitions
    settings = settings_of(env)
    app = settings.faust_app_id
    stores = [
        f"{app}/drift/p0",
        f"{app}/drift/p1",
        f"{app}/drift/merge",
        f"{app}/learn/p0",
        f"{app}/learn/p1",
    ]
    assert first.terminate() == 0
    latest, _ = read_latest(settings, settings.topic_checkpoints, 2.0, f"{app}/")
    chunks = [f"{store}/{orjson.loads(latest[f'{store}/head'])['generation']}/0" for store in stores]
    elsewhere = checkpoint.binding("t", chunks[1], "another-app")
    values = [
        b"not a checkpoint",  # drift/p0
        checkpoint.encode({"partition": 1}, None, KEY, elsewhere),  # drift/p1: signed for another deployment
        latest[chunks[3]],  # the merge: a learn shard's checkpoint
        latest[chunks[3]][:-1] + bytes([latest[chunks[3]][-1] ^ 1]),  # learn/p0: one bit flipped
        b"",  # learn/p1
    ]
    damage = [(chunk.encode(), value, None) for chunk, value in zip(chunks, values, strict=True)]
    kpi = latest[partial_key(f"{app}/learn", 0)]
    kpi_keys = [f"{app}/learn/kpi/p{s}" for s in ("2", "-1", " 1", "01")] + [partial_key(f"{app}/learn", 1)]
    damage += [(k.encode(), kpi, None) for k in kpi_keys]
    produce_state(bootstrap, settings.topic_checkpoints, damage)

    second = WorkerProcess(env, agrawal_bundle_dir, root / "second.log")
    workers.append(second)
    second.wait_ready(120)
    checkpoints = settings.topic_checkpoints
    reasons = ("key", "shape", "signature", "content")

    def refusals_of(worker) -> dict[str, int]:
        return {r: refused(worker, checkpoints, r) for r in reasons}

    deadline = time.monotonic() + 60
    while sum(refusals_of(second).values()) < len(stores) and time.monotonic() < deadline:
        time.sleep(0.5)
    stats = more_windows(second, bootstrap, env, "after-damage", 1)
    follower_refusals = Refusals()
    follower = PartialsFollower(settings, f"{app}/learn", follower_refusals)
    follower.needed(True, KEY)
    deadline = time.monotonic() + 30
    try:
        while follower.refused < len(kpi_keys) and time.monotonic() < deadline:
            follower.poll()
            time.sleep(0.1)
    finally:
        follower.close()
    print(f"checkpoints: damaged {len(stores)} stores; the new worker refused {refusals_of(second)}; "
          f"restored {stats['restored']}; KPI partials refused {follower_refusals.refused}; "
          f"then {stats}")  # fmt: skip
    assert sum(refusals_of(second).values()) == len(stores)
    assert stats["restored"] == 0, "both drift shards start fresh"
    assert second.alive() and restarts(second, "drift") == 0 and restarts(second, "learn") == 0
    assert follower.refused == len(kpi_keys)
