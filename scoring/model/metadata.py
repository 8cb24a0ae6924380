"""What a bundle records beside its model (``metadata.json``): name, task, classes, origin, training.

A multiclass bundle names its classes in the model's order: class index ``k`` of the booster
(column ``k`` of ``Booster.predict``) is ``classes[k]``. Names are strings or integers, as the
target column held them; everywhere a name travels as a key or is compared with a label it is
its text (``class_text``): ``2``, ``2.0`` and ``"2"`` all name class ``"2"``.

>>> lookup = class_lookup(["billing", "fraud", "support"])
>>> lookup[class_text("fraud")], class_text(2.0), class_text(7)
(1, '2', '7')
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

import lightgbm as lgb
from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.keys import Task
from schemas.messages import MAX_IDENTIFIER_LENGTH, ClassName

BUNDLE_FORMAT = 1
MAX_CLASSES = 1000  # a prediction carries every class's probability: 1,000 make ~30 kB per event

Param = str | int | float | bool | None


def class_text(name: str | int | float) -> str:
    """A class name (or a label naming one) as text; a whole-number float is its integer."""
    if isinstance(name, float) and name.is_integer():
        return str(int(name))
    return str(name)


def class_lookup(classes: Sequence[str | int]) -> dict[str, int]:
    """Each class's index by its text."""
    return {class_text(c): k for k, c in enumerate(classes)}


def classes_problem(classes: Sequence[object]) -> str | None:
    """Why ``classes`` cannot name a multiclass model's classes; None when they can."""
    kinds = {type(c) for c in classes}
    if not (kinds <= {str} or kinds <= {int}):
        return f"class names must be all strings or all integers, got {sorted(k.__name__ for k in kinds)}"
    if not 2 <= len(classes) <= MAX_CLASSES:
        return f"a multiclass model has 2 to {MAX_CLASSES} classes, got {len(classes)}"
    texts = [class_text(c) for c in classes]  # type: ignore[arg-type]
    if len(set(texts)) != len(texts):
        return f"class names repeat: {sorted(t for t in set(texts) if texts.count(t) > 1)[:5]}"
    if any(not 0 < len(t) <= MAX_IDENTIFIER_LENGTH for t in texts):
        return f"a class name must have 1 to {MAX_IDENTIFIER_LENGTH} characters"
    return None


class Origin(BaseModel):
    """How the model was made, and the encoding it was trained with (checked at every load)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    made_by: Literal["train", "import"] = "train"
    objective: str | None = None  # as model.txt writes it, e.g. "binary sigmoid:1"
    num_class: int = 1
    pandas_categorical: list[str] | None = None  # the inputs model.txt's category lists encode, in order
    integer_codes: list[str] = Field(default_factory=list)  # categorical inputs trained on integer codes
    categories: dict[str, str] = Field(default_factory=dict)  # input -> where its category map comes from
    classes_from: str | None = None  # multiclass: where the class names come from
    source: str | None = None  # an imported model's file name and sha256
    labelled: bool = True  # metrics and estimators measured on labelled rows


class TrainingRun(BaseModel):
    """What ``train`` used: the LightGBM parameters, the round limit, early stopping and its outcome."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    params: dict[str, Param]
    num_boost_round: int
    early_stopping_rounds: int | None = None
    validation_share: float = 0.0
    best_iteration: int  # the rounds kept (the round limit when nothing stopped early)
    rows: dict[str, int] = Field(default_factory=dict)  # train, validation, holdout


class Metadata(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    created_at: datetime
    task: Task
    threshold: float = 0.5
    data_sha256: str
    lightgbm_version: str
    target: str
    bundle_format: int = BUNDLE_FORMAT
    model_kind: Literal["lightgbm", "linear"] = "lightgbm"
    classes: list[ClassName] | None = Field(
        None, description="multiclass: the class names in the model's order (index k <-> classes[k])"
    )
    origin: Origin | None = None
    training: TrainingRun | None = None

    @model_validator(mode="after")
    def _classes_for_multiclass(self) -> Metadata:
        if (self.task is Task.multiclass) != (self.classes is not None):
            raise ValueError("a multiclass bundle names its classes (classes), any other has none")
        problem = None if self.classes is None else classes_problem(self.classes)
        if problem is not None:
            raise ValueError(problem)
        return self


def new_metadata(
    name: str,
    version: str,
    task: Task,
    data_sha256: str,
    target: str,
    origin: Origin | None = None,
    training: TrainingRun | None = None,
    classes: Sequence[str | int] | None = None,
) -> Metadata:
    return Metadata(
        name=name,
        version=version,
        created_at=datetime.now(UTC),
        task=task,
        data_sha256=data_sha256,
        lightgbm_version=lgb.__version__,
        target=target,
        classes=None if classes is None else list(classes),
        origin=origin,
        training=training,
    )
