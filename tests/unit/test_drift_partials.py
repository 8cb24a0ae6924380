"""Drift windows cut per partition and merged (issue 21): K workers give the reports one gives."""

from __future__ import annotations

import dataclasses
import random
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.drift import DriftReport
from scoring.drift import (
    ClosedWindow,
    DriftMonitor,
    MonitorColumns,
    PartialRejected,
    PartitionWindows,
    StreamDetectors,
    WindowCloser,
    WindowMerger,
    WindowPartial,
    merge_window,
)
from scoring.drift import partial as partial_module
from scoring.drift.compare import DriftThresholds
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import numeric_frame
from scoring.offline.training import train_bundle

P = 4
WINDOW_EVENTS = 2_000  # 500 events per partition window
QUOTA = 500
LENGTHS = [2_030, 2_260, 2_010, 2_120]  # unequal: partition 2 closes its 4th window last
WORKERS = [[0, 3], [1], [2]]


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    return train_bundle(numeric_frame(4_000, n_features=20, seed=41), "y", name="parts", num_trees=10)


Partition = tuple[np.ndarray, np.ndarray, np.ndarray]  # rows, scores, event times


def partitions_of(bundle: ModelBundle, seed: int, shift: float = 0.0) -> list[Partition]:
    """Each partition's events in offset order; ``shift`` moves f00 from each one's 1,000th event on."""
    frame = numeric_frame(sum(LENGTHS), n_features=20, seed=seed).drop(columns="y")
    rows = bundle.spec.encode_frame(frame)
    rows[np.random.default_rng(seed).random(rows.shape) < 0.02] = np.nan  # missing cells
    out, start = [], 0
    for p, n in enumerate(LENGTHS):
        part = rows[start : start + n].copy()
        part[1_000:, 0] += shift
        jitter = np.random.default_rng(seed + p).integers(-40, 40, n)  # times not in offset order
        times = 1_700_000_000_000 + 10 * np.arange(n) + 3 * p + jitter
        out.append((part, bundle.predict(part), times))
        start += n
    return out


def columns(bundle: ModelBundle, data: Partition, p: int, start: int, stop: int) -> MonitorColumns:
    rows, scores, times = data
    offsets = list(range(start, stop))
    return MonitorColumns(
        bundle.name,
        bundle.version,
        "features",
        p,
        offsets,
        [f"p{p}-{o}" for o in offsets],
        times[start:stop].tolist(),
        scores[start:stop],
        rows[start:stop],
    )


def messages(bundle: ModelBundle, data: Partition, p: int, rng: random.Random) -> list[MonitorColumns]:
    """A partition's events as monitoring messages of random sizes, in offset order."""
    out, start = [], 0
    while start < len(data[0]):
        stop = min(len(data[0]), start + rng.randint(1, 300))
        out.append(columns(bundle, data, p, start, stop))
        start = stop
    return out


def worker(bundle: ModelBundle, data: list[Partition], owned: list[int], seed: int) -> list[WindowPartial]:
    """One worker: windows for the partitions it owns, their messages interleaved at random."""
    rng = random.Random(seed)
    windows = {p: PartitionWindows(p, P, WINDOW_EVENTS) for p in owned}
    queues = {p: messages(bundle, data[p], p, rng) for p in owned}
    partials = []
    for p in windows:
        windows[p].register(bundle)
    while any(queues.values()):
        p = rng.choice([p for p in owned if queues[p]])
        partials += windows[p].observe(queues[p].pop(0))
    return partials


def merged(bundle: ModelBundle, partials: list[WindowPartial | bytes]) -> list[ClosedWindow]:
    merger = WindowMerger(P, WINDOW_EVENTS)
    merger.register(bundle)
    closed = [w for partial in partials for w in merger.add(partial)]
    return sorted(closed, key=lambda w: w.report.window)


def one_monitor(bundle: ModelBundle, data: list[Partition], windows: int) -> list[ClosedWindow]:
    """One VersionMonitor fed the partitions' windows one after the other, window by window."""
    monitor = DriftMonitor(window_events=QUOTA * P, window_s=1e9)
    monitor.register(bundle)
    closed = []
    for w in range(windows):
        for p in range(P):
            closed += monitor.observe_windows(columns(bundle, data[p], p, w * QUOTA, (w + 1) * QUOTA))
    return closed


def without(report: DriftReport, *fields: str) -> dict:
    return report.model_dump(exclude={"created_at", *fields})


# ---------------------------------------------------------------- the same windows however they are read


def test_three_workers_one_worker_and_one_monitor_give_the_same_reports(bundle: ModelBundle) -> None:
    data = partitions_of(bundle, seed=42)
    single = merged(bundle, worker(bundle, data, list(range(P)), seed=1))
    sent = [part.to_bytes() for i, owned in enumerate(WORKERS) for part in worker(bundle, data, owned, i + 2)]
    random.Random(9).shuffle(sent)
    sent.insert(5, sent[11])  # a partial delivered twice
    spread = merged(bundle, sent)
    direct = one_monitor(bundle, data, windows=4)

    assert [w.report.window for w in single] == [w.report.window for w in spread] == [0, 1, 2, 3]
    assert [w.report.events for w in spread] == [QUOTA * P] * 4
    for a, b, c in zip(single, spread, direct, strict=True):
        assert without(a.report) == without(b.report)  # detector changes included
        assert without(b.report, "changes") == without(c.report, "changes")
        assert b.estimate.model_dump(exclude={"created_at"}) == c.estimate.model_dump(exclude={"created_at"})
        for f, g in zip(b.report.features, c.report.features, strict=True):
            assert f.psi == pytest.approx(g.psi, abs=1e-12) and f.ks_p_value == pytest.approx(
                g.ks_p_value, abs=1e-12
            )
        assert b.report.drifted_features == c.report.drifted_features == []
        w = b.report.window
        assert [(s.partition, s.first_offset, s.last_offset) for s in b.report.spans] == [
            (p, w * QUOTA, (w + 1) * QUOTA - 1) for p in range(P)
        ]
        first, last = w * QUOTA, (w + 1) * QUOTA
        assert b.report.start_event_time == min(int(d[2][first:last].min()) for d in data)
        assert b.report.end_event_time == max(int(d[2][first:last].max()) for d in data)


def test_score_detectors_run_per_partition_and_their_changes_merge_in_partition_order(
    bundle: ModelBundle,
) -> None:
    data = partitions_of(bundle, seed=43, shift=3.0)  # f00 drives the score
    sent = [part.to_bytes() for i, owned in enumerate(WORKERS) for part in worker(bundle, data, owned, i + 5)]
    windows = merged(bundle, sent[::-1])

    alone = []  # each partition's scores through detectors of its own
    for p in range(P):
        detectors = StreamDetectors("score", bundle.version)
        alone.append(detectors.update(data[p][1], columns(bundle, data[p], p, 0, LENGTHS[p])))
    for w in windows:
        lo, hi = w.report.window * QUOTA, (w.report.window + 1) * QUOTA
        expected = [change for p in range(P) for row, change in alone[p] if lo <= row < hi]
        assert w.report.changes == expected
    changes = [c for w in windows for c in w.report.changes]
    assert {c.partition for c in changes} == set(range(P))  # each partition saw the shift itself
    assert all(c.position == c.offset + 1 for c in changes)  # counted on the partition's own events


def test_a_shift_on_one_feature_in_the_second_half_is_named_by_the_merged_reports(
    bundle: ModelBundle,
) -> None:
    data = partitions_of(bundle, seed=44, shift=1.0)  # f00 one sd up from each partition's 1,000th event
    sent = [part.to_bytes() for i, owned in enumerate(WORKERS) for part in worker(bundle, data, owned, i + 7)]
    windows = merged(bundle, sent)

    assert [w.report.drifted_features for w in windows] == [[], [], ["f00"], ["f00"]]
    assert all(0.8 < w.report.features[0].mean_shift_sd < 1.2 for w in windows[2:])


# ---------------------------------------------------------------- the merger


def test_a_window_merges_once_every_partition_sent_it_and_duplicates_count_once(bundle: ModelBundle) -> None:
    data = partitions_of(bundle, seed=45)
    by_partition = {p: worker(bundle, data, [p], seed=p) for p in range(P)}
    merger = WindowMerger(P, WINDOW_EVENTS)
    merger.register(bundle)

    assert merger.add(by_partition[0][0]) == merger.add(by_partition[0][1]) == []
    assert merger.add(by_partition[0][0].to_bytes()) == []  # the same partial again
    assert [merger.add(by_partition[p][0]) for p in (1, 2)] == [[], []]
    (closed,) = merger.add(by_partition[3][0])
    assert closed.report.window == 0 and closed.report.events == QUOTA * P
    assert merger.add(by_partition[2][0]) == []  # a window merged already
    assert merger.duplicates == 2
    assert merger.pending_windows() == [(bundle.name, bundle.version, 1)]


def test_partials_of_a_version_not_registered_yet_wait_for_it(bundle: ModelBundle) -> None:
    data = partitions_of(bundle, seed=46)
    partials = worker(bundle, data, list(range(P)), seed=3)
    merger = WindowMerger(P, WINDOW_EVENTS)

    assert [w for part in partials for w in merger.add(part)] == []
    assert [w.report.window for w in merger.register(bundle)] == [0, 1, 2, 3]


def test_merging_refuses_partials_of_another_cut_or_an_incomplete_window(bundle: ModelBundle) -> None:
    data = partitions_of(bundle, seed=47)
    partials = worker(bundle, data, [0, 1], seed=4)
    with pytest.raises(
        PartialRejected, match="cut over 4 partitions of 500 events, this merger over 4 of 750"
    ):
        WindowMerger(P, 3_000).add(partials[0])
    with pytest.raises(ValueError, match=r"one partial per partition 0\.\.3, got partitions \[0, 1\]"):
        merge_window([p for p in partials if p.window == 0], WindowCloser(bundle, DriftThresholds()))


# ---------------------------------------------------------------- bytes


def a_partial(bundle: ModelBundle) -> WindowPartial:
    return worker(bundle, partitions_of(bundle, seed=48, shift=3.0), [1], seed=5)[2]  # holds changes


def test_a_partial_round_trips_exactly_and_costs_168_bytes_an_event_for_20_features(
    bundle: ModelBundle,
) -> None:
    partial = a_partial(bundle)
    payload = partial.to_bytes()
    back = WindowPartial.from_bytes(payload)

    assert np.isnan(partial.rows).any() and partial.changes  # missing cells and detector changes travel
    for field in dataclasses.fields(WindowPartial):
        a, b = getattr(partial, field.name), getattr(back, field.name)
        assert a.tobytes() == b.tobytes() if isinstance(a, np.ndarray) else a == b, field.name
    assert back.to_bytes() == payload
    header = int.from_bytes(payload[5:9], "little")
    assert len(payload) - 13 - header == 168 * partial.events == 168 * QUOTA
    print(f"{len(payload)} bytes for {partial.events} events, header {header} bytes")


@pytest.mark.parametrize("cut", [0, 4, 12, 13, 40, -1000, -1])
def test_truncated_bytes_are_refused_with_a_reason(bundle: ModelBundle, cut: int) -> None:
    payload = a_partial(bundle).to_bytes()
    with pytest.raises(PartialRejected, match=r"window partial (truncated|garbled)"):
        WindowPartial.from_bytes(payload[:cut])


@pytest.mark.parametrize(
    ("at", "reason"),
    [
        (0, "not a window partial"),
        (4, "format"),
        (6, "checksum"),
        (10, "checksum"),
        (30, "checksum"),
        (-3000, "checksum"),
        (-2, "checksum"),
    ],
)
def test_a_garbled_byte_is_refused_with_a_reason(bundle: ModelBundle, at: int, reason: str) -> None:
    payload = bytearray(a_partial(bundle).to_bytes())
    payload[at] ^= 0x5A
    with pytest.raises(PartialRejected, match=reason):
        WindowPartial.from_bytes(bytes(payload))


def frame(header: bytes, body: bytes = b"") -> bytes:
    """A payload with a correct checksum around any header: what a buggy or hostile writer sends."""
    rest = header + body
    crc = zlib.crc32(rest, zlib.crc32(len(header).to_bytes(4, "little")))
    return partial_module._PREFIX.pack(b"SSWP", 1, len(header), crc) + rest


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"partition": 4}, "partition 4 of 4 partitions"),
        ({"start_time": 2_000_000_000_000}, "start time .* after end time"),
        ({"quota": 100}, "500 events in a window of 100"),
        ({"model_name": ""}, "model_name: String should have at least 1 character"),
    ],
)
def test_a_well_framed_partial_that_makes_no_sense_is_refused(
    bundle: ModelBundle, change: dict, reason: str
) -> None:
    bad = dataclasses.replace(a_partial(bundle), **change)
    with pytest.raises(PartialRejected, match=reason):
        WindowPartial.from_bytes(bad.to_bytes())


def test_headers_and_arrays_that_do_not_fit_are_refused(bundle: ModelBundle) -> None:
    good = a_partial(bundle)
    payload = good.to_bytes()
    header = payload[13 : 13 + int.from_bytes(payload[5:9], "little")]
    rows = good.rows.copy()
    rows[3, 2] = np.inf
    scores = good.scores.copy()
    scores[7] = np.nan
    cases = {
        "row values must be finite or NaN": dataclasses.replace(good, rows=rows).to_bytes(),
        "scores must be finite": dataclasses.replace(good, scores=scores).to_bytes(),
        "header invalid: header: Input should be an object": frame(b"[]"),
        "header invalid: header: Invalid JSON": frame(b"{\xff"),
        "header invalid: extra: Extra inputs are not permitted": frame(header[:-1] + b',"extra":1}'),
        "does not hold 500 events x 20 features": frame(header, payload[13 + len(header) : -8]),
        "no bytes": None,
    }
    for reason, payload in cases.items():
        with pytest.raises(PartialRejected, match=reason):
            WindowPartial.from_bytes(payload)


@given(st.binary(max_size=400))
def test_any_bytes_give_a_partial_or_partial_rejected(data: bytes) -> None:
    with pytest.raises(PartialRejected):
        WindowPartial.from_bytes(data)
    with pytest.raises(PartialRejected):
        WindowPartial.from_bytes(b"SSWP\x01" + data)
