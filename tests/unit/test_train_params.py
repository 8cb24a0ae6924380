"""``streamscore train`` with a team's own parameters and early stopping, recorded for ``model describe``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scoring.model.bundle import ModelBundle
from streams.cli import main

TUNED = {"num_leaves": 7, "learning_rate": 0.3, "min_data_in_leaf": 13}


@pytest.fixture(scope="module")
def noisy_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Labels that hang on one input through a lot of noise: boosting fast on it overfits within rounds."""
    rng = np.random.default_rng(11)
    n = 3000
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(6)})
    frame["y"] = (rng.random(n) < 1 / (1 + np.exp(-frame["x0"]))).astype(int)
    path = tmp_path_factory.mktemp("noisy") / "noisy.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_the_params_file_reaches_the_booster_and_early_stopping_stops_before_the_limit(
    noisy_table: Path, tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture
) -> None:
    params = tmp_path / f"params{suffix}"
    params.write_text(
        json.dumps(TUNED) if suffix == ".json" else "".join(f"{k}: {v}\n" for k, v in TUNED.items())
    )
    out = tmp_path / "noisy"
    args = ["train", str(noisy_table), "--target", "y", "--out", str(out), "--params", str(params)]
    assert main([*args, "--trees", "1000", "--early-stopping-rounds", "20", "--validation", "0.2"]) == 0
    printed = capsys.readouterr().out
    print(printed)

    bundle = ModelBundle.load(out)
    assert {k: bundle.booster.params[k] for k in TUNED} == TUNED, "the trained booster's own parameters"
    run = bundle.metadata.training
    assert run is not None and run.params | TUNED == run.params
    assert run.num_boost_round == 1000 and run.early_stopping_rounds == 20 and run.validation_share == 0.2
    assert run.best_iteration < 1000 - 20, "stopped early"
    assert bundle.booster.current_iteration() == run.best_iteration, "the trees up to the best iteration"
    assert f"best iteration {run.best_iteration} of at most 1000 (stopped early)" in printed
    assert "min_data_in_leaf=13" in printed

    registry = tmp_path / "registry"
    assert main(["model", "register", str(out), "--registry", str(registry)]) == 0
    capsys.readouterr()
    assert main(["model", "describe", "1", "--name", "noisy", "--registry", str(registry)]) == 0
    described = json.loads(capsys.readouterr().out)["metadata"]["training"]
    assert described["best_iteration"] == run.best_iteration and described["params"]["num_leaves"] == 7


def test_without_params_train_keeps_its_defaults_and_records_them(noisy_table: Path, tmp_path: Path) -> None:
    assert (
        main(["train", str(noisy_table), "--target", "y", "--out", str(tmp_path / "b"), "--trees", "12"]) == 0
    )
    run = ModelBundle.load(tmp_path / "b").metadata.training
    assert run is not None and run.best_iteration == run.num_boost_round == 12
    assert (run.params["num_leaves"], run.params["learning_rate"], run.early_stopping_rounds) == (
        31,
        0.1,
        None,
    )


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"objective": "multiclass"}, 2, "objective multiclass makes a multiclass model, not binary"),
        ({"objective": "regression"}, 2, "makes a regression model, not binary"),
        ({"categorical_feature": [0]}, 1, "the feature spec says which inputs are categorical"),
        ({"n_estimators": 50}, 1, "the round limit is set twice, to [50, 80]"),
    ],
)
def test_params_the_bundle_decides_are_refused_in_one_line(
    noisy_table: Path, tmp_path: Path, capsys: pytest.CaptureFixture, params: dict, status: int, says: str
) -> None:
    path = tmp_path / "params.json"
    path.write_text(json.dumps(params))
    out = tmp_path / "b"
    args = [
        "train",
        str(noisy_table),
        "--target",
        "y",
        "--out",
        str(out),
        "--params",
        str(path),
        "--trees",
        "80",
    ]

    assert main(args) == status
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert says in line and not out.exists()
