"""A team's own LightGBM models, made as a team makes them (not by ``streamscore train``), for the tests.

The table has two pandas ``category`` columns, ``colour`` in an order that is not alphabetical
and ``city`` with gaps, a boolean, and numbers with missing values. ``lgb.train`` early stops on a
validation split and ``save_model`` writes the file; an ``LGBMClassifier`` in a scikit-learn
``Pipeline`` learns the same table.
"""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

COLOURS = ["red", "green", "blue", "amber"]  # LightGBM's codes 0..3; sorted they would be amber, blue, ...
CITIES = ["Bergen", "Oslo", "Tromso"]
UNSEEN = {"colour": "purple", "city": "Paris"}


def team_table(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """(inputs, 0/1 labels): the label leans on every input, so every input gets splits."""
    rng = np.random.default_rng(seed)
    colour = pd.Categorical(rng.choice(COLOURS, n, p=[0.4, 0.3, 0.2, 0.1]), categories=COLOURS)
    city = pd.Categorical(rng.choice([*CITIES, None], n, p=[0.3, 0.3, 0.3, 0.1]), categories=CITIES)
    income = rng.lognormal(10, 0.5, n)
    income[rng.random(n) < 0.1] = np.nan
    frame = pd.DataFrame(
        {
            "income": income,
            "age": rng.integers(18, 80, n).astype(float),
            "colour": colour,
            "city": city,
            "member": rng.random(n) < 0.4,
        }
    )
    logit = (
        0.8 * np.nan_to_num(np.log(income) - 10, nan=-0.5) / 0.5
        + np.where(frame["colour"].isin(["red", "amber"]), 1.2, -0.8)
        + np.where(frame["city"] == "Oslo", 0.7, np.where(frame["city"].isna(), -0.6, 0.0))
        + np.where(frame["member"], 0.9, -0.3)
        + (frame["age"] - 45) / 30
    )
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame, labels


def with_unseen(frame: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """``frame`` with ``share`` of each category column replaced by a category the model never saw."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    for column, unseen in UNSEEN.items():
        out[column] = out[column].cat.add_categories([unseen])
        out.loc[rng.random(len(out)) < share, column] = unseen
    return out


def train_team_booster(frame: pd.DataFrame, labels: np.ndarray, path: Path) -> lgb.Booster:
    """``lgb.train`` with tuned parameters, early stopped on a fifth of the rows, saved to ``path``."""
    cut = len(frame) * 4 // 5
    train = lgb.Dataset(frame.iloc[:cut], labels[:cut])
    valid = lgb.Dataset(frame.iloc[cut:], labels[cut:], reference=train)
    params = {"objective": "binary", "num_leaves": 15, "learning_rate": 0.2, "min_data_in_leaf": 10}
    booster = lgb.train(
        {**params, "verbosity": -1, "seed": 3, "num_threads": 2},
        train,
        num_boost_round=1000,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(15, verbose=False)],
    )
    assert 0 < booster.best_iteration < 1000, "the table is meant to stop early"
    booster.save_model(str(path))
    return booster


def team_pipeline(frame: pd.DataFrame, labels: np.ndarray):
    """A fitted scikit-learn ``Pipeline``: a step choosing the inputs (the table has an id column too),
    then an ``LGBMClassifier``."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    inputs = list(frame.columns)
    pipeline = Pipeline(
        [
            ("inputs", FunctionTransformer(lambda table: table[inputs])),
            (
                "model",
                lgb.LGBMClassifier(n_estimators=60, num_leaves=7, random_state=5, verbose=-1, n_jobs=2),
            ),
        ]
    )
    return pipeline.fit(frame.assign(row_id=np.arange(len(frame))), labels)


def lightgbm_scores(booster: lgb.Booster, frame: pd.DataFrame) -> np.ndarray:
    """What the team's own code gives: ``Booster.predict`` on the DataFrame as it is."""
    return np.asarray(booster.predict(frame), dtype=np.float64)


QUEUE_CHANNELS = ["web", "chat", "email", "phone"]  # a category order of the team's own, not sorted
QUEUE_CODES = {"support": 0, "billing": 1, "fraud": 2}  # the team's codes: not the sorted order


def team_queue_table(
    n: int, seed: int, channels: list[str] = QUEUE_CHANNELS
) -> tuple[pd.DataFrame, pd.Series]:
    """(inputs, ``channel`` a pandas category of ``channels``; the queue names) of ``multiclass_frame``."""
    from scoring.offline.synthetic import MULTICLASS_TARGET, multiclass_frame

    frame = multiclass_frame(n, seed=seed)
    frame["channel"] = pd.Categorical(frame["channel"], categories=channels)
    return frame.drop(columns=[MULTICLASS_TARGET]), frame[MULTICLASS_TARGET]


def train_team_queues(
    frame: pd.DataFrame, queues: pd.Series, path: Path, objective: str = "multiclass"
) -> lgb.Booster:
    """A team's 3-class booster (``multiclass`` or ``multiclassova``), trained on its own class codes
    (``QUEUE_CODES``), saved to ``path``."""
    params = {"objective": objective, "num_class": 3, "num_leaves": 15, "verbosity": -1, "seed": 3}
    booster = lgb.train(
        {**params, "num_threads": 2}, lgb.Dataset(frame, queues.map(QUEUE_CODES)), num_boost_round=30
    )
    booster.save_model(str(path))
    return booster
