"""The model report: every section, numbers a user would check by hand, self-contained."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from scoring.model.bundle import ModelBundle
from scoring.offline.synthetic import agrawal_frame
from scoring.report import SECTIONS, ReportInput, build_report


def test_report_has_every_section_and_the_fairness_figures_by_hand(agrawal_bundle: ModelBundle) -> None:
    labelled = agrawal_frame(3000, seed=51, classification_function=2)
    frame, y = labelled.drop(columns=["approved"]), labelled["approved"].to_numpy(float)
    data = ReportInput(frame, y, "a test sample", segments=("elevel", "salary"), sensitive="car")
    page = build_report(agrawal_bundle, data)

    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    assert (
        len(re.findall(r'src="data:image/png;base64,', page)) == 4
    )  # importance, calibration, scores, what-if
    assert "http://" not in page and "https://" not in page, "the report must read offline"

    predicted = agrawal_bundle.predict(agrawal_bundle.spec.encode_frame(frame)) >= 0.5
    rates = frame.assign(p=predicted).groupby("car")["p"].mean()
    dp = re.search(r"demographic parity difference</td><td>([0-9.]+)<", page)
    assert dp is not None and abs(float(dp.group(1)) - (rates.max() - rates.min())) < 1e-4
    accuracy = float(np.mean(predicted == y))
    kpi = re.search(r"<td>accuracy</td><td>([0-9.]+)</td>", page)
    assert kpi is not None and abs(float(kpi.group(1)) - accuracy) < 1e-4
    assert "edu0" in page and "(missing)" not in page


def test_regression_report_shows_predicted_against_actual(tmp_path) -> None:
    from scoring.offline.synthetic import numeric_frame
    from scoring.offline.training import train_bundle

    frame = numeric_frame(2000, n_features=5, seed=3)
    frame["y"] = frame["f00"] * 3 + frame["f01"]
    bundle = train_bundle(frame, "y", None, task="regression", num_trees=20)
    page = build_report(
        bundle, ReportInput(frame.drop(columns=["y"]), frame["y"].to_numpy(), "s", sensitive="f02")
    )
    assert "Predicted against actual" in page and "Fairness metrics here are for binary" in page
    assert re.search(r"<td>mae</td>", page)


def test_text_from_the_data_is_never_read_as_math(tmp_path) -> None:
    """A category or feature name with ``$`` went through matplotlib's math parser and crashed the report."""
    from scoring.offline.training import train_bundle

    rng = np.random.default_rng(5)
    kind = rng.choice([r"$\foo$", "$5 plan", "plain"], 1500)
    frame = pd.DataFrame({"kind": kind, "price$": rng.normal(size=1500), "x": rng.normal(size=1500)})
    frame["y"] = ((kind == r"$\foo$") ^ (frame["price$"] > 0)).astype(float)
    bundle = train_bundle(frame, "y", None, num_trees=20)
    data = ReportInput(frame.drop(columns=["y"]), frame["y"].to_numpy(), r"$\bar{x}$", segments=("kind",))
    page = build_report(bundle, data)
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 4
    assert r"$\foo$" in page
