"""Names that travel as text: a model version's key (``name:version``) and its task."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class ModelKey(NamedTuple):
    """One model version; written ``name:version`` in messages, Kafka keys and metric labels.

    >>> str(ModelKey("loans", "2"))
    'loans:2'
    >>> ModelKey.parse("loans:v1:2")  # names may hold a colon; versions may not
    ModelKey(name='loans:v1', version='2')
    """

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"

    @classmethod
    def parse(cls, text: str) -> ModelKey:
        name, _, version = text.rpartition(":")
        return cls(name, version)


class Task(StrEnum):
    """What a model predicts, and so which KPI judges it first and which way is better.

    ``binary``: one probability per event, the class decision ``score >= threshold``;
    ``multiclass``: one probability per class (K of them, the bundle names them), the class
    decision the most probable class; ``regression``: one value per event.

    >>> Task("binary").primary_metric, Task.multiclass.primary_metric, Task.regression.primary_metric
    ('accuracy', 'accuracy', 'mae')
    """

    binary = "binary"
    regression = "regression"
    multiclass = "multiclass"

    @property
    def classifies(self) -> bool:
        """A model of this task picks a class (binary, multiclass); a regression gives a value."""
        return self is not Task.regression

    @property
    def primary_metric(self) -> str:
        return "accuracy" if self.classifies else "mae"

    @property
    def higher_is_better(self) -> bool:
        """Accuracy rises as a model gets better; MAE falls."""
        return self.classifies

    def metric_name(self, metric: str) -> str:
        """A KPI's name among this task's KPIs (``STREAMSCORE_ALERT_KPI_METRIC``): a multiclass model's
        ``f1`` is its macro F1 and its ``auc`` its one-vs-rest macro AUC; other names stay as given.

        >>> [Task.multiclass.metric_name(m) for m in ("f1", "auc", "accuracy")], Task.binary.metric_name("f1")
        (['f1_macro', 'auc_macro_ovr', 'accuracy'], 'f1')
        """
        return _MULTICLASS_NAMES.get(metric, metric) if self is Task.multiclass else metric


_MULTICLASS_NAMES = {"f1": "f1_macro", "auc": "auc_macro_ovr"}
