"""One closed window against the training reference: per feature and for the score, drifted or not.

Numeric features: PSI on the reference's quantile bins, two-sample KS against the
reference sample, the mean's shift in reference standard deviations. Categorical
features: PSI on category shares and a chi-square test of homogeneity, with one
column for categories training never saw. Every feature: its missing rate against
training's. The score: PSI and KS against the holdout scores (prediction drift).

The ``compare_*`` functions give the statistics; ``decide`` flags the window's tests
together (``DriftThresholds``): a test is drifted when its p-value passes a family-wise
level corrected for the number of tests in the window (Holm's step-down, or Bonferroni)
and its PSI reaches an effect-size floor. A significant test alone does not flag (a
large window makes a negligible shift significant), nor does a large PSI alone (a small
window's PSI is mostly noise: a 50-event window of one normal feature has a median PSI
of 0.18). ``bench/alerts.py`` measures both rules; docs/alerts.md has the table.
The statistics themselves are in ``scoring.drift.stats``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from schemas.drift import ClassDrift, FeatureDrift, PredictionDrift
from scoring.drift.stats import (
    CORRECTIONS,
    KsSample,
    TestResult,
    chi_square_test,
    corrected_levels,
    ks_test,
    ks_test_sorted,
    psi,
)
from scoring.model.features import FeatureSpec
from scoring.model.reference import CategoricalReference, NumericReference, bin_counts, bin_counts_sorted


@dataclass(frozen=True)
class DriftThresholds:
    """How a window's tests are flagged (settings ``STREAMSCORE_DRIFT_*``; docs/alerts.md).

    ``p_value``: the family-wise level over the window's tests (each feature and the score),
    corrected by ``correction``; ``psi_floor``: the PSI a significant test needs to count;
    ``psi``: the PSI at which a flagged test makes the alert critical rather than a warning.
    """

    psi: float = 0.2
    p_value: float = 0.001
    psi_floor: float = 0.02
    correction: str = "holm"

    def __post_init__(self) -> None:
        if self.correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, not {self.correction!r}")


def _num(value: float) -> float | None:
    """JSON has no NaN: undefined statistics travel as null."""
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass(frozen=True)
class NumericBaseline:
    """A numeric reference as arrays, converted once per model version rather than per window."""

    edges: np.ndarray
    counts: np.ndarray
    sample: np.ndarray
    mean: float
    sd: float
    missing_rate: float
    ks: KsSample | None = None  # the sample sorted once (None if it has NaN: the general path)
    edges_increase: bool = False  # bins can be counted from sorted values

    @classmethod
    def of(cls, ref: NumericReference) -> NumericBaseline:
        sample = np.asarray(ref.sample, dtype=float)
        edges = np.asarray(ref.edges, dtype=float)
        return cls(
            edges=edges,
            counts=np.asarray(ref.counts, dtype=float),
            sample=sample,
            mean=float(sample.mean()) if sample.size else math.nan,
            sd=float(sample.std(ddof=1)) if sample.size > 1 else math.nan,
            missing_rate=ref.missing / ref.total if ref.total else 0.0,
            ks=KsSample.of(sample),
            edges_increase=bool(np.all(edges[1:] >= edges[:-1])),  # False with a NaN edge
        )

    def psi_and_ks(self, values: np.ndarray) -> tuple[float, TestResult]:
        """PSI on the bins and KS against the sample, ``values`` sorted once (the figures of
        ``bin_counts`` and ``ks_test``; a NaN among them, or a reference that cannot be searched
        sorted, takes those)."""
        ordered = np.sort(values)
        if self.ks is None or not self.edges_increase or (ordered.size and np.isnan(ordered[-1])):
            return psi(self.counts, bin_counts(values, self.edges)), ks_test(self.sample, values)
        return psi(self.counts, bin_counts_sorted(ordered, self.edges)), ks_test_sorted(self.ks, ordered)


def compare_numeric(name: str, ref: NumericBaseline, values: np.ndarray) -> FeatureDrift:
    present = values[~np.isnan(values)]
    window_psi, ks = ref.psi_and_ks(present)
    mean = float(present.mean()) if present.size else math.nan
    shift = (mean - ref.mean) / ref.sd if ref.sd > 0 else math.nan
    missing = 1 - present.size / values.size if values.size else 0.0
    return FeatureDrift(
        feature=name,
        kind="numeric",
        count=int(present.size),
        psi=_num(window_psi),
        ks_statistic=_num(ks.statistic),
        ks_p_value=_num(ks.p_value),
        missing_rate=missing,
        reference_missing_rate=ref.missing_rate,
        missing_rate_change=missing - ref.missing_rate,
        mean=_num(mean),
        reference_mean=_num(ref.mean),
        mean_shift_sd=_num(shift),
        drifted=False,
    )


def compare_categorical(
    name: str,
    ref: CategoricalReference,
    categories: list[str],
    codes: np.ndarray,
) -> FeatureDrift:
    present = codes[~np.isnan(codes)].astype(int)
    # one column per known category plus one for categories unseen in training
    window_counts = np.bincount(present, minlength=len(categories) + 1)[: len(categories) + 1]
    ref_counts = np.array([ref.frequencies.get(c, 0) for c in categories] + [0], dtype=float)
    window_psi = psi(ref_counts, window_counts)
    chi2 = chi_square_test(ref_counts, window_counts)
    missing = 1 - present.size / codes.size if codes.size else 0.0
    ref_missing = ref.missing / ref.total if ref.total else 0.0
    return FeatureDrift(
        feature=name,
        kind="categorical",
        count=int(present.size),
        psi=_num(window_psi),
        chi2_statistic=_num(chi2.statistic),
        chi2_p_value=_num(chi2.p_value),
        missing_rate=missing,
        reference_missing_rate=ref_missing,
        missing_rate_change=missing - ref_missing,
        drifted=False,
    )


def compare_scores(ref: NumericBaseline | None, scores: np.ndarray) -> PredictionDrift:
    if ref is None:
        return PredictionDrift(
            psi=None,
            ks_statistic=None,
            ks_p_value=None,
            mean=_num(scores.mean()),
            reference_mean=None,
            drifted=False,
        )
    window_psi, ks = ref.psi_and_ks(scores)
    return PredictionDrift(
        psi=_num(window_psi),
        ks_statistic=_num(ks.statistic),
        ks_p_value=_num(ks.p_value),
        mean=_num(float(scores.mean())) if scores.size else None,
        reference_mean=_num(ref.mean),
        drifted=False,
    )


def decide(
    features: list[FeatureDrift], prediction: PredictionDrift, thresholds: DriftThresholds
) -> tuple[list[FeatureDrift], PredictionDrift]:
    """The window's tests flagged together: each test's corrected level, then the PSI floor.

    A multiclass model's window has more tests (``decide_window``).

    >>> from schemas.drift import PredictionDrift
    >>> def numeric(name, psi, p):
    ...     return FeatureDrift(feature=name, kind="numeric", count=5000, psi=psi, ks_p_value=p,
    ...                         drifted=False, missing_rate=0, reference_missing_rate=0,
    ...                         missing_rate_change=0)
    >>> score = PredictionDrift(psi=0.001, ks_statistic=0.01, ks_p_value=0.9, mean=0.4, reference_mean=0.4,
    ...                         drifted=False)
    >>> window = [numeric("a", 0.06, 1e-9), numeric("b", 0.004, 1e-5), numeric("c", 0.31, 0.02)]
    >>> features, _ = decide(window, score, DriftThresholds())
    >>> [(f.feature, f.drifted, f.reasons) for f in features]  # doctest: +NORMALIZE_WHITESPACE
    [('a', True, ['ks p-value 1e-09 < 0.00025 (holm, 4 tests)', 'psi 0.060 >= floor 0.02']),
     ('b', False, []), ('c', False, [])]
    """
    flagged, score, _ = decide_window(features, prediction, None, thresholds)
    return flagged, score


def decide_window(
    features: list[FeatureDrift],
    prediction: PredictionDrift,
    classes: ClassDrift | None,
    thresholds: DriftThresholds,
) -> tuple[list[FeatureDrift], PredictionDrift, ClassDrift | None]:
    """``decide`` over every test of a window: the features, the score and, for a multiclass model,
    its predicted classes (chi-square) and each class's probability (KS), one family."""
    p_values = [_p_value(f) for f in features] + [prediction.ks_p_value]
    if classes is not None:
        p_values += [classes.predicted.chi2_p_value] + [c.ks_p_value for c in classes.probabilities]
    levels = corrected_levels(p_values, thresholds.p_value, thresholds.correction)
    tests, n = len(p_values), len(features)
    flagged = [
        f.model_copy(update=_flag(f.psi, _p_value(f), level, thresholds, _test(f), tests))
        for f, level in zip(features, levels[:n], strict=True)
    ]
    score = prediction.model_copy(
        update=_flag(prediction.psi, prediction.ks_p_value, levels[n], thresholds, "ks", tests)
    )
    if classes is None:
        return flagged, score, None
    predicted = classes.predicted
    predicted = predicted.model_copy(
        update=_flag(predicted.psi, predicted.chi2_p_value, levels[n + 1], thresholds, "chi2", tests)
    )
    per_class = [
        c.model_copy(update=_flag(c.psi, c.ks_p_value, level, thresholds, "ks", tests))
        for c, level in zip(classes.probabilities, levels[n + 2 :], strict=True)
    ]
    return flagged, score, ClassDrift(predicted=predicted, probabilities=per_class)


def _p_value(feature: FeatureDrift) -> float | None:
    return feature.ks_p_value if feature.kind == "numeric" else feature.chi2_p_value


def _test(feature: FeatureDrift) -> str:
    return "ks" if feature.kind == "numeric" else "chi2"


def _flag(
    window_psi: float | None,
    p_value: float | None,
    level: float,
    thresholds: DriftThresholds,
    test: str,
    tests: int,
) -> dict:
    """``drifted``, ``reasons`` and ``p_value_threshold`` of one test (reasons empty: not drifted)."""
    significant = p_value is not None and p_value < level
    effect = window_psi is not None and window_psi >= thresholds.psi_floor
    reasons = []
    if significant and effect:
        reasons = [
            f"{test} p-value {p_value:.3g} < {level:.3g} ({thresholds.correction}, {tests} tests)",
            f"psi {window_psi:.3f} >= floor {thresholds.psi_floor:g}",
        ]
    return {"drifted": bool(reasons), "reasons": reasons, "p_value_threshold": level}


def test_count(spec: FeatureSpec, classes: int = 0) -> int:
    """Tests in one window's family: one per feature plus the score, and for a multiclass model of
    ``classes`` classes the predicted classes and each class's probability."""
    return len(spec.features) + 1 + (1 + classes if classes else 0)
