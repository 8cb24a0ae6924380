"""What a LightGBM text model says about itself, and whether a bundle's other parts agree with it.

``Booster.save_model`` writes a header (``objective=``, ``num_class=``, ``feature_names=``,
``feature_infos=``: ``[lo:hi]`` for a numeric input, ``a:b:c`` category codes for a categorical
one, ``none`` for one no tree uses) and, at the end, ``pandas_categorical``: the category lists
of the training DataFrame's ``category`` columns, in its column order. LightGBM codes a category
by its position in that list, so the list is the encoding.

``task_of_objective`` is the one place that maps an objective to a ``Task``. ``check_agreement``
is the one check every bundle load runs (``ModelBundle.load``): names, task, class count and
category maps against the model file, or ``ModelMismatch`` naming the first disagreement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from schemas.keys import Task
from scoring.errors import ModelMismatch, ModelRefused
from scoring.model.features import BOOLEAN_CATEGORIES, FeatureKind, FeatureSpec

BINARY_OBJECTIVES = ("binary",)
MULTICLASS_OBJECTIVES = ("multiclass", "multiclassova")  # K probabilities per event (softmax, or K sigmoids)
REGRESSION_OBJECTIVES = (
    "regression", "regression_l1", "huber", "fair", "poisson", "quantile", "mape", "gamma", "tweedie",
)  # fmt: skip
EITHER_OBJECTIVES = ("cross_entropy", "cross_entropy_lambda")  # probabilities: a 0/1 or a share target
SERVED_OBJECTIVES = (*BINARY_OBJECTIVES, *MULTICLASS_OBJECTIVES, *EITHER_OBJECTIVES, *REGRESSION_OBJECTIVES)
ALIASES = {
    "regression_l2": "regression", "l2": "regression", "mean_squared_error": "regression",
    "mse": "regression", "l2_root": "regression", "root_mean_squared_error": "regression",
    "rmse": "regression", "l1": "regression_l1", "mean_absolute_error": "regression_l1",
    "mae": "regression_l1", "mean_absolute_percentage_error": "mape", "xentropy": "cross_entropy",
    "xentlambda": "cross_entropy_lambda", "softmax": "multiclass", "multiclass_ova": "multiclassova",
    "ova": "multiclassova", "ovr": "multiclassova",
}  # fmt: skip


def objective_name(objective: str | None) -> str | None:
    """The canonical name of an objective as a model file or a parameter gives it (``binary sigmoid:1``)."""
    if not objective:
        return None
    name = objective.split()[0].strip().lower()
    return ALIASES.get(name, name)


def task_of_objective(objective: str | None, task: Task | str | None = None) -> Task:
    """The task a model of ``objective`` solves; ``task`` where the objective alone does not say.

    >>> task_of_objective("binary sigmoid:1"), task_of_objective("l1")
    (<Task.binary: 'binary'>, <Task.regression: 'regression'>)
    >>> task_of_objective("multiclassova num_class:3 sigmoid:1"), task_of_objective("softmax")
    (<Task.multiclass: 'multiclass'>, <Task.multiclass: 'multiclass'>)
    >>> task_of_objective("cross_entropy", "regression")
    <Task.regression: 'regression'>
    """
    name = objective_name(objective)
    wanted = Task(task) if task is not None else None
    served = f"streamscore serves the objectives {', '.join(SERVED_OBJECTIVES)}"
    if name is None:
        if wanted is Task.regression:  # a custom objective: predict returns the raw score, a value
            return wanted
        raise ModelRefused(
            "the model names no objective (a custom one): its predict returns raw scores, not "
            "probabilities; serve it with --task regression, or retrain it with a built-in objective"
        )
    if name in EITHER_OBJECTIVES:
        if wanted is None:
            raise ModelRefused(f"objective {name} fits a 0/1 or a share target: say which with --task")
        return wanted
    if name in BINARY_OBJECTIVES:
        found = Task.binary
    elif name in MULTICLASS_OBJECTIVES:
        found = Task.multiclass
    elif name in REGRESSION_OBJECTIVES:
        found = Task.regression
    else:
        raise ModelRefused(f"objective {name} is not served: {served}")
    if wanted is not None and wanted is not found:
        raise ModelRefused(f"objective {name} makes a {found.value} model, not {wanted.value}")
    return found


@dataclass(frozen=True)
class ModelFile:
    """The header and category lists of a LightGBM text model."""

    objective: str | None  # as written, e.g. "binary sigmoid:1"; None for a custom objective
    num_class: int
    trees_per_iteration: int
    feature_names: list[str]
    categorical: dict[int, int]  # input position -> highest category code the trees saw
    used: frozenset[int]  # inputs whose kind the file states (not "none")
    pandas_categorical: list[list[str]] | None

    @property
    def objective_name(self) -> str | None:
        return objective_name(self.objective)


def read_model_file(text: str) -> ModelFile:
    """Parse a LightGBM text model's header; ``ValueError`` if it is not one."""
    if not text.startswith("tree\n"):
        raise ValueError("it does not start with LightGBM's 'tree' line")
    header: dict[str, str] = {}
    for line in text[: text.find("\n\n") if "\n\n" in text else len(text)].splitlines()[1:]:
        key, sep, value = line.partition("=")
        if sep:
            header[key] = value
    missing = [k for k in ("num_class", "feature_names", "feature_infos") if k not in header]
    if missing:
        raise ValueError(f"its header lacks {', '.join(missing)}")
    names, infos = header["feature_names"].split(), header["feature_infos"].split()
    if len(names) != len(infos):
        raise ValueError(f"{len(names)} feature names but {len(infos)} feature infos")
    categorical: dict[int, int] = {}
    for i, info in enumerate(infos):
        if info != "none" and not info.startswith("["):
            categorical[i] = max(int(code) for code in info.split(":"))
    try:
        num_class = int(header["num_class"])
        per_iteration = int(header.get("num_tree_per_iteration", num_class))
    except ValueError as exc:
        raise ValueError(f"its class count is not a number: {exc}") from None
    return ModelFile(
        objective=header.get("objective"),
        num_class=num_class,
        trees_per_iteration=per_iteration,
        feature_names=names,
        categorical=categorical,
        used=frozenset(i for i, info in enumerate(infos) if info != "none"),
        pandas_categorical=_pandas_categorical(text),
    )


def _pandas_categorical(text: str) -> list[list[str]] | None:
    at = text.rfind("\npandas_categorical:")
    if at < 0:
        return None
    lists = json.loads(text[at + len("\npandas_categorical:") :].splitlines()[0])
    if lists is None:
        return None
    if not isinstance(lists, list) or not all(isinstance(c, list) for c in lists):
        raise ValueError("its pandas_categorical is not a list of category lists")
    return [[category_text(v) for v in categories] for categories in lists]


def category_text(value: object) -> str:
    """A category as events name it: a whole-number float (pandas reads ints with gaps so) as an int."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def pandas_features(model: ModelFile, recorded: list[str] | None) -> list[int]:
    """Positions of the inputs ``pandas_categorical`` lists, in its order: as the bundle recorded them,
    else the model's categorical inputs when they are as many (LightGBM's default)."""
    lists = model.pandas_categorical or []
    if recorded is None and not lists:
        return []
    if recorded is not None:
        if any(name not in model.feature_names for name in recorded):
            raise ModelMismatch(f"the bundle maps pandas categories of {recorded}, not all model inputs")
        positions = [model.feature_names.index(name) for name in recorded]
    else:
        positions = sorted(model.categorical)
    if len(positions) != len(lists):
        raise ModelMismatch(
            f"model.txt carries {len(lists)} pandas category lists, the bundle maps {len(positions)} inputs "
            "to them"
        )
    return positions


def check_agreement(
    model: ModelFile,
    spec: FeatureSpec,
    task: Task,
    pandas_recorded: list[str] | None = None,
    integer_codes: frozenset[str] = frozenset(),
    classes: int = 1,
) -> None:
    """``ModelMismatch`` naming the first way the bundle's spec, task and class count (``classes``: how
    many the bundle names, 1 for a model of one score per event) disagree with ``model``."""
    if model.feature_names != spec.names:
        raise ModelMismatch(f"model.txt takes the inputs {model.feature_names}, the spec lists {spec.names}")
    found = max(model.num_class, model.trees_per_iteration)
    if found != classes and classes == 1:
        raise ModelMismatch(
            f"model.txt is a {found}-class model (objective {model.objective}), the bundle says "
            f"{task.value}: a {task.value} model gives one score per event"
        )
    if found != classes:
        what = "gives one score per event" if found == 1 else f"is a {found}-class model"
        raise ModelMismatch(
            f"model.txt {what} (objective {model.objective}), the bundle names {classes} classes"
        )
    try:
        task_of_objective(model.objective, task)
    except ModelRefused as exc:
        raise ModelMismatch(
            f"model.txt's objective disagrees with the bundle's task {task.value}: {exc}"
        ) from None
    lists = dict(zip(pandas_features(model, pandas_recorded), model.pandas_categorical or [], strict=True))
    for j, feature in enumerate(spec.features):
        seen = model.categorical.get(j)
        if feature.kind is FeatureKind.numeric:
            if seen is not None and feature.name not in integer_codes:
                raise ModelMismatch(f"{feature.name}: categorical in model.txt, numeric in the spec")
            continue
        if j in lists and feature.categories != lists[j]:
            raise ModelMismatch(
                f"{feature.name}: the spec's categories {feature.categories[:8]} are not model.txt's "
                f"pandas_categorical {lists[j][:8]} (the order is the encoding)"
            )
        if seen is None and j in model.used and feature.categories != BOOLEAN_CATEGORIES:
            raise ModelMismatch(f"{feature.name}: numeric in model.txt, categorical in the spec")
        if seen is not None and seen >= len(feature.categories):
            raise ModelMismatch(
                f"{feature.name}: model.txt splits on category code {seen}, the spec has only "
                f"{len(feature.categories)} categories"
            )
