"""The model report of a multiclass model (issue 28, phase D): the confusion matrix and each class's
metrics, read back from the HTML with the standard library's parser and held against scikit-learn."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from scoring.errors import UnknownClass
from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import MULTICLASS_TARGET, multiclass_frame
from scoring.report import SECTIONS, ReportInput, build_report, class_indices
from streams.cli import main

SHOWN = 1e-4  # the page shows four decimals


class Tables(HTMLParser):
    """Every table of a page with an id, as rows of cell texts; and every section's id."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.sections: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        named = dict(attrs)
        if tag == "section":
            self.sections.append(named.get("id", ""))
        elif tag == "table" and "id" in named:
            self._table = named["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None


def test_the_report_shows_the_confusion_matrix_and_each_classs_metrics_as_scikit_learn(
    queues_bundle: ModelBundle,
) -> None:
    labelled = multiclass_frame(1500, seed=61)
    frame = labelled.drop(columns=[MULTICLASS_TARGET])
    y = class_indices(queues_bundle, labelled[MULTICLASS_TARGET], "test")
    page = build_report(queues_bundle, ReportInput(frame, y, "a test sample", segments=("channel",)))
    parsed = Tables(page)
    assert parsed.sections == ["kpis", "classes", *SECTIONS[1:]]

    probabilities = queues_bundle.predict(queues_bundle.spec.encode_frame(frame))
    predicted = probabilities.argmax(axis=1)
    names = ["billing", "fraud", "support"]
    matrix = parsed.tables["confusion"]
    assert matrix[0] == ["true \\ predicted", *names, "support"]
    assert [row[0] for row in matrix[1:4]] == names, "classes in the model's order"
    shown = np.array([[int(v) for v in row[1:4]] for row in matrix[1:4]])
    expected = confusion_matrix(y, predicted, labels=[0, 1, 2])
    assert (shown == expected).all() and shown.sum() == 1500 and shown.trace() < 1500
    assert [int(row[4]) for row in matrix[1:4]] == np.bincount(y, minlength=3).tolist()

    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, labels=[0, 1, 2])
    per_class = parsed.tables["per-class"]
    assert per_class[0] == ["class", "precision", "recall", "F1", "support"]
    for k, row in enumerate(per_class[1:]):
        assert row[0] == names[k] and int(row[4]) == support[k]
        assert [float(v) for v in row[1:4]] == pytest.approx([precision[k], recall[k], f1[k]], abs=SHOWN)

    summary = {row[0]: float(row[1]) for row in parsed.tables["class-summary"][1:]}
    assert summary == pytest.approx(
        {
            "accuracy": accuracy_score(y, predicted),
            "f1_macro": f1_score(y, predicted, average="macro"),
            "f1_weighted": f1_score(y, predicted, average="weighted"),
            "log_loss": log_loss(y, probabilities),
            "auc_macro_ovr": roc_auc_score(y, probabilities, multi_class="ovr", average="macro"),
        },
        abs=SHOWN,
    )
    assert page.count('src="data:image/png;base64,') == 4  # importance, calibration, scores, what-if


def test_a_label_naming_no_class_is_refused_in_one_line(queues_bundle: ModelBundle) -> None:
    with pytest.raises(UnknownClass, match=r"tickets.csv: label 'refunds' names none of the model's classes"):
        class_indices(queues_bundle, ["billing", "refunds"], "tickets.csv")
    assert class_indices(queues_bundle, ["support", "billing"], "x").tolist() == [2, 0]


def test_train_report_and_report_at_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    multiclass_frame(1500, seed=62).to_csv(tmp_path / "tickets.csv", index=False)
    trained = [
        "train", str(tmp_path / "tickets.csv"), "--target", "queue", "--task", "multiclass",
        "--out", str(tmp_path / "queues"), "--trees", "5", "--report", str(tmp_path / "holdout.html"),
    ]  # fmt: skip
    assert main(trained) == 0
    assert "confusion" in Tables((tmp_path / "holdout.html").read_text()).tables
    page = tmp_path / "report.html"
    report = ["report", "--model", str(tmp_path / "queues"), "--out", str(page), "--target", "queue"]
    assert main([*report, "--data", str(tmp_path / "tickets.csv")]) == 0
    assert sum(int(v) for row in Tables(page.read_text()).tables["confusion"][1:4] for v in row[1:4]) == 1500
    capsys.readouterr()
    bad = multiclass_frame(10, seed=63)
    bad.loc[3, "queue"] = "refunds"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    assert main([*report, "--data", str(tmp_path / "bad.csv")]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 2 and "label 'refunds' names none of the model's classes" in said[0]
