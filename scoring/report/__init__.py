"""The HTML model report (``streamscore report``, ``train --report``): ``build_report`` picks the
report of the model's task (``page.ModelReport``; a multiclass model's ``classes.MulticlassReport``)."""

from __future__ import annotations

import matplotlib.pyplot as plt

from scoring.model.bundle import ModelBundle, Task
from scoring.report.classes import MulticlassReport, class_indices
from scoring.report.page import SECTIONS, ModelReport, ReportInput

__all__ = ["SECTIONS", "ModelReport", "MulticlassReport", "ReportInput", "build_report", "class_indices"]


def build_report(bundle: ModelBundle, data: ReportInput) -> str:
    """The report's HTML; a multiclass model's ``data.y`` holds class indices (``class_indices``)."""
    report = MulticlassReport if bundle.task is Task.multiclass else ModelReport
    # names and categories come from data: a "$" in them is text, never matplotlib's math markup
    with plt.rc_context({"text.parse_math": False}):
        return report(bundle, data).html()
