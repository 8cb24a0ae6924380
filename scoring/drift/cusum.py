"""Page's CUSUM of the log-likelihood ratio: a rise in a model's error stream, false alarms set ahead.

Each value ``x`` (an error: 0/1 for a binary model, the absolute error of a regression)
adds the log-likelihood ratio of "the mean rose by ``shift``" against "the mean is what it
was": ``g = max(0, g + llr(x))``, an alarm when ``g`` exceeds ``threshold``. The baseline is
the running mean (and, for continuous errors, sd) of the values before ``x`` since the last
alarm, so nothing has to be known of the model ahead and the parameters do not depend on
its error level:

- ``binary``: Bernoulli errors, ``p0`` the running error rate, ``p1 = p0 + shift`` (``shift``
  in points of error rate, 0.10 is ten points): ``llr = x ln(p1/p0) + (1-x) ln((1-p1)/(1-p0))``.
- ``continuous``: ``z = (x - mean) / sd`` and ``llr = shift * z - shift**2 / 2`` (``shift``
  in standard deviations of the error).

``threshold`` is in log-likelihood units: the mean run between false alarms of a CUSUM
with a known baseline is at least ``exp(threshold)`` values (Lorden 1971); the estimated
baseline costs some of it, which ``bench/alerts.py`` measures. After an alarm the
detector starts afresh on the new level, with ``warmup`` values before it may alarm again.

``scan`` gives the same alarms as ``update`` value by value, computed with numpy (the
Lindley recursion ``g_t = W_t - min(-g_0, min_{s<=t} W_s)`` over the cumulative sum ``W`` of
the ratios), so the bench measures the detector itself over hundreds of millions of values.

>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> errors = np.concatenate([rng.random(20_000) < 0.2, rng.random(5_000) < 0.3]).astype(float)
>>> detector = ErrorCusum("binary")
>>> alarms = [i for i, e in enumerate(errors) if detector.update(e)]
>>> alarms == ErrorCusum("binary").scan(errors).tolist(), len(alarms), 20_000 < alarms[0] < 22_000
(True, 1, True)
>>> evidence = detector.evidence
>>> [round(float(v), 3) for v in (evidence.mean_before, evidence.mean_after)]
[0.202, 0.304]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Kind = Literal["binary", "continuous"]

DEFAULT_SHIFT = {"binary": 0.10, "continuous": 0.25}
DEFAULT_THRESHOLD = 15.0  # exp(15): 3.3 million values between false alarms at least (bench: 10+ times that)
DEFAULT_WARMUP = 2_000
CLIP_SD = 3.0  # a continuous error counts at most this many sd: one outlier is not a change
_BLOCK = 65_536  # values per numpy pass of ``scan``: an alarm restarts at most this much work


@dataclass(frozen=True)
class CusumEvidence:
    """What an alarm rests on: the statistic against its threshold, and the levels before and after.

    ``since_change`` values since the estimated change point (where the statistic last left 0)
    have mean ``mean_after``; the ``baseline`` values before that point had mean ``mean_before``.
    """

    statistic: float
    threshold: float
    baseline: int
    mean_before: float
    since_change: int
    mean_after: float


class ErrorCusum:
    """One-sided CUSUM on an error stream: alarms when its mean rises by ``shift`` (see the module)."""

    def __init__(
        self,
        kind: Kind,
        shift: float | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        warmup: int = DEFAULT_WARMUP,
    ) -> None:
        if kind not in DEFAULT_SHIFT:
            raise ValueError(f"kind must be binary or continuous, not {kind!r}")
        self.kind = kind
        self.shift = DEFAULT_SHIFT[kind] if shift is None else shift
        if not 0 < self.shift < (1 if kind == "binary" else math.inf):
            raise ValueError(f"shift must be positive{' and below 1' if kind == 'binary' else ''}")
        if threshold <= 0 or warmup < 2:
            raise ValueError("the threshold must be positive and the warm-up at least 2 values")
        self.threshold = threshold
        self.warmup = warmup
        self.evidence: CusumEvidence | None = None  # of the last alarm
        self._reset()

    def _reset(self) -> None:
        self._n = 0
        self._s1 = 0.0
        self._s2 = 0.0
        self._g = 0.0
        self._run_n = 0  # values since the statistic last left 0, and their sum
        self._run_s = 0.0

    @property
    def statistic(self) -> float:
        return self._g

    @property
    def count(self) -> int:
        """Values seen since the start or the last alarm."""
        return self._n

    def _llr(self, x: float) -> float:
        n = self._n
        if self.kind == "binary":
            p0 = min(max((self._s1 + 0.5) / (n + 1), 1e-6), 1 - self.shift - 1e-6)
            p1 = p0 + self.shift
            return math.log(p1 / p0) if x >= 0.5 else math.log((1 - p1) / (1 - p0))
        mean = self._s1 / n
        var = (self._s2 - self._s1 * mean) / (n - 1)
        if var <= 0:
            return 0.0
        return self.shift * min((x - mean) / math.sqrt(var), CLIP_SD) - self.shift * self.shift / 2

    def update(self, x: float) -> bool:
        """One value; True when it raised an alarm (``evidence`` then says why)."""
        alarm = False
        if self._n >= self.warmup:
            g = self._g + self._llr(x)
            if g <= 0:
                self._g, self._run_n, self._run_s = 0.0, 0, 0.0
            else:
                self._g, self._run_n, self._run_s = g, self._run_n + 1, self._run_s + x
                alarm = g > self.threshold
        self._n += 1
        self._s1 += x
        self._s2 += x * x
        if alarm:
            self._alarm()
        return alarm

    def _alarm(self) -> None:
        before = self._n - self._run_n
        self.evidence = CusumEvidence(
            statistic=self._g,
            threshold=self.threshold,
            baseline=before,
            mean_before=float((self._s1 - self._run_s) / before),
            since_change=self._run_n,
            mean_after=float(self._run_s / self._run_n),
        )
        self._reset()

    # -- the same, vectorised

    def scan(self, values: np.ndarray) -> np.ndarray:
        """Feed ``values`` in order; the indices of the values that raised an alarm (as ``update``)."""
        values = np.asarray(values, dtype=float)
        alarms: list[int] = []
        start = 0
        while start < len(values):
            stop = min(len(values), start + _BLOCK)
            hit = self._scan_block(values[start:stop])
            if hit is None:
                start = stop
            else:
                alarms.append(start + hit)
                start += hit + 1
        return np.asarray(alarms, dtype=np.int64)

    def _scan_block(self, x: np.ndarray) -> int | None:
        """Values of one block up to the first alarm: the index of the alarm, None if none."""
        n0 = self._n
        counts = n0 + np.arange(len(x))  # values before each one
        s1 = np.cumsum(np.concatenate([[self._s1], x]))  # sequential sums, as ``update`` adds
        s2 = np.cumsum(np.concatenate([[self._s2], x * x]))
        live = counts >= self.warmup
        llr = np.zeros(len(x))
        if live.any():
            llr[live] = self._llrs(x[live], counts[live], s1[:-1][live], s2[:-1][live])
        w = np.cumsum(llr)
        g = w - np.minimum(np.minimum.accumulate(w), -self._g)
        over = np.flatnonzero(g > self.threshold)
        end = int(over[0]) if over.size else len(x) - 1
        # where the statistic last left 0 at or before ``end`` (a value with g <= 0 resets the run)
        zeros = np.flatnonzero(g[: end + 1] <= 0)
        first_live = int(np.argmax(live)) if live.any() else len(x)
        run_from = int(zeros[-1]) + 1 if zeros.size else max(first_live, 0)
        carried = not zeros.size and self._g > 0  # the run began in an earlier block
        run_n = end + 1 - run_from + (self._run_n if carried else 0)
        run_s = float(x[run_from : end + 1].sum()) + (self._run_s if carried else 0.0)
        if over.size:
            self._g, self._run_n, self._run_s = float(g[end]), run_n, run_s
            self._n, self._s1, self._s2 = int(counts[end]) + 1, float(s1[end + 1]), float(s2[end + 1])
            self._alarm()
            return end
        self._g = max(float(g[-1]), 0.0)
        self._run_n, self._run_s = (run_n, run_s) if self._g > 0 else (0, 0.0)
        self._n, self._s1, self._s2 = n0 + len(x), float(s1[-1]), float(s2[-1])
        return None

    def _llrs(self, x: np.ndarray, n: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
        if self.kind == "binary":
            p0 = np.clip((s1 + 0.5) / (n + 1), 1e-6, 1 - self.shift - 1e-6)
            p1 = p0 + self.shift
            return np.where(x >= 0.5, np.log(p1 / p0), np.log((1 - p1) / (1 - p0)))
        mean = s1 / n
        var = (s2 - s1 * mean) / (n - 1)
        ok = var > 0
        out = np.zeros(len(x))
        z = np.minimum((x[ok] - mean[ok]) / np.sqrt(var[ok]), CLIP_SD)
        out[ok] = self.shift * z - self.shift * self.shift / 2
        return out
