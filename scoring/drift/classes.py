"""A multiclass model's outputs in one window against its holdout: the predicted classes and each
class's probability.

The predicted classes (each event's most probable class, the first of equals, as served) are
counted per class and tested against the holdout's predicted-class counts
(``Reference.predicted``): a chi-square goodness-of-fit test with the holdout's shares as the
expected ones (``stats.chi_square_fit``), and PSI on the same counts. Each class's probability
is compared with the holdout's probabilities of that class (``Reference.probabilities``) as a
numeric feature is: PSI on the holdout's quantile bins, KS against its sample. These K + 1
tests join the window's family (``compare.decide_window``): flagged by the same corrected
level and PSI floor as the feature tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from schemas.drift import ClassDrift, ClassProbabilityDrift, PredictedClassDrift
from scoring.drift.compare import NumericBaseline, compare_numeric
from scoring.drift.stats import chi_square_fit, psi
from scoring.model.reference import Reference


@dataclass(frozen=True)
class ClassBaseline:
    """A multiclass model's holdout outputs, as arrays: converted once per model version."""

    names: tuple[str, ...]
    predicted: np.ndarray  # the holdout's predicted-class counts, in the model's order
    probabilities: tuple[NumericBaseline, ...]  # each class's probability on the holdout

    @classmethod
    def of(cls, reference: Reference, names: tuple[str, ...]) -> ClassBaseline | None:
        """The baseline of a multiclass model's reference; None for another model's (or one without)."""
        if not names or reference.predicted is None or set(reference.probabilities) != set(names):
            return None
        counts = np.array([reference.predicted.frequencies.get(n, 0) for n in names], dtype=float)
        return cls(names, counts, tuple(NumericBaseline.of(reference.probabilities[n]) for n in names))

    @property
    def tests(self) -> int:
        """Tests of the window's family it adds: the predicted classes and each class's probability."""
        return 1 + len(self.names)


def compare_classes(baseline: ClassBaseline, probabilities: np.ndarray) -> ClassDrift:
    """The window's predicted classes and class probabilities (events x classes) against the holdout's."""
    p = np.asarray(probabilities, dtype=float)
    k = len(baseline.names)
    if p.ndim != 2 or p.shape[1] != k:
        raise ValueError(f"probabilities of shape {p.shape} for {k} classes")
    counts = np.bincount(p.argmax(axis=1), minlength=k) if len(p) else np.zeros(k, dtype=int)
    fit = chi_square_fit(baseline.predicted, counts)
    predicted = PredictedClassDrift(
        counts={n: int(c) for n, c in zip(baseline.names, counts, strict=True)},
        reference_counts={n: int(c) for n, c in zip(baseline.names, baseline.predicted, strict=True)},
        psi=_num(psi(baseline.predicted, counts)),
        chi2_statistic=_num(fit.statistic),
        chi2_p_value=_num(fit.p_value),
        drifted=False,
    )
    per_class = []
    for j, (name, ref) in enumerate(zip(baseline.names, baseline.probabilities, strict=True)):
        numeric = compare_numeric(name, ref, p[:, j])
        per_class.append(
            ClassProbabilityDrift(
                name=name,
                psi=numeric.psi,
                ks_statistic=numeric.ks_statistic,
                ks_p_value=numeric.ks_p_value,
                mean=numeric.mean,
                reference_mean=numeric.reference_mean,
                drifted=False,
            )
        )
    return ClassDrift(predicted=predicted, probabilities=per_class)


def _num(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)
