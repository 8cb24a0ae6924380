"""The demo's loan data behaves like real data: noisy, overlapping classes, a believable model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from river.datasets import synth

from scoring.model.features import FeatureKind
from scoring.offline.synthetic import agrawal_stream, loan_frame
from scoring.offline.training import read_table, train_bundle


def test_a_model_on_the_loan_data_is_good_but_not_perfect() -> None:
    frame = loan_frame(8000, seed=5)

    bundle = train_bundle(frame, "approved", num_trees=60)

    print({k: round(v, 3) for k, v in bundle.metrics.items() if k in ("auc", "accuracy")})
    assert 0.80 <= bundle.metrics["auc"] <= 0.95
    assert 0.70 <= bundle.metrics["accuracy"] <= 0.90
    assert 0.3 < frame["approved"].mean() < 0.7


def test_the_loan_data_has_whole_numbers_categories_and_a_boolean() -> None:
    frame = loan_frame(500, seed=5)
    spec = train_bundle(frame, "approved", num_trees=5).spec

    kinds = {f.name: (f.kind, f.two_valued) for f in spec.features}
    assert kinds["coapplicant"] == (FeatureKind.categorical, True)
    assert kinds["elevel"] == (FeatureKind.categorical, False) and kinds["salary"][0] is FeatureKind.numeric
    assert all(pd.api.types.is_integer_dtype(frame[c]) for c in ("salary", "age", "loan"))


def test_the_shipped_sample_is_the_loan_data_and_reads_back_the_same(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[2] / "examples" / "loans.csv"
    shipped = read_table(sample)

    regenerated = loan_frame(4000, seed=2024)
    regenerated.to_csv(tmp_path / "again.csv", index=False)
    assert shipped.equals(read_table(tmp_path / "again.csv"))
    assert shipped["coapplicant"].dtype == np.bool_


def test_the_agrawal_stream_draws_what_rivers_does() -> None:
    """``agrawal_stream`` replaces river's stream for speed: every value must stay river's."""
    for function in range(10):
        for seed, perturbation in ((1, 0.0), (42, 0.1)):
            river = list(
                synth.Agrawal(classification_function=function, seed=seed, perturbation=perturbation).take(
                    500
                )
            )
            assert list(agrawal_stream(500, seed, function, perturbation)) == river, (
                function,
                seed,
                perturbation,
            )
