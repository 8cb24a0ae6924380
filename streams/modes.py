"""The choices a worker's settings take: which roles, which paths, which guarantees.

Kept apart from ``streams.settings`` (which re-exports them) so each is one thing to read.
"""

from __future__ import annotations

from enum import StrEnum


class DriftWindows(StrEnum):
    """How drift windows are cut.

    ``stream``: over the records one drift worker reads, by count or event time (one drift
    worker per deployment). ``partitions``: per partition of ``monitor`` by count, the
    partials merged by the owner of partition 0 (any number of drift workers; issue 21).
    """

    stream = "stream"
    partitions = "partitions"


class ScorePath(StrEnum):
    """How the score agent consumes ``features``.

    ``batch``: a group-managed confluent-kafka consumer driven by a Faust service
    inside the worker, consuming and producing in batches (the fast path).
    ``agent``: a plain Faust agent over ``stream.take()`` (Faust's own consumer).
    """

    batch = "batch"
    agent = "agent"


class Role(StrEnum):
    """What a worker process runs. Monitoring in its own process keeps it off the scorer's GIL."""

    score = "score"
    drift = "drift"
    learn = "learn"


class UnknownFeatures(StrEnum):
    ignore = "ignore"
    reject = "reject"


class ProcessingGuarantee(StrEnum):
    """What the batch score path promises about its outputs.

    ``at_least_once``: a batch's offsets are committed after its outputs are
    acknowledged; a crash in between repeats the batch (consumers deduplicate on
    ``event_id``). ``exactly_once``: each batch's outputs and its offsets are one Kafka
    transaction, so a ``read_committed`` consumer sees each output once, if the broker
    implements transactions (docs/reliability.md says how far Tansu does).
    """

    at_least_once = "at_least_once"
    exactly_once = "exactly_once"
