"""Errors raised by ``scoring``.

The tree::

    ScoringError                 root of everything ``scoring`` raises on purpose
    ├── BundleError              a model bundle cannot be read, verified or written
    │   └── ManifestMismatch     a bundle file is missing or its sha256 differs from the manifest
    ├── TrainingError            training data cannot make a model (no target, no rows, ...)
    └── InvalidEvent             one event cannot be scored; ``stage`` says where it failed

Agents catch ``InvalidEvent`` per event and dead-letter it with ``stage`` and ``reason``.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """Where in the score path an event failed."""

    decode = "decode"
    validate = "validate"
    score = "score"


class ScoringError(Exception):
    """Root of the errors raised by ``scoring``."""


class BundleError(ScoringError):
    """A model bundle cannot be read, verified or written."""


class ManifestMismatch(BundleError):
    """A bundle file is missing or does not match the sha256 in its manifest."""


class TrainingError(ScoringError):
    """The training data cannot produce a model."""


class InvalidEvent(ScoringError):
    """An event that cannot be scored, with the stage and a reason a producer can act on."""

    def __init__(self, stage: Stage, reason: str) -> None:
        super().__init__(f"{stage.value}: {reason}")
        self.stage = stage
        self.reason = reason
