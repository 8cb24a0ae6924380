"""The project's errors: one root, ``StreamscoreError``, that the command line and the web views catch.

The tree (``streams.kafka.errors`` adds the broker branch, ``streams.services.inference.errors``
the inference protocol's)::

    StreamscoreError             root of everything streamscore raises on purpose
    ├── ScoringError             raised by ``scoring``
    │   ├── BundleError          a model bundle cannot be read, verified or written
    │   │   ├── ManifestMismatch a bundle file is missing or its sha256 differs from the manifest
    │   │   └── ModelMismatch    its parts disagree with its model file (task, classes, categories)
    │   ├── ModelRefused         a model from outside (or asked of train) that cannot be served as
    │   │                        given: not LightGBM text, an objective not served, a feature missing
    │   ├── TrainingError        training data cannot make a model (no target, no rows, ...)
    │   ├── InvalidEvent         one event cannot be scored; ``stage`` says where it failed
    │   ├── UnknownClass         a class name asked for (``explain --class``) the model does not have
    │   ├── GateRefused          a model update failed a gate check; ``check`` names it
    │   ├── LifecycleError       a lifecycle command makes no sense now (nothing to roll back to, ...)
    │   └── CheckpointRejected   a checkpoint's signature does not match the state key
    ├── ConfigError              a setting or an argument is wrong (names the variable or flag)
    ├── BrokerError              (streams.kafka.errors) the broker cannot do what was asked
    │   ├── BrokerUnreachable    no answer from the bootstrap servers in time
    │   ├── TopicMissing         a topic the command needs does not exist
    │   ├── DeliveryFailed       records were not acknowledged
    │   ├── CommitRefused        an offset commit refused because the group moved on
    │   └── TlsError             no TLS connection: a CA, certificate or key file, or the handshake
    └── InferenceError           (streams.services.inference.errors) a /v2 request is not answered;
                                 one subclass per HTTP status (BadRequest, NotFound, NotReady, ...)

The score path catches ``InvalidEvent`` per event and dead-letters it with ``stage`` and ``reason``.
At the command line an error exits with its ``exit_status``: 2 for input a person must change
(``ModelMismatch``, ``ModelRefused``), 1 otherwise.
"""

from __future__ import annotations

from enum import StrEnum

from schemas.lifecycle import Check


class Stage(StrEnum):
    """Where in the score path an event failed."""

    decode = "decode"
    validate = "validate"
    score = "score"


class StreamscoreError(Exception):
    """Root of every error streamscore raises on purpose: its message is written for a person."""

    exit_status = 1  # what the command line exits with


class ConfigError(StreamscoreError):
    """A setting, flag or input file is wrong; the message names it and what to do."""


class ScoringError(StreamscoreError):
    """Root of the errors raised by ``scoring``."""


class BundleError(ScoringError):
    """A model bundle cannot be read, verified or written."""


class ManifestMismatch(BundleError):
    """A bundle file is missing or does not match the sha256 in its manifest."""


class ModelMismatch(BundleError):
    """A bundle whose parts disagree with its model file: the task, the class count, a category map."""

    exit_status = 2


class ModelRefused(ScoringError):
    """A model that cannot be served as given: not a LightGBM text model, an objective not served,
    a feature the reference table lacks or holds in another type."""

    exit_status = 2


class TrainingError(ScoringError):
    """The training data cannot produce a model."""


class InvalidEvent(ScoringError):
    """An event that cannot be scored, with the stage and a reason a producer can act on."""

    def __init__(self, stage: Stage, reason: str) -> None:
        super().__init__(f"{stage.value}: {reason}")
        self.stage = stage
        self.reason = reason


class UnknownClass(ScoringError):
    """A class asked for by name that the model does not have; the message lists its classes."""

    exit_status = 2


class GateRefused(ScoringError):
    """A model update that failed a gate check; ``check`` names the check, ``reason`` says why."""

    def __init__(self, check: Check, reason: str) -> None:
        super().__init__(f"{check.value}: {reason}")
        self.check = check
        self.reason = reason


class LifecycleError(ScoringError):
    """A lifecycle command that makes no sense in the current state (nothing to roll back to...)."""


class CheckpointRejected(ScoringError):
    """A checkpoint whose signature does not match: not loaded."""
