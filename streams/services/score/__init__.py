"""The score role: features in, predictions and monitoring records out.

``ScoreHandler`` (``handler``) is the transport-free core that the batched loop (``step``),
the Faust agent path (``agent``), backfill (``replay``) and the inference endpoint all score
through; ``outputs`` is what it emits, ``telemetry`` what it counts. Other roles use only
the names below.
"""

from streams.services.score.batch_stats import BatchStats
from streams.services.score.handler import Answered, RowRefused, ScoreHandler
from streams.services.score.outputs import ValidEvents, emit_predictions

__all__ = ["Answered", "BatchStats", "RowRefused", "ScoreHandler", "ValidEvents", "emit_predictions"]
