"""ROC AUC estimated with calibrated probabilities as soft labels, in O(n log n).

Each event ``i`` counts as ``p_i`` of a positive and ``1 - p_i`` of a negative, ranked
by the model's raw score (ties count half, as in the realized AUC). The estimate is
the weighted Mann-Whitney statistic over distinct pairs::

    AUC = sum_{i != j} p_i (1 - p_j) K_ij / sum_{i != j} p_i (1 - p_j),
    K_ij = 1 if s_i > s_j, 1/2 if s_i = s_j, 0 otherwise

that is, E[W] / E[P N] where the realized AUC is W / (P N) with labels drawn from
the p's: a ratio of expectations like the other estimates. The area under the
expected ROC curve (expected TPR and FPR at every threshold) is the same sum with
each event also paired with itself (i = j, counted half); the two differ by O(1/n).

Everything is computed from sums per group of equal scores, ascending: the soft
positives P_g, negatives N_g, and of v = p(1 - p) the sums V_g, sum v p, sum v p^2.
Exact groups are the distinct scores; a histogram of fixed score bins gives the same
sums mergeably, treating pairs within a bin as ties (``approximation_error`` bounds
what that costs: half the pair weight within bins, over the total).

Uncertainty, analytic: W is a quadratic polynomial in independent Bernoulli labels,
so its variance is exact from its expansion (first-order terms sum_k v_k (a_k - b_k)^2,
and every pair of labels interacts with coefficient -1), as is Cov(W, P); the AUC's
variance is then the delta method on W / (P (n - P)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scoring.estimation.binary import Estimated


@dataclass(frozen=True)
class ScoreGroups:
    """Per group of scores, ascending: the soft-label sums the AUC needs."""

    positive: np.ndarray  # sum p
    negative: np.ndarray  # sum (1 - p)
    var: np.ndarray  # sum p(1 - p)
    var_p: np.ndarray  # sum p(1 - p) p
    var_p2: np.ndarray  # sum p(1 - p) p^2
    var_sq: float  # sum over all events of (p(1 - p))^2

    @classmethod
    def of(cls, index: np.ndarray, p: np.ndarray, groups: int) -> ScoreGroups:
        """Sums of events assigned to ``groups`` groups by ``index`` (0 = lowest scores)."""
        v = p * (1.0 - p)
        sums = [np.bincount(index, weights=w, minlength=groups) for w in (p, 1.0 - p, v, v * p, v * p * p)]
        return cls(*sums, var_sq=float(np.dot(v, v)))


def exact_groups(scores: np.ndarray, probabilities: np.ndarray) -> ScoreGroups:
    """Groups of equal raw scores (the sort is the O(n log n) step)."""
    unique, index = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True)
    return ScoreGroups.of(index.ravel(), np.asarray(probabilities, dtype=np.float64), len(unique))


@dataclass(frozen=True)
class AucMoments:
    """E[W], E[P N] and the second moments the AUC's variance needs."""

    expected_w: float
    expected_pairs: float
    var_w: float
    cov_w_p: float
    var_p: float
    positives: float
    negatives: float
    within_group: float  # pair weight sum_{i != j} p_i (1 - p_j) of pairs sharing a group

    @classmethod
    def of(cls, g: ScoreGroups) -> AucMoments:
        positives, negatives, v_total = float(g.positive.sum()), float(g.negative.sum()), float(g.var.sum())
        negatives_below = np.cumsum(g.negative) - g.negative
        positives_above = positives - np.cumsum(g.positive)
        within = g.positive * g.negative - g.var
        expected_w = float(np.dot(g.positive, negatives_below) + 0.5 * within.sum())
        # a_k - b_k = c_g + p_k for event k in group g (the derivative of W in label k)
        c = negatives_below + 0.5 * g.negative - positives_above - 0.5 * g.positive - 0.5
        first_order = float(np.sum(c * c * g.var + 2 * c * g.var_p + g.var_p2))
        return cls(
            expected_w=expected_w,
            expected_pairs=positives * negatives - v_total,
            var_w=first_order + 0.5 * (v_total**2 - g.var_sq),
            cov_w_p=float(np.sum(c * g.var + g.var_p)),
            var_p=v_total,
            positives=positives,
            negatives=negatives,
            within_group=float(within.sum()),
        )


def auc_estimate(groups: ScoreGroups, binned: bool = False) -> Estimated:
    """The soft-label AUC and its analytic std; ``binned`` groups also report the bin error bound."""
    m = AucMoments.of(groups)
    if m.expected_pairs <= 0 or m.positives <= 0 or m.negatives <= 0:
        return Estimated("auc", None, None)
    auc = min(max(m.expected_w / m.expected_pairs, 0.0), 1.0)
    pairs = m.positives * m.negatives
    d_w = 1.0 / pairs
    d_p = -m.expected_w * (m.negatives - m.positives) / pairs**2
    var = d_w**2 * m.var_w + 2 * d_w * d_p * m.cov_w_p + d_p**2 * m.var_p
    bound = 0.5 * max(m.within_group, 0.0) / m.expected_pairs if binned else None
    return Estimated("auc", auc, math.sqrt(max(var, 0.0)), bound)


def soft_auc(scores: np.ndarray, probabilities: np.ndarray) -> Estimated:
    """Estimated ROC AUC of one window, exact: groups are the distinct raw scores."""
    return auc_estimate(exact_groups(scores, probabilities))
