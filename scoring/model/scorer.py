"""Batch scoring with one LightGBM call per batch, isolating rows a model cannot score."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scoring.model.bundle import ModelBundle, Task


@dataclass(frozen=True)
class ScoredBatch:
    """Scores for the rows that scored; ``failed`` maps a row index to the reason it did not.

    ``scores`` is one number per scored row: the probability (binary), the value (regression), the
    predicted class's probability (multiclass). ``labels`` is the class decision: booleans
    (binary), the predicted class names (multiclass, an object array), None (regression).
    A multiclass batch also has ``probabilities`` (rows x K, column k the bundle's class k) and
    ``predicted`` (each row's class index, the most probable class; the first of equals).
    """

    scores: np.ndarray
    labels: np.ndarray | None
    scored: np.ndarray
    failed: dict[int, str]
    probabilities: np.ndarray | None = None
    predicted: np.ndarray | None = None


class BatchScorer:
    """Scores encoded rows with a bundle's booster.

    One ``Booster.predict`` per batch. If the model raises on the batch, rows are
    retried one at a time so that one poison row costs only itself; a non-finite
    score (any of a row's class probabilities) is a failure too.
    """

    def __init__(self, bundle: ModelBundle, num_threads: int = 1) -> None:
        self.bundle = bundle
        self.num_threads = num_threads
        self._binary = bundle.task is Task.binary
        self._classes = np.asarray(bundle.classes, dtype=object) if bundle.classes is not None else None
        self._threshold = bundle.metadata.threshold
        self._width = len(bundle.spec.features)

    def score(self, rows: list[list[float]] | np.ndarray) -> ScoredBatch:
        matrix = np.asarray(rows, dtype=np.float64).reshape(-1, self._width)
        failed: dict[int, str] = {}
        try:
            scores = self.bundle.predict(matrix, self.num_threads)
        except Exception:  # noqa: BLE001 - any model failure is isolated row by row below
            shape = (len(matrix),) if self._classes is None else (len(matrix), len(self._classes))
            scores = np.full(shape, np.nan)
            for i in range(len(matrix)):
                try:
                    scores[i] = self.bundle.predict(matrix[i : i + 1], self.num_threads)[0]
                except Exception as exc:  # noqa: BLE001
                    failed[i] = f"model raised {type(exc).__name__}: {exc}"
        finite = np.isfinite(scores) if scores.ndim == 1 else np.isfinite(scores).all(axis=1)
        if not finite.all():
            for i in np.flatnonzero(~finite):
                failed.setdefault(int(i), f"model returned a non-finite score {scores[i]}")
        scored = np.ones(len(matrix), dtype=bool)
        if failed:
            scored[list(failed)] = False
            scores = scores[scored]
        if self._classes is not None:
            predicted = scores.argmax(axis=1) if len(scores) else np.zeros(0, dtype=np.int64)
            return ScoredBatch(
                scores=scores[np.arange(len(scores)), predicted],
                labels=self._classes[predicted],
                scored=scored,
                failed=failed,
                probabilities=scores,
                predicted=predicted,
            )
        labels = scores >= self._threshold if self._binary else None
        return ScoredBatch(scores=scores, labels=labels, scored=scored, failed=failed)
