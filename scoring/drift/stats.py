"""Two-sample drift statistics: population stability index, Kolmogorov-Smirnov, chi-square.

The tests themselves are scipy's (``ks_2samp``, ``chi2_contingency``, ``chisquare``); this module
fixes how a live window is compared with the training reference: which bins,
which samples, and how empty bins are smoothed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

PSI_FLOOR = 1e-4
"""Smallest share a bin may have in PSI: an empty bin would make ln(a/e) infinite."""


def psi(reference_counts: np.ndarray, window_counts: np.ndarray, floor: float = PSI_FLOOR) -> float:
    """Population stability index: sum over bins of (a - e) * ln(a / e).

    ``e`` and ``a`` are the shares of the reference and the window in each bin,
    each clipped below at ``floor``. Read: < 0.1 stable, 0.1-0.2 moderate, >= 0.2 shifted.

    >>> psi(np.array([50, 50]), np.array([500, 500]))
    0.0
    >>> round(psi(np.array([50, 50]), np.array([80, 20])), 4)
    0.4159
    """
    expected = np.asarray(reference_counts, dtype=float)
    actual = np.asarray(window_counts, dtype=float)
    if expected.shape != actual.shape:
        raise ValueError(f"bins differ: reference {expected.shape}, window {actual.shape}")
    if expected.sum() <= 0 or actual.sum() <= 0:
        return float("nan")
    e = np.clip(expected / expected.sum(), floor, None)
    a = np.clip(actual / actual.sum(), floor, None)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True, slots=True)
class TestResult:
    statistic: float
    p_value: float


EXACT_KS_PAIRS = 1_000_000
"""Above this many sample pairs the KS p-value is asymptotic.

scipy's default computes the exact p-value up to 10,000 values a side, in time
n * m: about 4 ms for a 5,000-event window against the 2,000-value reference
sample, so 85 ms a window of 20 features, which held a drift agent behind a
50,000 events/s scorer (bench/drift.py). The asymptotic p-value differs from
the exact one in the third digit at these sizes, far below what a threshold of
0.01 / features can tell apart.
"""


def ks_method(n: int, m: int) -> str:
    return "exact" if n * m <= EXACT_KS_PAIRS else "asymp"


@dataclass(frozen=True, slots=True)
class KsSample:
    """A sample sorted once for many KS tests against it: the reference of a feature or of the score.

    ``points`` are its distinct values, ``ranks`` how many of its values are at or below each
    (its empirical CDF there, times ``size``). NaN-free samples only (``of`` says None otherwise).
    """

    values: np.ndarray  # sorted
    points: np.ndarray
    ranks: np.ndarray

    @property
    def size(self) -> int:
        return len(self.values)

    @classmethod
    def of(cls, sample: np.ndarray) -> KsSample | None:
        values = np.sort(np.asarray(sample, dtype=float))
        if values.size and np.isnan(values[-1]):  # NaN sorts last
            return None
        points, ranks = _distinct(values)
        return cls(values, points, ranks)


def _distinct(ordered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a sorted NaN-free array, and how many of its values are at or below each."""
    last = np.flatnonzero(ordered[1:] != ordered[:-1])  # the last of each run of equal values
    last = np.append(last, ordered.size - 1) if ordered.size else last
    return ordered[last], last + 1


def ks_test(reference_sample: np.ndarray, window_values: np.ndarray) -> TestResult:
    """Two-sample Kolmogorov-Smirnov test, two-sided, as scipy's ``ks_2samp`` with ``ks_method``.

    Large samples take the asymptotic path computed here with scipy's own formula
    (``kstwo.sf(D, round(n*m/(n+m)))``): the same figures without ``ks_2samp``'s
    per-call overhead, which was a third of the drift agent's time. Small samples go
    to ``ks_2samp`` for the exact p-value.
    """
    n, m = len(reference_sample), len(window_values)
    if n == 0 or m == 0:
        return TestResult(float("nan"), float("nan"))
    if ks_method(n, m) == "exact":
        result = stats.ks_2samp(reference_sample, window_values, method="exact")
        return TestResult(float(result.statistic), float(result.pvalue))
    a, b = np.sort(reference_sample), np.sort(window_values)
    both = np.concatenate([a, b])
    gap = np.searchsorted(a, both, side="right") / n - np.searchsorted(b, both, side="right") / m
    return _asymptotic(_sup(gap.max(), gap.min()), n, m)


def ks_test_sorted(reference: KsSample, window_sorted: np.ndarray) -> TestResult:
    """``ks_test`` against a reference sorted once, of a window sorted by the caller: the same figures.

    The two empirical CDFs differ most at a value of one of the samples, so the gap is taken at
    each distinct value of either (the reference's ranks are kept, the window's counted in one
    pass over its sorted values) rather than searching both samples for every value of both:
    the same differences of the same integer ranks, over the same points less repeats.
    ``bench/window_close.py`` measures it.
    """
    n, m = reference.size, len(window_sorted)
    if n == 0 or m == 0 or ks_method(n, m) == "exact" or np.isnan(window_sorted[-1]):
        return ks_test(reference.values, window_sorted)
    points, ranks = _distinct(window_sorted)
    at_reference = reference.ranks / n - np.searchsorted(window_sorted, reference.points, side="right") / m
    # the reference's values at or below each of the window's points, from one search per reference
    # value (the window has the more values): where each falls among the points, summed up
    falls = np.searchsorted(points, reference.values, side="left")
    at_window = np.cumsum(np.bincount(falls, minlength=points.size + 1)[: points.size]) / n - ranks / m
    top = max(at_reference.max(), at_window.max())
    bottom = min(at_reference.min(), at_window.min())
    return _asymptotic(_sup(top, bottom), n, m)


def _sup(top: float, bottom: float) -> float:
    """The KS statistic from the largest and smallest difference of the two empirical CDFs."""
    return float(max(top, np.clip(-bottom, 0, 1)))


def _asymptotic(d: float, n: int, m: int) -> TestResult:
    big, small = max(n, m), min(n, m)
    p_value = float(np.clip(stats.kstwo.sf(d, np.round(big * small / (big + small))), 0, 1))
    return TestResult(d, p_value)


def chi_square_test(reference_counts: np.ndarray, window_counts: np.ndarray) -> TestResult:
    """Chi-square test of homogeneity on the 2 x k table of category counts.

    Categories empty in both samples are dropped (they carry no information and
    would make the expected count zero). No continuity correction.
    """
    table = np.vstack([np.asarray(reference_counts, float), np.asarray(window_counts, float)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return TestResult(float("nan"), float("nan"))
    result = stats.chi2_contingency(table, correction=False)
    return TestResult(float(result.statistic), float(result.pvalue))


def chi_square_fit(
    reference_counts: np.ndarray, window_counts: np.ndarray, floor: float = PSI_FLOOR
) -> TestResult:
    """Chi-square goodness-of-fit of the window's counts to the reference's shares (scipy's ``chisquare``).

    The expected count of each category is its reference share times the window's size, the
    shares clipped below at ``floor`` (as PSI's) and scaled back to sum to 1, so a category the
    reference never had makes a large statistic rather than an infinite one.

    >>> round(chi_square_fit(np.array([50, 50]), np.array([60, 40])).statistic, 6)
    4.0
    """
    expected = np.asarray(reference_counts, dtype=float)
    observed = np.asarray(window_counts, dtype=float)
    if expected.shape != observed.shape:
        raise ValueError(f"categories differ: reference {expected.shape}, window {observed.shape}")
    if expected.size < 2 or expected.sum() <= 0 or observed.sum() <= 0:
        return TestResult(float("nan"), float("nan"))
    shares = np.clip(expected / expected.sum(), floor, None)
    result = stats.chisquare(observed, shares / shares.sum() * observed.sum())
    return TestResult(float(result.statistic), float(result.pvalue))


CORRECTIONS = ("holm", "bonferroni")


def corrected_levels(p_values: list[float | None], alpha: float, correction: str = "holm") -> list[float]:
    """Each test's level: a test is significant when its p-value is below it, with the family-wise
    error rate of all ``len(p_values)`` tests at ``alpha``.

    Bonferroni: ``alpha / m`` each. Holm's step-down (as powerful as Bonferroni for the first,
    more for the next, the same family-wise guarantee): the i-th smallest p-value is compared
    with ``alpha / (m - i)`` until one is not below its level; that one and every larger one
    get the level where it stopped. A test without a p-value (None, NaN) gets ``alpha / m``.

    >>> corrected_levels([0.0001, 0.04, 0.0002, None], 0.01)
    [0.0025, 0.005, 0.0033333333333333335, 0.0025]
    >>> corrected_levels([0.0001, 0.04, 0.0002, None], 0.01, "bonferroni")
    [0.0025, 0.0025, 0.0025, 0.0025]
    """
    m = len(p_values)
    levels = [alpha / max(1, m)] * m
    if correction == "bonferroni":
        return levels
    if correction != "holm":
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, not {correction!r}")
    valid = sorted((p, i) for i, p in enumerate(p_values) if p is not None and p == p)
    stop: float | None = None
    for rank, (p, i) in enumerate(valid):
        level = alpha / (m - rank)
        if stop is None and not p < level:
            stop = level
        levels[i] = level if stop is None else stop
    return levels
