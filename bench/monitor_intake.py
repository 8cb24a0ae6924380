"""CPU per monitoring record on the drift and learn roles' intake, without Kafka.

The first record the score role writes for a batch of ``--batch`` events (20 numeric
features, or the Agrawal data with categorical features; a record is cut at a size
bound, so it may hold fewer), then, best of ``--repeat`` timings:
``decode_monitor``; the rows' check against the model (``spec_problem``) over the
matrix and one feature at a time (the check before issue 31); and the intake of a
worker running drift and learn: each role decoding the record, against one decoding
shared (``MonitorDecodes``).

    .venv/bin/python bench/monitor_intake.py [--batch 100 --batch 2000] [--repeat 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson

from schemas.monitor import decode_monitor
from scoring.model.features import FeatureKind, FeatureSpec
from scoring.model.monitor_rows import spec_problem
from scoring.offline.synthetic import agrawal_frame, events_from_frame, numeric_frame
from scoring.offline.training import train_bundle
from streams.services.score.handler import ScoreHandler
from streams.services.shared.intake import MonitorIntake, Refusals
from streams.services.shared.monitor_decodes import MonitorDecodes
from streams.settings import Settings


class Rec:
    """A stand-in for ``confluent_kafka.Message``."""

    def __init__(self, topic: str, value: bytes, offset: int) -> None:
        self._topic, self._value, self._offset = topic, value, offset

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return None

    def value(self) -> bytes:
        return self._value

    def headers(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)

    def error(self) -> None:
        return None


def per_feature(rows: np.ndarray, spec: FeatureSpec) -> str | None:
    """``spec_problem``'s checks as written before issue 31: one feature at a time."""
    for j, feature in enumerate(spec.features):
        column = rows[:, j]
        present = column[~np.isnan(column)]
        if feature.kind is FeatureKind.categorical:
            bad = (present < 0) | (present > feature.unseen_code) | (present != np.floor(present))
            if bad.any():
                return f"feature {feature.name!r} holds {float(present[bad][0])!r}, not a category code"
        elif np.isinf(present).any():
            return f"feature {feature.name!r} holds an infinite value"
    return None


def best_us(work: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times) * 1e6


def record_of(frame, target: str, batch: int, workdir: Path) -> tuple[bytes, FeatureSpec]:
    bundle = train_bundle(frame, target, workdir, task="binary", name="bench", num_trees=20, seed=0)
    settings = Settings(kafka_bootstrap="x:1", batch_size=batch)
    events = list(events_from_frame(frame.drop(columns=[target]).head(batch), prefix="m"))
    out: list[bytes] = []
    ScoreHandler(settings, bundle).handle(
        [Rec("features", orjson.dumps(e), i) for i, e in enumerate(events)],
        lambda topic, key, value, headers, partition=None: (
            topic == settings.topic_monitor and out.append(value)
        ),
    )
    return out[0], bundle.spec


def measure(settings: Settings, value: bytes, spec: FeatureSpec, repeat: int) -> list[float]:
    """µs per record: decode, the check per feature and over the matrix, two roles apart and shared."""
    columns = decode_monitor(value)
    names, rows = columns.feature_names, columns.rows
    assert per_feature(rows, spec) is None and spec_problem(names, rows, spec) is None
    offsets = iter(range(10**9))

    def roles(decodes: MonitorDecodes | None) -> Callable[[], object]:
        intakes = [MonitorIntake(settings, Refusals(), lambda n, v: None, decodes) for _ in range(2)]

        def both() -> None:
            record = Rec(settings.topic_monitor, value, next(offsets))
            for intake in intakes:
                intake.decode(record, lambda *a: None)

        return both

    return [
        best_us(lambda: decode_monitor(value, 1_700_000_000_000, 5_000), repeat),
        best_us(lambda: per_feature(rows, spec), repeat),
        best_us(lambda: spec_problem(names, rows, spec), repeat),
        best_us(roles(None), repeat),
        best_us(roles(MonitorDecodes()), repeat),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, action="append", help="events per record (repeatable)")
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    settings = Settings(kafka_bootstrap="x:1")
    print(f"µs per monitoring record, best of {args.repeat}\n")
    heads = "record | events | bytes | decode_monitor | spec check per feature | over the matrix "
    print(f"| {heads}| both roles decode | one decoding shared |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for batch in args.batch or [100, 2000]:
        with tempfile.TemporaryDirectory() as tmp:
            n = max(batch, 500)
            cases = {
                "20 numeric": record_of(numeric_frame(n, seed=1), "y", batch, Path(tmp) / "n"),
                "agrawal, 3 of 9 categorical": record_of(
                    agrawal_frame(n, seed=1), "approved", batch, Path(tmp) / "a"
                ),
            }
        for name, (value, spec) in cases.items():
            cells = " | ".join(f"{us:,.0f}" for us in measure(settings, value, spec, args.repeat))
            print(f"| {name} | {len(decode_monitor(value)):,} | {len(value):,} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
