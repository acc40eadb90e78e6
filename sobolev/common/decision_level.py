"""How often a decision rule is wrong when there is no effect, and how often it finds an effect that is there:
measured level (coverage, false decisions) and power at few seeds, for every path a claim takes, and how skewed
the committed per-seed values are.

``python -m sobolev.common.decision_level`` prints the tables. ``tests/common/test_stats.py`` asserts that each
path of :mod:`sobolev.common.stats` keeps its level (the t interval, the censored median interval, effects
compared with effects, a family of cells under Holm) and has power (an effect of 1 sd at 10 seeds is decided in
most replicates), and that weaker rules (the percentile bootstrap it replaced, a 50% interval, [min, max],
mean ± 1 SE) and over-cautious ones (a rule that never decides, a 99.9% interval) fail one or the other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from sobolev.common.compare import select_lr
from sobolev.common.install import settled
from sobolev.common.stats import LEVEL, LOSS, MIN_SEEDS, holm, median_interval_exact, paired_ratio, t_interval

# A rule maps per-seed values (reps, n) to interval bounds ((reps,), (reps,)).
Rule = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _centred_lognormal(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return rng.lognormal(0.0, 1.0, shape) - np.exp(0.5)  # mean 0, skewness ≈ 6.2


SAMPLERS: dict[str, Callable[[np.random.Generator, tuple[int, int]], np.ndarray]] = {
    "normal": lambda rng, shape: rng.standard_normal(shape),
    "t, 3 df": lambda rng, shape: rng.standard_t(3, shape),
    "skewed (centred lognormal)": _centred_lognormal,
}
# A median interval tests the median: its "no effect" is a median of 0 (for the mean-centred lognormal above the
# median is −0.65, so that sampler would measure power, not level).
MEDIAN_SAMPLERS = {**SAMPLERS, "skewed (centred lognormal)": lambda rng, shape: rng.lognormal(0.0, 1.0, shape) - 1.0}


def t_rule(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rule of :mod:`sobolev.common.stats`: the Student-t interval (n − 1 df)."""
    _, low, high = t_interval(values, LEVEL)
    return low, high


def percentile_bootstrap_rule(values: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The rule this project used before: percentile bootstrap of the mean (seeds resampled)."""
    n = values.shape[1]
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    means = values[:, idx].mean(axis=-1)  # (reps, n_boot)
    tail = (1 - LEVEL) / 2 * 100
    return np.percentile(means, tail, axis=1), np.percentile(means, 100 - tail, axis=1)


def censored_rule(values: np.ndarray, censor_share: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """The censored path (:func:`~sobolev.common.stats.paired_ratio_censored`): the largest ``censor_share`` of all
    simulated values become ``+inf`` (runs that never reached the target), then each row gets the order-statistic
    median interval. Censoring keeps the order, so the interval's level is that of the uncensored values."""
    cut = np.quantile(values, 1 - censor_share)
    censored = np.where(values > cut, np.inf, values)
    bounds = [median_interval_exact(row, LEVEL)[1:] for row in censored]
    return np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])


def effect_difference_rule(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Effects compared with effects (:func:`~sobolev.common.stats.paired_effect_difference`): two paired effects
    per seed (their difference is ``values``, split here as ``values + e`` and ``e`` with a shared seed effect ``e``
    that must cancel), then the t interval of the per-seed difference."""
    shared = np.random.default_rng(1).standard_normal(values.shape) * 3.0
    first, second = values + shared, shared
    _, low, high = t_interval(first - second, LEVEL)
    return low, high


def power(rule: Rule, n: int, effect: float = 1.0, sampler: str = "normal", reps: int = 2000, seed: int = 0,
          samplers: dict | None = None) -> float:  # fmt: skip
    """The share of ``reps`` simulated comparisons of ``n`` paired seeds, with a true effect of ``effect`` standard
    deviations, that ``rule`` decides (its interval excludes 0 on at least :data:`MIN_SEEDS` seeds)."""
    if n < MIN_SEEDS:
        return 0.0
    values = (samplers or SAMPLERS)[sampler](np.random.default_rng(seed), (reps, n)) + effect
    low, high = rule(values)
    return float(((low > 0) | (high < 0)).mean())


def family_false_loss(cells: int, n: int, holm_adjusted: bool, reps: int = 2000, seed: int = 0) -> float:
    """A claim over ``cells`` cells with no true effect anywhere, ``n`` seeds each: the share of replicates in which
    some cell is decided a loss (the claim would print NOT reproduced), with and without Holm's adjustment."""
    rng = np.random.default_rng(seed)
    false = 0
    for _ in range(reps):
        values = rng.standard_normal((cells, n))
        ivs = [paired_ratio(np.exp(v), np.ones(n)) for v in values]
        verdicts = (
            holm([iv.verdict for iv in ivs], [iv.t_p_value for iv in ivs])
            if holm_adjusted
            else [iv.verdict for iv in ivs]
        )
        false += LOSS in verdicts
    return false / reps


def paths_table(seeds: tuple[int, ...] = (5, 10), reps: int = 2000) -> pd.DataFrame:
    """Level (coverage, false decisions under no effect) and power (an effect of 1 sd decided) of every decision path
    a claim takes, for every sampler and seed count."""
    rules = {"t interval (ratios, differences)": (t_rule, SAMPLERS),
             "censored median interval (30% never)": (censored_rule, MEDIAN_SAMPLERS),
             "effect against effect": (effect_difference_rule, SAMPLERS)}  # fmt: skip
    rows = []
    for name, (rule, samplers) in rules.items():
        for sampler in samplers:
            for n in seeds:
                coverage, false = level(rule, n, sampler, reps, samplers=samplers)
                rows.append({"path": name, "values": sampler, "seeds": n, "coverage": round(coverage, 3),
                             "false_decisions": round(false, 3),
                             "power_1sd": round(power(rule, n, 1.0, sampler, reps, samplers=samplers), 3)})  # fmt: skip
    return pd.DataFrame(rows)


def level(rule: Rule, n: int, sampler: str = "normal", reps: int = 4000, seed: int = 0,
          samplers: dict | None = None) -> tuple[float, float]:  # fmt: skip
    """``(coverage, false_decisions)`` of ``rule`` over ``reps`` simulated comparisons of ``n``
    paired seeds with a true effect of zero: coverage is the share of intervals containing 0; a
    false decision is an interval excluding 0 on at least :data:`MIN_SEEDS` seeds (what a verdict
    needs), so below that count the rule decides nothing by construction."""
    values = (samplers or SAMPLERS)[sampler](np.random.default_rng(seed), (reps, n))
    low, high = rule(values)
    covered = (low <= 0) & (high >= 0)
    return float(covered.mean()), float((~covered).mean()) if n >= MIN_SEEDS else 0.0


def level_table(rule: Rule = t_rule, seeds: tuple[int, ...] = (3, 5, 10), reps: int = 4000) -> pd.DataFrame:
    """:func:`level` for every sampler and seed count, one row each."""
    columns = ("values", "seeds", "coverage", "false_decisions")
    rows = [dict(zip(columns, (name, n, *level(rule, n, name, reps)), strict=True)) for name in SAMPLERS for n in seeds]
    return pd.DataFrame(rows)


def skewness_check(groups: list[np.ndarray], reps: int = 2000, seed: int = 0) -> dict:
    """How skewed are per-seed values within their cells? ``groups``: one array of per-seed values
    (log ratios or differences) per cell. Each cell's sample skewness is compared with what normal
    values of the same count give: ``median_abs_skew`` (the data's median |g1| over cells) beside
    ``normal_median_abs_skew`` (its median under normal data, simulated), and the share of cells
    whose |g1| is above the 95th percentile of normal samples of their size (5% expected)."""
    cells = [np.asarray(g, float) for g in groups if len(g) >= 3 and np.all(np.isfinite(g)) and np.std(g) > 0]
    rng = np.random.default_rng(seed)
    skews, normal_skews, extreme = [], [], []
    for g in cells:
        s = abs(float(sps.skew(g)))
        sim = np.abs(sps.skew(rng.standard_normal((reps, len(g))), axis=1))
        skews.append(s)
        normal_skews.append(float(np.median(sim)))
        extreme.append(s > np.quantile(sim, 0.95))
    return {
        "cells": len(cells),
        "median_abs_skew": float(np.median(skews)) if cells else float("nan"),
        "normal_median_abs_skew": float(np.median(normal_skews)) if cells else float("nan"),
        "share_beyond_normal_95": float(np.mean(extreme)) if cells else float("nan"),
    }


def resampled_level(groups: list[np.ndarray], n: int, rule: Rule = t_rule, reps: int = 2000, seed: int = 0) -> dict:
    """The rule's coverage on values shaped like the committed ones: each cell's per-seed values,
    centred on their mean (a true effect of zero with the cell's own skew and tails), resampled
    ``n`` at a time, ``reps`` times. Resampling a handful of values itself costs coverage (ties
    shrink the spread), so ``normal_reference`` repeats the procedure on normal values of the same
    cell sizes: the shape of the data matters only as far as ``coverage`` falls below it."""
    rng = np.random.default_rng(seed)
    cells = [np.asarray(g, float) for g in groups if len(g) >= 3 and np.all(np.isfinite(g))]

    def cover(values: np.ndarray) -> float:
        draws = (values - values.mean())[rng.integers(0, len(values), size=(reps, n))]
        low, high = rule(draws)
        return float(((low <= 0) & (high >= 0)).mean())

    data = [cover(g) for g in cells]
    normal = [cover(rng.standard_normal(len(g))) for g in cells]
    return {
        "cells": len(cells),
        "seeds": n,
        "coverage": round(float(np.mean(data)), 3),
        "normal_reference": round(float(np.mean(normal)), 3),
        "worst_cell": round(float(np.min(data)), 3),
    }


def committed_groups(results: Path) -> dict[str, list[np.ndarray]]:
    """Per-seed paired log ratios (test MSE, Sobolev-type arm over its baseline) of the committed
    runs of Section 4.1, one array per cell, keyed by section (the other sections' cells are checked by the
    simulated paths of :func:`paths_table`)."""
    out: dict[str, list[np.ndarray]] = {}
    reg = settled(results / "regression") / "runs.csv"
    if reg.exists():
        # each configuration at its learning rate chosen on validation
        runs = select_lr(pd.read_csv(reg), key_name="regression.lrs")
        pairs = [("sobolev-raw", "regular-raw"), ("balanced-standard", "regular-standard")]
        out["4.1 regression"] = _log_ratio_groups(runs, "arm", pairs)
    return out


def _log_ratio_groups(runs: pd.DataFrame, col: str, pairs: list[tuple[str, str]]) -> list[np.ndarray]:
    groups = []
    keys = ["function", "n_train"]
    for a, b in pairs:
        mine = runs[(runs[col] == a) & (runs.weight.isin([1.0]))]
        base = runs[runs[col] == b]
        both = mine.merge(base, on=[*keys, "seed"], suffixes=("", "_b"))
        for _, cell in both.groupby(keys):
            groups.append((np.log(cell.test_mse) - np.log(cell.test_mse_b)).to_numpy())
    return groups


if __name__ == "__main__":
    from sobolev.common.paths import RESULTS

    pd.set_option("display.width", 140)
    print("Student-t rule (this package's), true effect 0, 4000 replicates per row:")
    print(level_table().to_string(index=False))
    print("\nEvery decision path: level under no effect, power at an effect of 1 sd (2000 replicates per row):")
    print(paths_table().to_string(index=False))
    print("\nA claim over a family of cells with no true effect: share of replicates with a false decided loss")
    for cells in (4, 16, 64):
        print(
            f"  {cells} cells of 5 seeds: unadjusted {family_false_loss(cells, 5, False):.3f}, "
            f"Holm {family_false_loss(cells, 5, True):.3f}"
        )
    print("\nPercentile bootstrap (the rule it replaced):")
    print(level_table(percentile_bootstrap_rule).to_string(index=False))
    for section, groups in committed_groups(RESULTS).items():
        print(f"\nSkewness of per-seed log ratios within cells, {section}: {skewness_check(groups)}")
        for n in (5, 10):
            print(f"t rule on the cells' own centred values, resampled: {resampled_level(groups, n)}")
