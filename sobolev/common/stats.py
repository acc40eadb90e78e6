"""Paired comparisons over seeds, decided by bootstrap confidence intervals.

One seed gives one paired observation (same data and initialisation for both methods). A
comparison is *won* or *lost* only when its 95% interval excludes no difference; otherwise
it is *undecided*. Ratios are compared on the log scale: the geometric mean of the per-seed
ratios, whose interval comes from resampling the seeds (percentile bootstrap).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

WIN, LOSS, UNDECIDED = "win", "loss", "undecided"


def count_verdicts(verdicts: Sequence[str]) -> str:
    """``"a win / b loss / c undecided"`` for a collection of verdicts."""
    v = list(verdicts)
    return f"{v.count(WIN)} win / {v.count(LOSS)} loss / {v.count(UNDECIDED)} undecided"


@dataclass(frozen=True)
class Interval:
    """An estimate with its bootstrap interval, over ``n`` paired seeds.

    ``null`` is the value meaning no difference (1 for ratios, 0 for differences); ``lower_is_better``
    says which side is a win for the first method.
    """

    estimate: float
    low: float
    high: float
    n: int
    null: float
    lower_is_better: bool = True

    @property
    def verdict(self) -> str:
        """``win``, ``loss`` or ``undecided`` for the first method of the pair."""
        if not np.isfinite(self.low) or not np.isfinite(self.high):
            return UNDECIDED
        below, above = self.high < self.null, self.low > self.null
        if not (below or above):
            return UNDECIDED
        return WIN if below == self.lower_is_better else LOSS

    def __str__(self) -> str:
        return f"{self.estimate:.3g} [{self.low:.3g}, {self.high:.3g}]"


def bootstrap_means(values: np.ndarray, n_boot: int, seed: int = 0, statistic=np.mean) -> np.ndarray:
    """``statistic`` (the mean unless given) of ``n_boot`` resamples (with replacement) of
    ``values`` ``(n,)``, shape ``(n_boot,)``."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    return statistic(values[idx], axis=1)


def median_interval(values: np.ndarray, n_boot: int, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median of ``values`` (seeds resampled)."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(bootstrap_means(np.asarray(values, float), n_boot, seed, np.median), [tail, 100 - tail])
    return float(low), float(high)


def _interval(values: np.ndarray, n_boot: int, level: float, seed: int) -> tuple[float, float, float]:
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    if not np.all(np.isfinite(values)):
        return float("nan"), float("-inf"), float("inf")  # a diverged seed: nothing is decided
    means = bootstrap_means(values, n_boot, seed)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(values.mean()), float(low), float(high)


def paired_ratio(
    a: Sequence[float], b: Sequence[float], n_boot: int = 10_000, level: float = 0.95, seed: int = 0
) -> Interval:
    """Geometric mean of ``a[i] / b[i]`` over paired seeds, with its bootstrap interval.

    ``a`` and ``b`` are positive errors (lower is better) of two methods on the same seeds;
    an estimate below 1 with its interval below 1 is a win for ``a``.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values must be two 1-D arrays of equal length, got {a.shape} and {b.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(a) - np.log(b)
    mean, low, high = _interval(logs, n_boot, level, seed)
    return Interval(float(np.exp(mean)), float(np.exp(low)), float(np.exp(high)), len(a), 1.0)


def paired_difference(
    a: Sequence[float],
    b: Sequence[float],
    n_boot: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
    lower_is_better: bool = False,
) -> Interval:
    """Mean of ``a[i] - b[i]`` over paired seeds, with its bootstrap interval (e.g. accuracy,
    where higher is better: ``lower_is_better=False``)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values must be two 1-D arrays of equal length, got {a.shape} and {b.shape}")
    mean, low, high = _interval(a - b, n_boot, level, seed)
    return Interval(mean, low, high, len(a), 0.0, lower_is_better)
