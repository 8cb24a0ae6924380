"""Per-event CPU cost of each feature of the score step, without Kafka.

Runs ``ScoreHandler.handle`` over batches of pre-encoded events with a no-op emit,
switching one feature on at a time, and prints microseconds per event for each
step and its increment over the previous one. The baseline in the same run is
``orjson.loads`` alone.

    .venv/bin/python bench/hotpath.py [--events 200000] [--batch 2000]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import orjson

from schemas.lifecycle import ChallengerMode
from scoring.offline.synthetic import events_from_frame, numeric_frame
from scoring.offline.training import train_bundle
from streams.services.score.handler import ScoreHandler
from streams.settings import Settings


@dataclass(frozen=True, slots=True)
class Rec:
    """A stand-in for ``confluent_kafka.Message``: the handler's input shape."""

    _value: bytes
    _offset: int
    _partition: int

    def topic(self) -> str:
        return "features"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return self._value

    def headers(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)


def _per_event(fn, batches, n: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for batch in batches:
            fn(batch)
        best = min(best, time.perf_counter() - started)
    return best / n * 1e6


def _emit(topic, key, value, headers, partition=None) -> None:
    pass


def core_steps(bundle, batches: list, n: int) -> list[tuple[str, float]]:
    """Each step of the score path added to the ones before it, in µs per event."""

    def handler(**flags) -> ScoreHandler:
        return ScoreHandler(Settings(kafka_bootstrap="bench:0", **flags), bundle)

    steps = [
        (
            "orjson.loads only (baseline)",
            _per_event(lambda b: [orjson.loads(r.value()) for r in b], batches, n),
        )
    ]
    bare = handler(prediction_headers=False, monitor_enabled=False)
    validator = bare._plan.validator
    parse = _per_event(lambda b: [validator.parse(r.value()) for r in b], batches, n)
    steps.append(("+ validation (decode, checks, row)", parse))
    rows = [[validator.parse(r.value()).row for r in b] for b in batches]
    scorer = bare._plan.champion.scorer
    steps.append(
        ("+ LightGBM predict (batched)", steps[-1][1] + _per_event(lambda rs: scorer.score(rs), rows, n))
    )
    whole = _per_event(lambda b: bare.handle(b, _emit), batches, n)
    steps.append(("+ prediction JSON (whole handler, no headers, no monitor)", whole))
    with_headers = handler(prediction_headers=True, monitor_enabled=False)
    steps.append(("+ CloudEvents headers", _per_event(lambda b: with_headers.handle(b, _emit), batches, n)))
    full = handler(prediction_headers=True, monitor_enabled=True)
    steps.append(
        ("+ monitoring record (full score step)", _per_event(lambda b: full.handle(b, _emit), batches, n))
    )
    return steps


def optional_steps(bundle, challenger, batches: list, n: int) -> list[tuple[str, float]]:
    """The full step with each optional feature on, in µs per event."""
    out = []
    for share in (0.01, 0.1):
        settings = Settings(kafka_bootstrap="bench:0", explain_share=share)
        explained = ScoreHandler(settings, bundle)
        cost = _per_event(lambda b, h=explained: h.handle(b, _emit), batches, n)
        out.append((f"+ explanations on {share:.0%} of events (optional)", cost))
    for mode, share in ((ChallengerMode.split, 0.5), (ChallengerMode.shadow, 0.0)):
        served = ScoreHandler(Settings(kafka_bootstrap="bench:0"), bundle)
        served.swap(bundle, challenger, mode, share)
        label = "50% split by entity" if mode is ChallengerMode.split else "shadow scoring of every event"
        cost = _per_event(lambda b, h=served: h.handle(b, _emit), batches, n)
        out.append((f"+ a challenger, {label} (optional)", cost))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--trees", type=int, default=100)
    args = parser.parse_args()

    frame = numeric_frame(20_000, seed=1)
    bundle = train_bundle(frame, "y", None, num_trees=args.trees)
    challenger = train_bundle(frame, "y", None, num_trees=args.trees, seed=1)
    events = list(events_from_frame(numeric_frame(args.events, seed=2).drop(columns=["y"])))
    records = [Rec(orjson.dumps(e), i, i % 4) for i, e in enumerate(events)]
    batches = [records[i : i + args.batch] for i in range(0, len(records), args.batch)]
    n = len(records)
    steps = core_steps(bundle, batches, n) + optional_steps(bundle, challenger, batches, n)

    print(
        f"score step cost per event: {n:,} events, batches of {args.batch}, {args.trees} trees, 20 features"
    )
    print("| step | µs/event | increment µs |")
    print("| --- | ---: | ---: |")
    previous, full_cost = 0.0, steps[5][1]
    for name, cost in steps:
        optional = name.endswith("(optional)")
        base = full_cost if optional else previous  # each optional feature against the full step
        print(f"| {name} | {cost:.2f} | {cost - base:+.2f} |")
        previous = cost
    print(f"full score step (no explanations) alone could carry {1e6 / full_cost:,.0f} events/s on one core")


if __name__ == "__main__":
    main()
