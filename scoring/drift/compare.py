"""One closed window against the training reference: per feature and for the score, drifted or not.

Numeric features: PSI on the reference's quantile bins, two-sample KS against the
reference sample, the mean's shift in reference standard deviations. Categorical
features: PSI on category shares and a chi-square test of homogeneity, with one
column for categories training never saw. Every feature: its missing rate against
training's. The score: PSI and KS against the holdout scores (prediction drift).

A feature is drifted when its PSI reaches ``DriftThresholds.psi`` or its p-value
falls below the per-test level (the family-wise level divided by ``test_count``).
The statistics themselves are in ``scoring.drift.stats``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from schemas.drift import FeatureDrift, PredictionDrift
from scoring.drift.stats import chi_square_test, ks_test, psi
from scoring.model.features import FeatureSpec
from scoring.model.reference import CategoricalReference, NumericReference, bin_counts


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.2
    p_value: float = 0.01  # family-wise, Bonferroni-corrected across the tests of a window


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

    @classmethod
    def of(cls, ref: NumericReference) -> NumericBaseline:
        sample = np.asarray(ref.sample, dtype=float)
        return cls(
            edges=np.asarray(ref.edges, dtype=float),
            counts=np.asarray(ref.counts, dtype=float),
            sample=sample,
            mean=float(sample.mean()) if sample.size else math.nan,
            sd=float(sample.std(ddof=1)) if sample.size > 1 else math.nan,
            missing_rate=ref.missing / ref.total if ref.total else 0.0,
        )


def compare_numeric(
    name: str, ref: NumericBaseline, values: np.ndarray, alpha: float, psi_max: float
) -> FeatureDrift:
    present = values[~np.isnan(values)]
    window_psi = psi(ref.counts, bin_counts(present, ref.edges))
    ks = ks_test(ref.sample, present)
    mean = float(present.mean()) if present.size else math.nan
    shift = (mean - ref.mean) / ref.sd if ref.sd > 0 else math.nan
    missing = 1 - present.size / values.size if values.size else 0.0
    reasons = _reasons(window_psi, ks.p_value, alpha, psi_max, "ks")
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
        drifted=bool(reasons),
        reasons=reasons,
    )


def compare_categorical(
    name: str,
    ref: CategoricalReference,
    categories: list[str],
    codes: np.ndarray,
    alpha: float,
    psi_max: float,
) -> FeatureDrift:
    present = codes[~np.isnan(codes)].astype(int)
    # one column per known category plus one for categories unseen in training
    window_counts = np.bincount(present, minlength=len(categories) + 1)[: len(categories) + 1]
    ref_counts = np.array([ref.frequencies.get(c, 0) for c in categories] + [0], dtype=float)
    window_psi = psi(ref_counts, window_counts)
    chi2 = chi_square_test(ref_counts, window_counts)
    missing = 1 - present.size / codes.size if codes.size else 0.0
    ref_missing = ref.missing / ref.total if ref.total else 0.0
    reasons = _reasons(window_psi, chi2.p_value, alpha, psi_max, "chi2")
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
        drifted=bool(reasons),
        reasons=reasons,
    )


def compare_scores(
    ref: NumericBaseline | None, scores: np.ndarray, alpha: float, psi_max: float
) -> PredictionDrift:
    if ref is None:
        return PredictionDrift(
            psi=None,
            ks_statistic=None,
            ks_p_value=None,
            mean=_num(scores.mean()),
            reference_mean=None,
            drifted=False,
        )
    window_psi = psi(ref.counts, bin_counts(scores, ref.edges))
    ks = ks_test(ref.sample, scores)
    reasons = _reasons(window_psi, ks.p_value, alpha, psi_max, "ks")
    return PredictionDrift(
        psi=_num(window_psi),
        ks_statistic=_num(ks.statistic),
        ks_p_value=_num(ks.p_value),
        mean=_num(float(scores.mean())) if scores.size else None,
        reference_mean=_num(ref.mean),
        drifted=bool(reasons),
        reasons=reasons,
    )


def _reasons(window_psi: float, p_value: float, alpha: float, psi_max: float, test: str) -> list[str]:
    """Why a feature counts as drifted (empty: it does not).

    >>> _reasons(0.31, 0.2, 0.001, 0.2, "ks")
    ['psi 0.310 >= 0.2']
    >>> _reasons(0.05, 1e-5, 0.001, 0.2, "chi2")
    ['chi2 p-value 1e-05 < 0.001']
    """
    reasons = []
    if math.isfinite(window_psi) and window_psi >= psi_max:
        reasons.append(f"psi {window_psi:.3f} >= {psi_max}")
    if math.isfinite(p_value) and p_value < alpha:
        reasons.append(f"{test} p-value {p_value:.3g} < {alpha:.3g}")
    return reasons


def test_count(spec: FeatureSpec) -> int:
    """Tests in one window's family: one per feature plus the score."""
    return len(spec.features) + 1
