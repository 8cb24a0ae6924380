"""A team's own LightGBM parameters for ``train``: read from a JSON or YAML file, merged over the defaults.

What the file sets wins; the defaults fill the rest (an alias counts: ``min_child_samples``
replaces the default ``min_data_in_leaf``). Three kinds of key are not passed to LightGBM as
they are: the round limit (``num_iterations`` and its aliases) becomes the limit ``train``
uses, an ``objective`` must make a model of the task trained (``task_of_objective``), and what
the bundle decides itself is refused: the inputs and their kinds come from the feature spec,
early stopping from ``--early-stopping-rounds``, the class count from the task.

YAML needs PyYAML, which a development install has and the runtime does not require: without
it a YAML file is refused with a line saying so, and JSON always works.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.keys import Task
from scoring.errors import ConfigError
from scoring.model.model_file import task_of_objective

DEFAULTS: dict[str, Any] = {
    "num_leaves": 31,
    "learning_rate": 0.1,
    "min_data_in_leaf": 20,
    "deterministic": True,
    "num_threads": 2,
    "verbosity": -1,
}
ALIASES = {  # LightGBM's aliases of the defaults' keys (its docs, Parameters)
    "num_leaves": ("num_leaf", "max_leaves", "max_leaf", "max_leaf_nodes"),
    "learning_rate": ("shrinkage_rate", "eta"),
    "min_data_in_leaf": ("min_data_per_leaf", "min_data", "min_child_samples", "min_samples_leaf"),
    "num_threads": ("num_thread", "nthread", "nthreads", "n_jobs"),
    "verbosity": ("verbose",),
    "seed": ("random_seed", "random_state"),
}
ROUNDS = (
    "num_iterations", "num_iteration", "n_iter", "num_tree", "num_trees", "num_round", "num_rounds",
    "nrounds", "num_boost_round", "n_estimators", "max_iter",
)  # fmt: skip
REFUSED = {
    "categorical_feature": "the feature spec says which inputs are categorical",
    "cat_feature": "the feature spec says which inputs are categorical",
    "categorical_column": "the feature spec says which inputs are categorical",
    "early_stopping_round": "use --early-stopping-rounds",
    "early_stopping_rounds": "use --early-stopping-rounds",
    "early_stopping": "use --early-stopping-rounds",
    "n_iter_no_change": "use --early-stopping-rounds",
    "num_class": "the class count is the target's (--task multiclass)",
    "num_classes": "the class count is the target's (--task multiclass)",
    "valid": "the validation rows are a share of the table (--validation)",
    "task": "streamscore trains; predicting is the worker's",
}


def read_params(path: Path | str) -> dict[str, Any]:
    """LightGBM parameters from a JSON (``.json``) or YAML (``.yaml``/``.yml``) file of one mapping."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (--params)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it as text ({exc})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(
                f"{path}: reading YAML needs PyYAML (pip install pyyaml); or give JSON"
            ) from None
        try:
            params = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    else:
        try:
            params = json.loads(text)
        except ValueError as exc:
            raise ConfigError(
                f"{path} is not valid JSON ({exc}); a .yaml or .yml file is read as YAML"
            ) from None
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise ConfigError(f"{path}: expected one mapping of LightGBM parameter names to values")
    return params


def training_params(
    given: dict[str, Any], task: Task, seed: int, rounds: int | None, num_class: int | None = None
) -> tuple[dict[str, Any], int]:
    """(the parameters LightGBM gets, the round limit): ``given`` over the defaults.

    ``rounds`` (``--trees``) and a round limit in ``given`` must agree when both are set;
    neither gives 100. A multiclass model gets ``num_class`` (its target's class count) and the
    objective ``multiclass`` unless ``given`` names ``multiclassova``.
    """
    for key, why in REFUSED.items():
        if key in given:
            raise ConfigError(f"--params sets {key!r}: {why}")
    params = {k: v for k, v in given.items() if k not in ROUNDS}
    limits = {given[k] for k in ROUNDS if k in given} | ({rounds} if rounds is not None else set())
    if len(limits) > 1:
        raise ConfigError(f"the round limit is set twice, to {sorted(limits)} (--trees and --params)")
    limit = limits.pop() if limits else 100
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ConfigError(f"the round limit must be a positive integer, got {limit!r}")
    objective = params.get("objective", params.get("application", params.get("app")))
    if objective is not None:
        if not isinstance(objective, str):
            raise ConfigError(f"--params: objective must be a name, got {objective!r}")
        task_of_objective(objective, task)  # refuses one that makes another kind of model
    else:
        params["objective"] = task.value
    if task is Task.multiclass:
        if num_class is None:
            raise ConfigError("a multiclass model needs its class count")
        params["num_class"] = num_class
    for key, value in (*DEFAULTS.items(), ("seed", seed)):
        if not any(name in params for name in (key, *ALIASES.get(key, ()))):
            params[key] = value
    return params, limit


def shown(params: dict[str, Any]) -> str:
    """The parameters in one line, the given ones as LightGBM names them."""
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "verbosity")
