"""Estimated against realized: how good a window's estimate was once its labels came.

Pure functions for the learn service: given a window's ``PerformanceEstimate`` and
the KPIs realized from its labels, one ``MetricCheck`` per KPI with the difference
and whether the realized value falls outside the estimate's band. When only
``labelled`` of the window's events got labels, the realized KPI is noisier: the
sampling std is widened by sqrt(events / labelled) before the band is drawn.

The band holds the window's sampling uncertainty and the estimator's own, taken as
that of a window as large as its holdout (``MetricEstimate.estimator_std``): a
rough figure, so ``min_difference`` (absolute) and ``min_relative`` (a share of the
estimate) set a floor below which a gap is never called a disagreement.

A disagreement beyond the band is what concept drift looks like: the estimate
assumes the model's conditional probabilities still hold, the labels say they do not.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

from schemas.estimation import UNIT_METRICS, EstimateCheck, MetricCheck, PerformanceEstimate
from schemas.keys import ModelKey


def check_estimate(
    estimate: PerformanceEstimate,
    realized: Mapping[str, float | None],
    labelled: int | None = None,
    min_difference: float = 0.0,
    min_relative: float = 0.0,
) -> EstimateCheck:
    """Compare every KPI that has both an estimate and a finite realized value."""
    labelled = estimate.events if labelled is None else labelled
    widen = math.sqrt(estimate.events / labelled) if 0 < labelled < estimate.events else 1.0
    checks = []
    for m in estimate.metrics:
        value = realized.get(m.metric)
        if m.estimate is None or m.std is None or value is None or not math.isfinite(value):
            continue
        std = math.hypot(m.std * widen, m.estimator_std or 0.0)
        top = 1.0 if m.metric in UNIT_METRICS else math.inf
        lower = max(m.estimate - estimate.band_z * std, 0.0)
        upper = min(m.estimate + estimate.band_z * std, top)
        checks.append(
            MetricCheck(
                metric=m.metric,
                estimate=m.estimate,
                realized=float(value),
                difference=float(value) - m.estimate,
                std=std,
                lower=lower,
                upper=upper,
                disagree=not lower <= value <= upper
                and abs(value - m.estimate) > max(min_difference, min_relative * abs(m.estimate)),
            )
        )
    off = [c for c in checks if c.disagree]
    return EstimateCheck(
        model_name=estimate.model_name,
        model_version=estimate.model_version,
        window=estimate.window,
        events=estimate.events,
        labelled=labelled,
        checks=checks,
        disagree=bool(off),
        message=_message(estimate, off, checks),
        created_at=int(time.time() * 1000),
    )


def with_realized(estimate: PerformanceEstimate, realized: Mapping[str, float | None]) -> PerformanceEstimate:
    """The estimate with each KPI's realized value filled in (for a page showing both)."""
    metrics = [m.model_copy(update={"realized": _finite(realized.get(m.metric))}) for m in estimate.metrics]
    return estimate.model_copy(update={"metrics": metrics})


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _message(estimate: PerformanceEstimate, off: list[MetricCheck], checks: list[MetricCheck]) -> str:
    where = str(ModelKey(estimate.model_name, estimate.model_version))
    if estimate.window is not None:
        where += f" window {estimate.window}"
    if not off:
        near = [c.metric for c in checks if not c.lower <= c.realized <= c.upper]
        if near:
            return (
                f"{where}: the realized KPIs agree with the estimate ({len(checks)} checked; "
                f"{', '.join(near)} outside the band but within the estimator's accuracy)"
            )
        return f"{where}: the realized KPIs lie within the estimate's band ({len(checks)} checked)"
    parts = ", ".join(
        f"{c.metric} realized {c.realized:.4f} vs estimated {c.estimate:.4f} [{c.lower:.4f}, {c.upper:.4f}]"
        for c in off
    )
    return f"{where}: estimate and labels disagree ({parts}); the model's probabilities may no longer hold"
