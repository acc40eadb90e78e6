"""Paired comparisons over seeds, decided by a rule that keeps its level.

One seed gives one paired observation (same data and initialisation for both methods). The
decision rule (:data:`RULE`): a **Student-t interval** (n − 1 degrees of freedom) on the per-seed
log ratios (ratio claims: the estimate is the geometric mean of the paired ratios) or on the
per-seed differences; a comparison is *won* or *lost* only when that 95% interval excludes no
difference **and** it rests on at least :data:`MIN_SEEDS` seeds; otherwise it is *undecided*. An
exact sign-flip (randomisation) p-value is reported beside each interval.

Why not the percentile bootstrap this module used before: over 3-10 seeds its "95%" interval
covers the truth 74-90% of the time (at 3 seeds it is exactly [min, max] of the seeds). The
t interval keeps its level for normal and heavy-tailed per-seed values at every seed count
(measured: :mod:`sobolev.common.decision_level`, asserted by ``tests/common/test_stats.py``).

Other paths a claim takes, each with its level (and power) measured in :mod:`sobolev.common.decision_level`:

* **censored values** (a run that never reaches a target: ``inf``): :func:`paired_ratio_censored`, the
  distribution-free interval of the median paired log ratio from order statistics (the sign test's
  dual), which ranks "never" as the worst outcome and keeps its level whatever the distribution; at 5
  seeds no such interval can exclude no difference (the sign test's smallest two-sided p is 1/16);
* **effects compared with effects** (is the gain larger at one setting than at another?): the per-seed
  differences of two paired effects through the same t interval (:func:`paired_effect_difference`);
* **families of cells** (a claim that fails on any decided loss among many cells): Holm's step-down
  adjustment of the cells' t-test p-values (:func:`holm`, :func:`all_win`), so a claim's chance of a false
  loss stays at 5% however many cells it covers;
* **non-inferiority** ("competitive"): the interval against a stated margin (:func:`non_inferior`).

Percentile bootstraps remain only as *descriptive* intervals of medians (:func:`median_interval`),
which decide nothing.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

WIN, LOSS, UNDECIDED = "win", "loss", "undecided"
LEVEL = 0.95
MIN_SEEDS = 5  # fewer paired seeds decide nothing, whatever the interval says
RULE = (
    f"paired Student-t {LEVEL:.0%} interval over seeds (on log ratios for ratios), n − 1 df; "
    f"decided only when it excludes no difference on ≥ {MIN_SEEDS} seeds; p: exact sign-flip test"
)
_EXACT_FLIPS = 16  # enumerate all 2^n sign patterns up to this many seeds, sample 2^16 beyond


def count_verdicts(verdicts: Sequence[str]) -> str:
    """``"a win / b loss / c undecided"`` for a collection of verdicts."""
    v = list(verdicts)
    return f"{v.count(WIN)} win / {v.count(LOSS)} loss / {v.count(UNDECIDED)} undecided"


def all_win(verdicts: Sequence[str], p_values: Sequence[float] | None = None) -> bool | None:
    """A claim over cells: holds (``True``) when every cell is a win, fails (``False``) when a cell is a loss, and
    is undecided (``None``) otherwise, including when there are no cells.

    "Every cell wins" needs no adjustment for many cells (each cell must win at the full level: an
    intersection-union test). "Some cell loses" does: with the cells' t-test ``p_values`` (:attr:`Interval.t_p_value`)
    a loss counts only when it survives Holm's adjustment over the family (:func:`holm`), so the chance of a
    false "fails" stays at 5% however many cells the claim covers."""
    v = list(verdicts)
    if not v:
        return None
    if all(x == WIN for x in v):
        return True
    adjusted = v if p_values is None else holm(v, list(p_values))
    return False if LOSS in adjusted else None


def holm(verdicts: Sequence[str], p_values: Sequence[float], alpha: float = 1 - LEVEL) -> list[str]:
    """Holm's step-down adjustment of a family of decided cells: ``verdicts`` (each cell's own, at the full level)
    and their two-sided t-test ``p_values``; a decided cell keeps its verdict only if its p-value passes Holm's
    threshold ``alpha / (m − rank)`` among the family's ``m`` cells (undecided cells count in ``m``)."""
    v, ps = list(verdicts), np.asarray(p_values, float)
    if len(v) != len(ps):
        raise ValueError(f"verdicts and p_values must have equal length, got {len(v)} and {len(ps)}")
    ps = np.where(np.array([x != UNDECIDED for x in v], bool), ps, np.nan)
    out = [UNDECIDED] * len(v)
    m = len(v)
    order = [i for i in np.argsort(np.where(np.isnan(ps), np.inf, ps), kind="stable") if not np.isnan(ps[i])]
    for rank, i in enumerate(order):
        if ps[i] > alpha / (m - rank):
            break
        out[i] = v[i]
    return out


def t_interval(values: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean of ``values`` ``(..., n)`` over the last axis with its Student-t interval (n − 1 df).

    Returns ``(mean, low, high)``, each of shape ``(...)``; with fewer than 2 values the interval
    is ``(-inf, inf)``.
    """
    values = np.asarray(values, float)
    n = values.shape[-1]
    mean = values.mean(axis=-1) if n else np.full(values.shape[:-1], np.nan)
    if n < 2:
        return mean, np.full_like(mean, -np.inf), np.full_like(mean, np.inf)
    half = sps.t.ppf((1 + level) / 2, n - 1) * values.std(axis=-1, ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half


def sign_flip_p(values: np.ndarray, seed: int = 0) -> float:
    """Two-sided p-value of the exact sign-flip (randomisation) test of a zero mean: the share of
    the 2^n sign patterns whose mean is at least as far from 0 as the observed one (sampled with
    2^16 patterns beyond :data:`_EXACT_FLIPS` values). With n values it is at least 2 / 2^n."""
    values = np.asarray(values, float)
    n = len(values)
    if n == 0 or not np.all(np.isfinite(values)):
        return float("nan")
    if n <= _EXACT_FLIPS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(2**16, n))
    observed = abs(values.mean())
    flipped = np.abs(signs @ values) / n
    return float(np.mean(flipped >= observed * (1 - 1e-12)))


@functools.lru_cache(maxsize=8)
def _half_widths(level: float, most: int) -> np.ndarray:
    """t_{n−1} quantile / √n for n = MIN_SEEDS .. most: the interval's half-width per unit spread
    (decreasing in n), computed once per level."""
    n = np.arange(MIN_SEEDS, most + 1)
    return sps.t.ppf((1 + level) / 2, n - 1) / np.sqrt(n)


def seeds_needed(effect: float, spread: float, level: float = LEVEL, most: int = 10_000) -> int | None:
    """A planning figure, not evidence: the fewest seeds whose t interval would exclude no difference *if* the
    true mean effect and spread were the ones observed (at least :data:`MIN_SEEDS`). Computed from the observed
    effect it is optimistic (observed effects of undecided cells are inflated by chance), and adding seeds until
    a cell decides would break the rule's level: it sizes a *new* experiment, never extends this one. ``None``
    when the effect is zero or not finite, or more than ``most`` seeds would be needed."""
    if not (np.isfinite(effect) and np.isfinite(spread)) or effect == 0:
        return None
    enough = np.flatnonzero(_half_widths(level, most) * spread < abs(effect))
    return int(MIN_SEEDS + enough[0]) if len(enough) else None


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval, over ``n`` paired seeds.

    ``null`` is the value meaning no difference (1 for ratios, 0 for differences);
    ``lower_is_better`` says which side is a win for the first method. ``effect`` and ``spread``
    are the mean and standard deviation of the per-seed values on the scale the interval was
    computed on (log ratios, or differences); ``p_value`` is the sign-flip test's.
    """

    estimate: float
    low: float
    high: float
    n: int
    null: float
    lower_is_better: bool = True
    p_value: float = float("nan")
    effect: float = float("nan")
    spread: float = float("nan")

    @property
    def verdict(self) -> str:
        """``win``, ``loss`` or ``undecided`` for the first method of the pair (undecided below
        :data:`MIN_SEEDS` seeds)."""
        if self.n < MIN_SEEDS or np.isnan(self.low) or np.isnan(self.high):
            return UNDECIDED  # an infinite bound is a bound (a censored median interval); (-inf, inf) holds the null
        below, above = self.high < self.null, self.low > self.null
        if not (below or above):
            return UNDECIDED
        return WIN if below == self.lower_is_better else LOSS

    @property
    def seeds_needed(self) -> int | None:
        """A planning figure for a new experiment (see :func:`seeds_needed`), not evidence about this one."""
        return seeds_needed(self.effect, self.spread)

    @property
    def t_p_value(self) -> float:
        """The two-sided p-value of the t test behind the interval (on log ratios for ratios), recovered from the
        interval's half-width; what :func:`holm` adjusts. NaN without a finite interval."""
        return self.p_against(self.null)

    def p_against(self, value: float) -> float:
        """The two-sided t-test p-value of the hypothesis that the true effect is ``value`` (a ratio for ratio
        intervals: the test runs on its log), recovered from the interval's centre and half-width."""
        if self.n < 2 or not (np.isfinite(self.low) and np.isfinite(self.high)):
            return float("nan")
        log = self.null == 1.0
        if log and not (self.low > 0 and self.estimate > 0 and value > 0):
            return float("nan")
        centre = math.log(self.estimate) if log else self.estimate
        half = (math.log(self.high) - math.log(self.low)) / 2 if log else (self.high - self.low) / 2
        target = math.log(value) if log else value
        if half <= 0:
            return 0.0 if centre != target else 1.0
        t = (centre - target) / (half / sps.t.ppf((1 + LEVEL) / 2, self.n - 1))
        return float(2 * sps.t.sf(abs(t), self.n - 1))

    def evidence(self) -> dict[str, float]:
        """Table columns beside the estimate and interval: ``p`` (sign-flip) and ``seeds_to_plan`` (for an
        undecided comparison, the seeds a *new* experiment would need if the observed effect and spread were the
        truth: a planning figure, optimistic, never a reason to add seeds to this one; NaN when decided, or when
        no count would)."""
        needed = self.seeds_needed if self.verdict == UNDECIDED else None
        return {"p": self.p_value, "p_t": self.t_p_value,
                "seeds_to_plan": float(needed) if needed is not None else float("nan")}  # fmt: skip

    def __str__(self) -> str:
        return f"{self.estimate:.3g} [{self.low:.3g}, {self.high:.3g}]"


def _paired_interval(values: np.ndarray, level: float) -> tuple[float, float, float, float, float]:
    """``(mean, low, high, p, spread)`` of per-seed ``values``; a non-finite seed (a diverged run)
    makes the interval infinite: nothing is decided, and no seed is silently dropped."""
    if len(values) == 0:
        return (float("nan"),) * 5
    if not np.all(np.isfinite(values)):
        return float("nan"), float("-inf"), float("inf"), float("nan"), float("nan")
    mean, low, high = t_interval(values, level)
    spread = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return float(mean), float(low), float(high), sign_flip_p(values), spread


def _pair(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values must be two 1-D arrays of equal length, got {a.shape} and {b.shape}")
    return a, b


def paired_ratio(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval:
    """Geometric mean of ``a[i] / b[i]`` over paired seeds, with the t interval of the mean log ratio.

    ``a`` and ``b`` are positive errors (lower is better) of two methods on the same seeds;
    an estimate below 1 with its interval below 1 is a win for ``a``.
    """
    a, b = _pair(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(a) - np.log(b)
    mean, low, high, p, spread = _paired_interval(logs, level)
    return Interval(float(np.exp(mean)), float(np.exp(low)), float(np.exp(high)), len(a), 1.0, True, p, mean, spread)


def paired_difference(
    a: Sequence[float], b: Sequence[float], level: float = LEVEL, lower_is_better: bool = False
) -> Interval:
    """Mean of ``a[i] - b[i]`` over paired seeds with its t interval (e.g. accuracy, where higher
    is better: ``lower_is_better=False``)."""
    a, b = _pair(a, b)
    mean, low, high, p, spread = _paired_interval(a - b, level)
    return Interval(mean, low, high, len(a), 0.0, lower_is_better, p, mean, spread)


def welch_interval(
    groups: Sequence[Sequence[float]],
    weights: Sequence[float],
    level: float = LEVEL,
    lower_is_better: bool = True,
) -> Interval:
    """``Σ weights[i] · mean(groups[i])`` over *independent* groups with its Welch-Satterthwaite t
    interval (e.g. a teacher's mean score minus random play's, or a mean over functions at one
    data size minus the one at another), as an :class:`Interval` against 0 whose ``n`` is the
    smallest group (so fewer than :data:`MIN_SEEDS` values in a group decide nothing). Infinite
    bounds when a group has fewer than 2 values or a value is not finite."""
    arrays = [np.asarray(g, float) for g in groups]
    if len(arrays) != len(weights):
        raise ValueError(f"groups and weights must have equal length, got {len(arrays)} and {len(weights)}")
    empty = [i for i, g in enumerate(arrays) if g.ndim != 1 or len(g) == 0]
    if not arrays or empty:
        raise ValueError(f"groups must be non-empty 1-D sequences of values; empty or not 1-D: groups{empty or ''}")
    estimate = float(sum(w * g.mean() for w, g in zip(weights, arrays, strict=True)))
    n = min(len(g) for g in arrays)
    if n < 2 or not all(np.all(np.isfinite(g)) for g in arrays):
        return Interval(estimate, float("-inf"), float("inf"), n, 0.0, lower_is_better)
    parts = np.array([w**2 * g.var(ddof=1) / len(g) for w, g in zip(weights, arrays, strict=True)])
    var = parts.sum()
    half = 0.0
    if var > 0:
        df = var**2 / np.sum(parts**2 / np.array([len(g) - 1 for g in arrays]))
        half = float(sps.t.ppf((1 + level) / 2, df) * math.sqrt(var))
    return Interval(estimate, estimate - half, estimate + half, n, 0.0, lower_is_better)


def median_interval_exact(values: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """``(median, low, high)`` of ``values`` ``(n,)`` with the distribution-free interval of the median from order
    statistics, ``[v_(k), v_(n+1−k)]`` for the largest ``k`` with ``P(Bin(n, ½) < k) ≤ (1 − level) / 2``: its
    coverage is at least ``level`` for any continuous distribution, and it is the dual of the sign test. Values
    may be ``±inf`` (censored). ``(-inf, inf)`` when ``n`` is too small to reach ``level`` (n ≤ 5 at 95%)."""
    v = np.sort(np.asarray(values, float))
    n = len(v)
    if n == 0:
        return float("nan"), float("-inf"), float("inf")
    median = float(np.median(v)) if np.isfinite(v).all() else float(v[(n - 1) // 2] if n % 2 else
                                                                        _mid(v[n // 2 - 1], v[n // 2]))  # fmt: skip
    tail = (1 - level) / 2
    k = 0
    while k + 1 <= n // 2 and sps.binom.cdf(k, n, 0.5) <= tail:
        k += 1
    if k == 0:
        return median, float("-inf"), float("inf")
    return median, float(v[k - 1]), float(v[n - k])


def _mid(a: float, b: float) -> float:
    """The midpoint of two sorted values, ``inf`` when the larger is (a median that is censored)."""
    return float(b) if np.isinf(b) or np.isinf(a) else float((a + b) / 2)


def paired_ratio_censored(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval:
    """:func:`paired_ratio` for values that may be ``inf`` (a run that never reached its target, slower than any
    finite value): with every value finite it *is* :func:`paired_ratio`; otherwise the per-seed log ratios (``inf``
    for a censored ``a``) get the distribution-free median interval (:func:`median_interval_exact`) and the exact
    two-sided sign test, so "never" counts as the worst outcome and the level holds whatever the distribution.
    The estimate is the median ratio (``inf`` when most pairs never arrived)."""
    a, b = _pair(a, b)
    if np.isfinite(a).all() and np.isfinite(b).all():
        return paired_ratio(a, b, level)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(np.isinf(a) & np.isfinite(b), np.inf, np.log(a) - np.log(b))
    if np.isnan(logs).any():
        return Interval(float("nan"), 0.0, float("inf"), len(a), 1.0)
    median, low, high = median_interval_exact(logs, level)
    signs = np.sign(logs[logs != 0])
    below, m = int((signs < 0).sum()), len(signs)
    p = float(min(1.0, 2 * sps.binom.cdf(min(below, m - below), m, 0.5))) if m else 1.0
    return Interval(float(np.exp(median)), float(np.exp(low)), float(np.exp(high)), len(a), 1.0, True, p)


def paired_effect_difference(first: Sequence[float], second: Sequence[float], level: float = LEVEL) -> Interval:
    """Is an effect larger at one setting than at another? ``first`` and ``second`` are the per-seed effects (log
    ratios, or differences) at the two settings, paired by seed; the t interval of their per-seed difference
    ``first − second`` (for log ratios: the log of the ratio of ratios, reported as that ratio)."""
    return paired_ratio(np.exp(first), np.exp(second), level)


def family_verdicts(intervals: Sequence[Interval], alpha: float = 1 - LEVEL) -> list[str]:
    """:func:`holm` on a family of :class:`Interval`: the chance that any cell of the family is decided wrongly
    stays at ``alpha`` however many cells there are."""
    return holm([iv.verdict for iv in intervals], [iv.t_p_value for iv in intervals], alpha)


def non_inferior(iv: Interval, margin: float) -> str:
    """Is the first method no worse than ``margin`` times the second (a ratio interval of errors, lower better)?
    ``"yes"`` when the whole interval lies at or below ``margin`` (a one-sided test at the interval's level: "not
    worse by more than the margin"), ``"no"`` when it lies above, ``"undecided"`` otherwise (and below
    :data:`MIN_SEEDS` seeds). What "competitive" means when it is claimed: being better is allowed, being worse
    by more than the margin is not; the absence of a decided loss is no evidence of it."""
    if iv.n < MIN_SEEDS or np.isnan(iv.low) or np.isnan(iv.high):
        return UNDECIDED
    if iv.high <= margin:
        return "yes"
    return "no" if iv.low > margin else UNDECIDED


def bootstrap_means(values: np.ndarray, n_boot: int, seed: int = 0, statistic=np.mean) -> np.ndarray:
    """``statistic`` (the mean unless given) of ``n_boot`` resamples (with replacement) of
    ``values`` ``(n,)``, shape ``(n_boot,)``. Descriptive only: no verdict is decided on it."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    return statistic(values[idx], axis=1)


def median_interval(values: np.ndarray, n_boot: int, level: float = LEVEL, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median of ``values`` (seeds resampled): a descriptive
    band for tables and figures, never a decision (it under-covers at few seeds)."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(bootstrap_means(np.asarray(values, float), n_boot, seed, np.median), [tail, 100 - tail])
    return float(low), float(high)
