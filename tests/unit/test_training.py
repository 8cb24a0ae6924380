"""Training: spec inference, the train call, reference statistics, data digest, reading tables."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from scoring.errors import ConfigError, TrainingError
from scoring.model.bundle import ModelBundle, Task
from scoring.model.features import Feature, FeatureKind, FeatureSpec
from scoring.model.reference import build_reference
from scoring.model.validation import EventValidator
from scoring.offline.synthetic import events_from_frame
from scoring.offline.training import frame_sha256, read_table, train_bundle


def _regression_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, n)
    shade = rng.choice(["dark", "light"], n)
    y = 3 * x + np.where(shade == "dark", 2.0, -2.0) + rng.normal(0, 0.1, n)
    return pd.DataFrame({"x": x, "shade": shade, "y": y})


def _binary_frame(target: list) -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(len(target), dtype=float), "y": target})


def test_spec_inference_kinds_categories_ranges_and_optional_columns() -> None:
    frame = pd.DataFrame(
        {
            "city": ["paris", "berlin", "oslo", "berlin"],
            "age": [30, 41, 25, 60],
            "income": [1.5, np.nan, 3.0, 2.0],
            "plan": ["b", None, "a", "b"],
        }
    )

    spec = FeatureSpec.infer(frame)

    city, age, income, plan = spec.features
    assert spec.names == ["city", "age", "income", "plan"]
    assert (city.kind, city.categories, city.required) == (
        FeatureKind.categorical,
        ["berlin", "oslo", "paris"],
        True,
    )
    assert (age.kind, age.min, age.max, age.required) == (FeatureKind.numeric, 25.0, 60.0, True)
    assert (income.kind, income.min, income.max, income.required) == (FeatureKind.numeric, 1.5, 3.0, False)
    assert income.default is None
    assert (plan.kind, plan.categories, plan.required) == (FeatureKind.categorical, ["a", "b"], False)
    assert spec.categorical_indices == [0, 3]


def test_spec_inference_refuses_infinite_values() -> None:
    with pytest.raises(TrainingError, match="infinite"):
        FeatureSpec.infer(pd.DataFrame({"x": [1.0, np.inf]}))


def test_encode_frame_codes_categories_by_position_and_missing_as_nan() -> None:
    spec = FeatureSpec(
        features=[
            Feature(name="plan", kind=FeatureKind.categorical, required=False, categories=["a", "b"]),
            Feature(name="x", kind=FeatureKind.numeric),
        ]
    )

    matrix = spec.encode_frame(pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "plan": ["b", "a", None, "z"]}))

    np.testing.assert_array_equal(matrix, [[1.0, 1.0], [0.0, 2.0], [np.nan, 3.0], [2.0, 4.0]])


def test_training_a_regression_task_reports_mae_rmse_and_r2() -> None:
    bundle = train_bundle(_regression_frame(), "y", task="regression", num_trees=40, name="reg")

    assert bundle.task is Task.regression
    assert bundle.metadata.target == "y"
    assert {"mae", "rmse", "r2"} <= set(bundle.metrics)
    assert 0 < bundle.metrics["mae"] <= bundle.metrics["rmse"] < 1.0
    assert bundle.metrics["r2"] > 0.9
    assert bundle.metrics["holdout_rows"] == 80 and bundle.metrics["train_rows"] == 320
    assert bundle.spec.names == ["x", "shade"]


def test_training_a_binary_task_reports_auc_log_loss_and_accuracy(agrawal_bundle: ModelBundle) -> None:
    assert {"auc", "log_loss", "accuracy"} <= set(agrawal_bundle.metrics)
    assert agrawal_bundle.metrics["auc"] > 0.8


def test_training_with_out_dir_writes_a_bundle_that_loads(tmp_path: Path) -> None:
    bundle = train_bundle(_regression_frame(), "y", tmp_path / "reg", task="regression", num_trees=5)

    assert bundle.path == tmp_path / "reg"
    assert ModelBundle.load(tmp_path / "reg").metadata == bundle.metadata


def test_binary_target_with_values_other_than_0_and_1_is_a_training_error() -> None:
    with pytest.raises(TrainingError, match="only 0 and 1"):
        train_bundle(_binary_frame([0, 1, 2] * 10), "y", num_trees=2)


def test_binary_target_of_strings_is_a_training_error() -> None:
    frame = _binary_frame(["yes", "no"] * 15)
    try:
        train_bundle(frame, "y", num_trees=2)
    except TrainingError:
        raised = "TrainingError"
    except Exception as exc:  # noqa: BLE001 - the point is which error escapes
        raised = f"{type(exc).__name__}: {exc}"
    else:
        raised = "nothing"

    assert raised == "TrainingError", f"a string target raised {raised}, not TrainingError"


def test_missing_target_is_a_training_error() -> None:
    with pytest.raises(TrainingError, match="'label' not in"):
        train_bundle(_binary_frame([0, 1] * 10), "label")


def test_too_few_labelled_rows_is_a_training_error() -> None:
    frame = _binary_frame([0, 1, None, None, None, None, None, None, None, None, 0, 1])
    with pytest.raises(TrainingError, match="at least 10 labelled rows, got 4"):
        train_bundle(frame, "y")


def test_reference_counts_sum_to_the_non_missing_total(agrawal_bundle: ModelBundle) -> None:
    reference = agrawal_bundle.reference

    assert set(reference.numeric) | set(reference.categorical) == set(agrawal_bundle.spec.names)
    for stats in reference.numeric.values():
        assert sum(stats.counts) == stats.total - stats.missing
        assert len(stats.counts) == len(stats.edges) + 1
        assert stats.edges == sorted(set(stats.edges))
    for name, stats in reference.categorical.items():
        assert sum(stats.frequencies.values()) == stats.total - stats.missing
        assert (
            list(stats.frequencies)
            == agrawal_bundle.spec.features[agrawal_bundle.spec.names.index(name)].categories
        )
    assert reference.score is not None
    assert reference.score.total == agrawal_bundle.metrics["holdout_rows"]
    assert all(0.0 <= s <= 1.0 for s in reference.score.sample)


def test_reference_counts_missing_values_apart() -> None:
    spec = FeatureSpec(
        features=[
            Feature(name="x", kind=FeatureKind.numeric, required=False),
            Feature(name="c", kind=FeatureKind.categorical, required=False, categories=["a", "b"]),
        ]
    )
    x = np.array([np.nan, 1.0, 2.0, 3.0, 4.0, np.nan, 5.0, 6.0])
    c = np.array([0.0, 1.0, np.nan, 1.0, 1.0, 0.0, np.nan, np.nan])

    reference = build_reference(spec, np.column_stack([x, c]), np.array([0.1, 0.9]))

    numeric = reference.numeric["x"]
    assert (numeric.total, numeric.missing, sum(numeric.counts)) == (8, 2, 6)
    assert sorted(numeric.sample) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    categorical = reference.categorical["c"]
    assert (categorical.total, categorical.missing, categorical.frequencies) == (8, 3, {"a": 2, "b": 3})


def test_frame_sha256_is_stable_and_changes_with_a_value() -> None:
    frame = _regression_frame(50)
    digest = frame_sha256(frame)

    changed = frame.copy()
    changed.loc[17, "x"] += 1e-9

    assert len(digest) == 64
    assert frame_sha256(frame) == digest
    assert frame_sha256(frame.copy()) == digest
    assert frame_sha256(changed) != digest
    assert frame_sha256(frame.rename(columns={"x": "x2"})) != digest


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_read_table_reads_csv_and_parquet(tmp_path: Path, suffix: str) -> None:
    frame = pd.DataFrame({"city": ["paris", "oslo", "paris"], "age": [30.5, 41.0, math.nan], "n": [1, 2, 3]})
    path = tmp_path / f"table{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)

    read = read_table(path)

    pd.testing.assert_frame_equal(read, frame, check_dtype=False)
    assert [f.kind for f in FeatureSpec.infer(read).features] == [
        FeatureKind.categorical,
        FeatureKind.numeric,
        FeatureKind.numeric,
    ]


def test_read_table_refuses_other_formats(tmp_path: Path) -> None:
    path = tmp_path / "table.xlsx"
    path.write_bytes(b"")
    with pytest.raises(ConfigError, match=re.escape("expected a .csv or .parquet file")):
        read_table(path)


def test_a_boolean_column_trains_as_a_two_valued_feature_and_events_carry_it_as_json_booleans() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=400), "member": rng.random(400) > 0.5})
    frame["y"] = ((frame["x"] > 0) ^ frame["member"]).astype(int)

    bundle = train_bundle(frame, "y", num_trees=20)

    member = bundle.spec.features[1]
    assert (member.kind, member.categories, member.two_valued) == (
        FeatureKind.categorical,
        ["false", "true"],
        True,
    )
    assert bundle.metrics["auc"] > 0.9  # the model uses it: y flips with member
    validator = EventValidator(bundle.spec)
    events = list(events_from_frame(frame.drop(columns=["y"])))
    assert {type(e["features"]["member"]) for e in events} == {bool}
    rows = [validator.parse(orjson.dumps(e)).row for e in events]
    np.testing.assert_array_equal(np.array(rows), bundle.spec.encode_frame(frame.drop(columns=["y"])))
    as_names = {
        **events[0],
        "features": {**events[0]["features"], "member": str(events[0]["features"]["member"]).lower()},
    }
    assert validator.parse(orjson.dumps(as_names)).row == rows[0]


def test_a_csv_boolean_column_with_gaps_is_an_optional_two_valued_feature(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(
        "x,member,y\n" + "".join(f"{i},{['True', 'False', ''][i % 3]},{i % 2}\n" for i in range(60))
    )
    frame = read_table(tmp_path / "t.csv")
    assert frame["member"].dtype == object  # pandas reads True/False with gaps as objects

    spec = FeatureSpec.infer(frame.drop(columns=["y"]))

    assert (spec.features[1].categories, spec.features[1].required) == (["false", "true"], False)
    codes = spec.encode_frame(frame)[:3, 1]
    assert codes[0] == 1.0 and codes[1] == 0.0 and math.isnan(codes[2])


@pytest.mark.parametrize("name", ["price usd", "a,b", "tab\there", " lead", 'say "x"'])
def test_a_column_name_lightgbm_would_rewrite_is_refused_naming_it(name: str, tmp_path: Path) -> None:
    """LightGBM turned "price usd" into "price_usd": the bundle saved, then failed to load."""
    frame = pd.DataFrame({name: np.arange(30.0), "y": [0.0, 1.0] * 15})
    with pytest.raises(TrainingError) as refused:
        train_bundle(frame, "y", tmp_path / "b", num_trees=2)
    assert repr(name) in str(refused.value) and "rename the column" in str(refused.value)
    assert not (tmp_path / "b").exists(), "nothing written"
