"""The model report of a multiclass model: a confusion matrix and each class's metrics.

Beside the sections every report has, it shows the confusion matrix (counts; rows the true
class, columns the served class, the most probable, the first of equals; classes in the model's
order) and per class precision, recall, F1 and support, with accuracy, macro and weighted F1,
log loss and macro one-vs-rest AUC (``multiclass_metrics``, as the holdout's at ``train``).
``ReportInput.y`` holds class indices (``ModelBundle.class_index``; ``class_indices`` refuses a
label that names none of the classes, exit status 2 at the command line). Calibration is of the
served class (its probability against how often it was right), importance sums each feature's
mean |SHAP| over the classes, and a what-if curve is each class's mean probability.
"""

from __future__ import annotations

from collections.abc import Iterable

import matplotlib.pyplot as plt
import numpy as np

from scoring.errors import UnknownClass
from scoring.metrics.holdout import multiclass_metrics
from scoring.metrics.multiclass import confusion_kpis
from scoring.model.bundle import ModelBundle
from scoring.model.explain import Explainer
from scoring.model.features import FeatureKind
from scoring.report.page import WHAT_IF_FEATURES, WHAT_IF_ROWS, ModelReport, ReportInput, _png, _table


def class_indices(bundle: ModelBundle, labels: Iterable[object], where: str) -> np.ndarray:
    """Each label's class index in ``bundle``; ``UnknownClass`` naming a label that is none of its classes."""
    out = []
    for label in labels:
        k = bundle.class_index(label)  # type: ignore[arg-type]
        if k is None:
            names = ", ".join(bundle.class_names)
            raise UnknownClass(
                f"{where}: label {label!r} names none of the model's classes ({names})\n"
                "a report takes labels of the model's classes only: fix or drop those rows"
            )
        out.append(k)
    return np.asarray(out, dtype=int)


SUMMARY = ("accuracy", "f1_macro", "f1_weighted", "log_loss", "auc_macro_ovr")


class MulticlassReport(ModelReport):
    extra_sections = {"classes": "Confusion matrix and per-class metrics"}

    def __init__(self, bundle: ModelBundle, data: ReportInput) -> None:
        super().__init__(bundle, data)
        self.y = np.asarray(data.y, dtype=int)
        self.predicted = self.scores.argmax(axis=1)  # the served class: the first of equals

    @property
    def served_scores(self) -> np.ndarray:
        return self.scores.max(axis=1)

    def metrics(self, y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
        return multiclass_metrics(np.asarray(y, dtype=int), scores)

    def confusion(self) -> np.ndarray:
        """K x K counts, rows the true class, columns the served class."""
        k = len(self.bundle.class_names)
        counts = np.zeros((k, k), dtype=int)
        np.add.at(counts, (self.y, self.predicted), 1)
        return counts

    def section(self, sid: str) -> str:
        names = list(self.bundle.class_names)
        counts = self.confusion()
        kpis = confusion_kpis(counts, names)
        header = ["true \\ predicted", *names, "support"]
        matrix = [[name, *map(int, counts[k]), int(counts[k].sum())] for k, name in enumerate(names)]
        matrix.append(["predicted", *map(int, counts.sum(axis=0)), int(counts.sum())])
        per_class = []
        for k, name in enumerate(names):
            precision, recall = kpis[f"precision:{name}"], kpis[f"recall:{name}"]
            seen = counts[k].sum() + counts[:, k].sum()
            f1 = 2 * counts[k, k] / seen if seen else float("nan")
            per_class.append([name, precision, recall, float(f1), int(counts[k].sum())])
        overall = self.metrics(self.y, self.scores)
        summary = [[m, overall[m]] for m in SUMMARY]
        return (
            "<p>Counts of labelled rows: rows are the true class, columns the served class (the most "
            "probable), in the model's class order.</p>"
            + _table(header, matrix).replace("<table>", '<table id="confusion">', 1)
            + _table(["class", "precision", "recall", "F1", "support"], per_class).replace(
                "<table>", '<table id="per-class">', 1
            )
            + _table(["metric", "value"], summary).replace("<table>", '<table id="class-summary">', 1)
        )

    def calibration(self) -> str:
        """The served class's probability against how often it was the label (top-label calibration)."""
        p, right = self.served_scores, (self.predicted == self.y).astype(float)
        edges = np.linspace(0, 1, 11)
        which = np.clip(np.digitize(p, edges) - 1, 0, 9)
        rows = []
        for b in range(10):
            mask = which == b
            if mask.any():
                rows.append([f"{edges[b]:.1f}-{edges[b + 1]:.1f}", int(mask.sum()), float(p[mask].mean()),
                             float(right[mask].mean())])  # fmt: skip
        fig, ax = plt.subplots(figsize=(5.5, 5))
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
        ax.plot([r[2] for r in rows], [r[3] for r in rows], "o-", label="model")
        ax.set_xlabel("probability of the served class")
        ax.set_ylabel("share right")
        ax.legend()
        header = ["probability bin", "rows", "mean probability", "share right"]
        return _png(fig) + _table(header, rows)

    def _mean_shap(self, matrix: np.ndarray) -> np.ndarray:
        """Each feature's mean |SHAP| summed over the classes (raw score units)."""
        contributions = Explainer(self.bundle).contributions(matrix)  # rows x classes x (features + 1)
        return np.abs(contributions[:, :, :-1]).mean(axis=0).sum(axis=0)

    def importance(self) -> str:
        names = self.bundle.spec.names
        gain = np.asarray(self.bundle.booster.feature_importance(importance_type="gain"), dtype=float)
        shap = self._mean_shap(self.matrix[: min(len(self.matrix), 2000)])
        order = np.argsort(shap)
        fig, axes = plt.subplots(1, 2, figsize=(11, 0.35 * len(names) + 1.5))
        axes[0].barh([names[i] for i in order], gain[order] / max(gain.sum(), 1e-12), color="#4c72b0")
        axes[0].set_title("gain (share of total)")
        axes[1].barh([names[i] for i in order], shap[order], color="#dd8452")
        axes[1].set_title("mean |SHAP| summed over the classes")
        rows = [[names[i], float(gain[i] / max(gain.sum(), 1e-12)), float(shap[i])] for i in order[::-1]]
        return _png(fig) + _table(["feature", "gain share", "mean |SHAP|, all classes"], rows)

    def fairness(self) -> str:
        return "<p>Fairness metrics here are for binary classifiers.</p>"

    def what_if(self) -> str:
        spec, names = self.bundle.spec, self.bundle.class_names
        sample = self.matrix[: min(WHAT_IF_ROWS, len(self.matrix))]
        top = np.argsort(-self._mean_shap(self.matrix[:2000]))[:WHAT_IF_FEATURES]
        fig, axes = plt.subplots(1, len(top), figsize=(5 * len(top), 3.5), squeeze=False)
        for ax, j in zip(axes[0], top, strict=True):
            feature = spec.features[j]
            if feature.kind is FeatureKind.numeric:
                column = sample[:, j]
                low = feature.min if feature.min is not None else float(np.nanmin(column))
                high = feature.max if feature.max is not None else float(np.nanmax(column))
                grid = np.linspace(low, high, 25)
            else:
                grid = np.arange(len(feature.categories), dtype=float)
                ax.set_xticks(grid, feature.categories, rotation=45, ha="right")
            means = []
            for value in grid:
                varied = sample.copy()
                varied[:, j] = value
                means.append(self.bundle.predict(varied).mean(axis=0))
            for k, name in enumerate(names):
                ax.plot(grid, [m[k] for m in means], lw=2, label=name)
            ax.set_title(feature.name)
            ax.set_ylabel("mean probability")
            ax.legend(fontsize="small")
        note = f"<p>Each class's mean probability over {len(sample)} rows with only this feature varied.</p>"
        return _png(fig) + note
