"""What a window partial and a merged report can hold: contents no honest worker can sign (issue 29).

A signature says a holder of the state key wrote a partial, not that it is possible. These
checks bound what the topic and the clock allow, so that a signed partial of a window
10^15, a span ending at offset 10^17 or scores of 1e300 is refused before it can be
merged into a report, an alert or a retrain request:

- events: a partition window closes at exactly ``quota`` events;
- offsets: each event is a record of the source topic (``features``), so the spans name
  only that topic and partitions of it, cover at least half the window's events (room for
  the at-least-once repeats of the score role), end below the partition's end offset as
  the broker reports it (twice that, plus ``OFFSET_SLACK``: room for a broker whose
  reported end lags its log, as Tansu's does), and, where the partition's events come from
  the source partition of the same number (the usual layout), window ``w`` starts no
  earlier than ``(w - 1) * quota / 2`` records into it (the events of windows ``0..w-1``
  came before);
- times: the latest event time is no later than now plus the allowed clock skew (the
  monitor intake clamps event times to their record's time plus that skew);
- detector changes: inside the partial's spans, at positions it could have counted;
- scores: those of a binary model are probabilities, as are a multiclass model's (the predicted
  class's probability);
- class probabilities (a multiclass model's partial): as many per event as the model has
  classes (``MAX_CLASSES`` at most, in the partial's header), each within [0, 1];
- a merged report: every statistic finite, PSI and rates non-negative, p-values and rates
  at most 1, counts within the window; a multiclass report's predicted-class counts sum to
  its events, its class probabilities' means within [0, 1].

A start time of 0 is not refused: an event may carry any time from 1970 on.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from schemas.drift import DriftReport
from schemas.keys import Task
from scoring.drift.partial import WindowPartial

OFFSET_SLACK = 10_000  # records past twice the reported end offset: room for a lagging ListOffsets
# (topic, partition, an offset a span reaches) -> the partition's end offset as the broker reports it
# (asked again when the offset passes what was known), None when the topic has no such partition
EndOffset = Callable[[str, int, int], int | None]


def partial_problem(
    partial: WindowPartial, source_topic: str, now_ms: int, skew_ms: int, end_offset: EndOffset
) -> str | None:
    """Why ``partial`` cannot be what an honest drift worker closed; None when it can."""
    if partial.events != partial.quota:
        return f"{partial.events} events in a window that closes at {partial.quota}"
    covered = 0
    for span in partial.spans:
        if span.topic != source_topic:
            return f"a span of topic {span.topic!r}, not the source topic {source_topic!r}"
        covered += span.last_offset - span.first_offset + 1
        end = end_offset(span.topic, span.partition, span.last_offset)
        if end is None:
            return f"a span of partition {span.partition}, which {source_topic!r} does not have"
        if span.last_offset >= 2 * end + OFFSET_SLACK:
            return f"a span ending at {span.topic}[{span.partition}] @{span.last_offset}, whose end is {end}"
    if 2 * covered < partial.events:
        return f"spans covering {covered} records for {partial.events} events"
    first = min(s.first_offset for s in partial.spans)
    same = all(s.partition == partial.partition for s in partial.spans)
    if same and 2 * first + partial.quota < partial.window * partial.quota:
        return f"window {partial.window} of {partial.quota} events starting at offset {first}"
    if partial.end_time > now_ms + skew_ms:
        return f"an event time {partial.end_time} past the clock ({now_ms}) and the allowed skew"
    for change in partial.changes:
        inside = any(
            s.partition == change.partition and s.first_offset <= change.offset <= s.last_offset
            for s in partial.spans
        )
        if not inside or not 1 <= change.position <= (partial.window + 1) * partial.quota:
            return f"a detector change at @{change.offset}, position {change.position}, outside the partial"
    return None


def scores_problem(scores: np.ndarray, task: Task) -> str | None:
    """Why these cannot be scores of a model of ``task``; None when they can."""
    if task.classifies and len(scores) and not (scores.min() >= 0.0 and scores.max() <= 1.0):
        low, high = scores.min(), scores.max()
        return f"scores from {low:.3g} to {high:.3g}; a {task.value} model's are probabilities"
    return None


def report_problem(report: DriftReport) -> str | None:
    """Why a merged report's statistics cannot be right; None when they can."""
    for feature in report.features:
        if not 0 <= feature.count <= report.events:
            return f"feature {feature.feature!r} counts {feature.count} of {report.events} events"
        problem = _stats_problem(
            f"feature {feature.feature!r}",
            nonnegative=(feature.psi, feature.ks_statistic, feature.chi2_statistic),
            probabilities=(feature.ks_p_value, feature.chi2_p_value, feature.missing_rate),
            finite=(feature.mean, feature.reference_mean, feature.mean_shift_sd, feature.missing_rate_change),
        )
        if problem:
            return problem
    p = report.prediction
    problem = _stats_problem(
        "the scores",
        nonnegative=(p.psi, p.ks_statistic),
        probabilities=(p.ks_p_value,),
        finite=(p.mean, p.reference_mean),
    )
    return problem or (None if report.classes is None else _classes_problem(report))


def _classes_problem(report: DriftReport) -> str | None:
    """Why a multiclass report's predicted classes and class probabilities cannot be right."""
    assert report.classes is not None
    predicted = report.classes.predicted
    counts = list(predicted.counts.values())
    if any(c < 0 for c in counts) or sum(counts) != report.events:
        return f"predicted-class counts summing to {sum(counts)} in a window of {report.events} events"
    problem = _stats_problem(
        "the predicted classes",
        nonnegative=(predicted.psi, predicted.chi2_statistic),
        probabilities=(predicted.chi2_p_value,),
        finite=(),
    )
    for c in report.classes.probabilities:
        problem = problem or _stats_problem(
            f"class {c.name!r}'s probability",
            nonnegative=(c.psi, c.ks_statistic),
            probabilities=(c.ks_p_value, c.mean, c.reference_mean),
            finite=(),
        )
    return problem


def _stats_problem(
    what: str,
    nonnegative: tuple[float | None, ...],
    probabilities: tuple[float | None, ...],
    finite: tuple[float | None, ...],
) -> str | None:
    for value in (*nonnegative, *probabilities, *finite):
        if value is not None and not math.isfinite(value):
            return f"{what}: a statistic of {value}"
    for value in nonnegative:
        if value is not None and value < 0:
            return f"{what}: a negative statistic {value}"
    for value in probabilities:
        if value is not None and not 0 <= value <= 1:
            return f"{what}: a p-value or rate of {value}"
    return None
