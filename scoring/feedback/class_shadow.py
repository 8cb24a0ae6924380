"""What the learner keeps of a multiclass model's event, and of its shadow challenger's scores.

A waiting event's row is its features, its K class probabilities, then a shadow challenger's K
(NaN when none scored it: ``EventBatch.of_monitor``). Once its label comes, the shadow challenger
is measured as binary's is: its KPIs on the board under its own name, and one pair on the
champion/challenger tally (right meaning the served class, the most probable, the first of
equals, is the label's), which ``PairedTally.challenger_wins`` turns into a promotion.

A checkpoint written before the shadow's columns (rows of features and K) is widened with NaN;
a checkpointed board of other classes than the model's is refused (``check_board``): its counts
would be read against the wrong classes.

>>> row = np.array([1.5, 0.2, 0.5, 0.3, np.nan, np.nan, np.nan])
>>> class_row(row, 1, 3)
([0.2, 0.5, 0.3], None)
>>> served_class([0.4, 0.4, 0.2])  # the first of equals
0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scoring.feedback.compare import PairedTally
from scoring.feedback.event_columns import EventBatch, ScoredEvent
from scoring.metrics.kpis import KpiBoard


def row_width(features: int, classes: int) -> int:
    """Values per waiting event: its features; a multiclass model's K, then a shadow challenger's K."""
    return features + 2 * classes


def class_row(row: np.ndarray, features: int, k: int) -> tuple[list[float], list[float] | None]:
    """(the served model's K probabilities, the shadow challenger's or None) of a waiting event's row."""
    shadow = row[features + k : features + 2 * k]
    return row[features : features + k].tolist(), None if np.isnan(shadow).any() else shadow.tolist()


def served_class(probabilities: Sequence[float]) -> int:
    """The class a model serves: the most probable, the first of equals."""
    return max(range(len(probabilities)), key=probabilities.__getitem__)


def learn_shadow(
    board: KpiBoard,
    tallies: dict[str, PairedTally],
    event: ScoredEvent,
    label: int,
    champion_class: int,
    shadow: list[float],
    segments: dict[str, str],
) -> None:
    """The shadow challenger's KPIs on ``board`` and its pair against the champion on ``tallies``."""
    challenger = str(event.shadow_model)
    predicted = served_class(shadow)
    board.update(challenger, label, shadow, segments, predicted)
    key = f"{event.model}|{challenger}"  # as the learner's binary tallies
    tally = tallies.get(key)
    if tally is None:
        tally = tallies[key] = PairedTally(event.model, challenger)
    tally.add(champion_class == label, predicted == label)


def check_board(board: KpiBoard, classes: Sequence[str]) -> None:
    """``ValueError`` when a checkpointed board counts other classes than the model's, or in another order."""
    if list(board.classes) != list(classes):
        raise ValueError(f"a board of classes {board.classes}, not the model's {list(classes)}")


def waiting_events(columns: dict[str, list], rows: bytes, features: int, k: int) -> EventBatch:
    """Waiting events of a checkpoint (``k`` classes, 0 unless multiclass); a multiclass model's rows
    of features and K only (written before the shadow's columns) get K NaN."""
    n = len(columns["event_id"])
    if k and n and len(rows) == 8 * n * (features + k):
        batch = EventBatch.of_payload(columns, rows, features + k)
        wide = np.hstack([batch.rows, np.full((n, k), np.nan)])
        return EventBatch.of_payload(columns, np.ascontiguousarray(wide).tobytes(), features + 2 * k)
    return EventBatch.of_payload(columns, rows, row_width(features, k))
