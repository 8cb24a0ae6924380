"""Champion against challenger on labelled events, with a significance test.

Paired (shadow mode: both models scored the same events): McNemar's test on the
events exactly one model classified right (exact binomial below 25 such events,
chi-square with continuity correction above), or the Wilcoxon signed-rank test on
the paired absolute errors for regression. Unpaired (split mode: each entity saw
one model): a two-proportion z-test on accuracy, or Mann-Whitney U on absolute errors.

The winner is the model with the better primary KPI (accuracy, or MAE) when the test
rejects equality at ``alpha``; otherwise there is none. A multiclass model's comparison
(``scoring.feedback.class_compare``) takes the same tests on right/wrong and the same rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from schemas.keys import Task
from scoring.metrics.holdout import binary_metrics, regression_metrics


@dataclass(frozen=True)
class Comparison:
    champion: str
    challenger: str
    paired: bool
    n_champion: int
    n_challenger: int
    champion_kpis: dict[str, float]
    challenger_kpis: dict[str, float]
    test: str
    statistic: float
    p_value: float
    alpha: float
    winner: str | None  # "champion", "challenger", or None: no significant difference
    detail: dict[str, float]

    def lines(self) -> list[str]:
        kind = "paired, the same events" if self.paired else "unpaired, split traffic"
        out = [f"{self.champion} (champion) vs {self.challenger} (challenger): {kind}"]
        out.append(f"  labelled events: {self.n_champion:,} / {self.n_challenger:,}")
        width = max(10, *map(len, self.champion_kpis))
        for name in self.champion_kpis:
            a, b = self.champion_kpis[name], self.challenger_kpis.get(name, math.nan)
            out.append(f"  {name:<{width}} {a:10.4f} {b:10.4f}")
        details = ", ".join(f"{k} {v:g}" for k, v in self.detail.items())
        out.append(f"  {self.test}: statistic {self.statistic:.4g}, p-value {self.p_value:.3g} ({details})")
        out.append(f"  winner at alpha {self.alpha}: {self.winner or 'none (no significant difference)'}")
        return out


def mcnemar(champion_right: np.ndarray, challenger_right: np.ndarray) -> tuple[float, float, dict]:
    """McNemar on paired correctness: (statistic, p-value, the discordant counts)."""
    b = int(np.sum(champion_right & ~challenger_right))  # only the champion right
    c = int(np.sum(~champion_right & challenger_right))  # only the challenger right
    if b + c == 0:
        return 0.0, 1.0, {"only_champion_right": b, "only_challenger_right": c}
    if b + c < 25:
        p = stats.binomtest(b, b + c, 0.5).pvalue
        return float(min(b, c)), float(p), {"only_champion_right": b, "only_challenger_right": c}
    statistic = (abs(b - c) - 1) ** 2 / (b + c)
    return (
        float(statistic),
        float(stats.chi2.sf(statistic, 1)),
        {
            "only_champion_right": b,
            "only_challenger_right": c,
        },
    )


def compare_paired(
    task: str,
    y: np.ndarray,
    champion_scores: np.ndarray,
    challenger_scores: np.ndarray,
    names: tuple[str, str],
    threshold: float = 0.5,
    alpha: float = 0.01,
) -> Comparison:
    y = np.asarray(y, dtype=float)
    a, b = np.asarray(champion_scores, dtype=float), np.asarray(challenger_scores, dtype=float)
    if task == "binary":
        kpis_a, kpis_b = binary_metrics(y, a, threshold), binary_metrics(y, b, threshold)
        truth = y >= 0.5
        statistic, p, detail = mcnemar((a >= threshold) == truth, (b >= threshold) == truth)
        test = "McNemar" + (" exact" if sum(detail.values()) < 25 else "")
    else:
        kpis_a, kpis_b = regression_metrics(y, a), regression_metrics(y, b)
        diff = np.abs(a - y) - np.abs(b - y)
        if np.all(diff == 0):
            statistic, p = 0.0, 1.0
        else:
            result = stats.wilcoxon(np.abs(a - y), np.abs(b - y))
            statistic, p = float(result.statistic), float(result.pvalue)
        detail = {"mean_abs_error_difference": float(diff.mean())}
        test = "Wilcoxon signed-rank on absolute errors"
    return decide(task, names, True, len(y), len(y), kpis_a, kpis_b, test, statistic, p, alpha, detail)


def compare_unpaired(
    task: str,
    champion: tuple[np.ndarray, np.ndarray],
    challenger: tuple[np.ndarray, np.ndarray],
    names: tuple[str, str],
    threshold: float = 0.5,
    alpha: float = 0.01,
) -> Comparison:
    """Each argument is (labels, scores) of the events that model served."""
    (ya, a), (yb, b) = ((np.asarray(v, dtype=float) for v in pair) for pair in (champion, challenger))
    if task == "binary":
        kpis_a, kpis_b = binary_metrics(ya, a, threshold), binary_metrics(yb, b, threshold)
        right_a = int(np.sum((a >= threshold) == (ya >= 0.5)))
        right_b = int(np.sum((b >= threshold) == (yb >= 0.5)))
        statistic, p = two_proportions(right_a, len(ya), right_b, len(yb))
        test, detail = "two-proportion z-test on accuracy", {}
    else:
        kpis_a, kpis_b = regression_metrics(ya, a), regression_metrics(yb, b)
        result = stats.mannwhitneyu(np.abs(a - ya), np.abs(b - yb))
        statistic, p = float(result.statistic), float(result.pvalue)
        test, detail = "Mann-Whitney U on absolute errors", {}
    return decide(task, names, False, len(ya), len(yb), kpis_a, kpis_b, test, statistic, p, alpha, detail)


def two_proportions(right_a: int, n_a: int, right_b: int, n_b: int) -> tuple[float, float]:
    """The two-proportion z-test of accuracy ``right_b / n_b`` against ``right_a / n_a``: (z, p-value)."""
    pooled = (right_a + right_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    statistic = (right_b / n_b - right_a / n_a) / se if se > 0 else 0.0
    return float(statistic), float(2 * stats.norm.sf(abs(statistic)))


def decide(task, names, paired, n_a, n_b, kpis_a, kpis_b, test, statistic, p, alpha, detail) -> Comparison:
    """The ``Comparison``: the winner is the better primary KPI when the test rejects equality."""
    primary = Task(task).primary_metric
    higher_better = Task(task).higher_is_better
    better_b = kpis_b[primary] > kpis_a[primary] if higher_better else kpis_b[primary] < kpis_a[primary]
    winner = None
    if p < alpha and kpis_a[primary] != kpis_b[primary]:
        winner = "challenger" if better_b else "champion"
    return Comparison(
        champion=names[0],
        challenger=names[1],
        paired=paired,
        n_champion=n_a,
        n_challenger=n_b,
        champion_kpis=kpis_a,
        challenger_kpis=kpis_b,
        test=test,
        statistic=float(statistic),
        p_value=float(p),
        alpha=alpha,
        winner=winner,
        detail=detail,
    )


@dataclass
class PairedTally:
    """Running McNemar counts for a shadow challenger, for promotion without a person.

    "Right" is the correct class for binary and the smaller absolute error for
    regression (a sign test); ties count for neither.
    """

    champion: str
    challenger: str
    pairs: int = 0
    only_champion_right: int = 0
    only_challenger_right: int = 0
    promoted: bool = False

    def add(self, champion_right: bool, challenger_right: bool) -> None:
        self.pairs += 1
        self.only_champion_right += champion_right and not challenger_right
        self.only_challenger_right += challenger_right and not champion_right

    def p_value(self) -> float:
        b, c = self.only_champion_right, self.only_challenger_right
        return mcnemar(np.array([True] * b + [False] * c), np.array([False] * b + [True] * c))[1]

    def challenger_wins(self, min_pairs: int, alpha: float) -> bool:
        return (
            self.pairs >= min_pairs
            and self.only_challenger_right > self.only_champion_right
            and self.p_value() < alpha
        )
