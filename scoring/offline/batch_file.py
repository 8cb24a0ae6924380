"""Batch scoring of a table with the stream's own validation and scorer.

Each row becomes the same feature event the stream would see (non-feature columns
are ignored, as unknown features are by default), goes through ``EventValidator``
and is scored in batches by ``BatchScorer``: the scores are the stream's scores.
Rows that would be dead-lettered on the stream are returned as rejects with the
same reason. A multiclass model's scores add a column per class, ``probability_NAME``, in the
model's class order; ``label`` is then the predicted class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import orjson
import pandas as pd

from scoring.errors import InvalidEvent
from scoring.model.bundle import ModelBundle, Task
from scoring.model.scorer import BatchScorer
from scoring.model.validation import EventValidator

CHUNK_ROWS = 10_000


def _events(frame: pd.DataFrame, features: list[str], id_column: str | None) -> Iterator[tuple[str, bytes]]:
    ids = frame[id_column].astype(str).tolist() if id_column else [f"row-{i}" for i in frame.index]
    columns = [c for c in features if c in frame.columns]
    values = frame[columns].astype(object).where(frame[columns].notna(), None)
    for event_id, row in zip(ids, values.itertuples(index=False, name=None), strict=True):
        event = {
            "event_id": event_id,
            "entity_id": event_id,
            "event_time": 0,
            "features": dict(zip(columns, row, strict=True)),
        }
        yield event_id, orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY)


def score_frame(
    bundle: ModelBundle,
    frame: pd.DataFrame,
    id_column: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scored: event_id, score[, label][, probability_NAME per class]; rejects: event_id, stage,
    reason), in input order."""
    validator = EventValidator(bundle.spec)
    scorer = BatchScorer(bundle)
    scored: list[tuple[str, float, bool | str | int | None]] = []
    probabilities: list[np.ndarray] = []
    rejects: list[tuple[str, str, str]] = []
    for start in range(0, len(frame), CHUNK_ROWS):
        chunk = frame.iloc[start : start + CHUNK_ROWS]
        ids, rows = [], []
        for event_id, payload in _events(chunk, bundle.spec.names, id_column):
            try:
                rows.append(validator.parse(payload).row)
                ids.append(event_id)
            except InvalidEvent as exc:
                rejects.append((event_id, exc.stage.value, exc.reason))
        if rows:
            result = scorer.score(np.asarray(rows, dtype=np.float64))
            kept = [ids[i] for i in np.flatnonzero(result.scored)]
            rejects += [(ids[i], "score", reason) for i, reason in result.failed.items()]
            labels = result.labels.tolist() if result.labels is not None else [None] * len(kept)
            scored += zip(kept, result.scores.tolist(), labels, strict=True)
            if result.probabilities is not None:
                probabilities.append(result.probabilities)
        if on_progress is not None:
            on_progress(len(chunk))
    out = pd.DataFrame(scored, columns=["event_id", "score", "label"])
    if bundle.task is Task.regression:
        out = out.drop(columns=["label"])
    if bundle.task is Task.multiclass:
        k = len(bundle.class_names)
        table = np.concatenate(probabilities) if probabilities else np.zeros((0, k))
        columns = [f"probability_{name}" for name in bundle.class_names]
        out = pd.concat([out, pd.DataFrame(table, columns=columns)], axis=1)
    return out, pd.DataFrame(rejects, columns=["event_id", "stage", "reason"])
