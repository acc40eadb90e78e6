import numpy as np
import pytest
from scipy import stats as sps

from sobolev.common.decision_level import level, level_table, percentile_bootstrap_rule, resampled_level, t_rule
from sobolev.common.stats import (
    LOSS,
    MIN_SEEDS,
    UNDECIDED,
    WIN,
    all_win,
    paired_difference,
    paired_ratio,
    seeds_needed,
    sign_flip_p,
    t_interval,
    welch_interval,
)

SEED_COUNTS = (3, 5, 10)


# --- the level: a rule is wrong at most about 5% of the time when there is no effect ---------


@pytest.mark.parametrize("sampler", ["normal", "t, 3 df"])
def test_the_rule_keeps_its_level_at_few_seeds(sampler):
    """The package's rule covers the true (zero) effect at least 93% of the time and decides
    falsely at most 6% at 3, 5 and 10 seeds, for normal and heavy-tailed per-seed values."""
    for n in SEED_COUNTS:
        coverage, false = level(t_rule, n, sampler)
        assert coverage >= 0.93, (sampler, n, coverage)
        assert false <= 0.06, (sampler, n, false)


def test_the_rule_is_the_one_paired_ratio_uses():
    """The simulated rule and the package's paired functions give the same interval."""
    rng = np.random.default_rng(3)
    logs = rng.standard_normal(7)
    r = paired_ratio(np.exp(logs), np.ones(7))
    _, low, high = t_interval(logs)
    assert np.log(r.low) == pytest.approx(low) and np.log(r.high) == pytest.approx(high)
    half = sps.t.ppf(0.975, 6) * logs.std(ddof=1) / np.sqrt(7)
    assert np.log(r.high) - np.log(r.estimate) == pytest.approx(half)


def _fails_somewhere(rule) -> bool:
    results = [level(rule, n, "normal", reps=2000) for n in SEED_COUNTS]
    return any(c < 0.93 or f > 0.06 for c, f in results)


def test_weaker_rules_fail_the_level_test():
    """The level test has teeth: each of these rules breaks it at some seed count."""
    assert _fails_somewhere(percentile_bootstrap_rule)  # the rule this package used before

    def fifty_percent(v):
        _, low, high = t_interval(v, level=0.5)
        return low, high

    def min_max(v):
        return v.min(axis=1), v.max(axis=1)

    def one_se(v):
        se = v.std(axis=1, ddof=1) / np.sqrt(v.shape[1])
        return v.mean(axis=1) - se, v.mean(axis=1) + se

    for rule in (fifty_percent, min_max, one_se):
        assert _fails_somewhere(rule), rule.__name__


def test_level_table_reports_the_skewed_case_honestly():
    """Strong skew (centred lognormal) costs the t interval coverage: the table shows it rather than hiding it."""
    table = level_table(reps=1000)
    skewed = table[table["values"].str.startswith("skewed")]
    assert (skewed.coverage < 0.9).all() and len(table) == 9


def test_resampled_level_compares_with_normal_cells():
    rng = np.random.default_rng(0)
    normal = [rng.standard_normal(10) for _ in range(20)]
    out = resampled_level(normal, 10, reps=500)
    assert abs(out["coverage"] - out["normal_reference"]) < 0.03
    skewed = [np.r_[np.zeros(9), 30.0] + rng.normal(0, 0.01, 10) for _ in range(20)]  # one wild seed per cell
    assert resampled_level(skewed, 10, reps=500)["coverage"] < out["normal_reference"] - 0.1


# --- verdicts -------------------------------------------------------------------------------


def test_geometric_mean_ratio_and_verdicts():
    b = np.array([1.0, 2.0, 4.0, 8.0, 3.0, 5.0])
    win = paired_ratio(b * np.array([0.1, 0.12, 0.09, 0.11, 0.1, 0.1]), b)
    assert win.estimate == pytest.approx(float(np.exp(np.mean(np.log([0.1, 0.12, 0.09, 0.11, 0.1, 0.1])))))
    assert win.low <= win.estimate <= win.high < 1 and win.verdict == WIN
    assert paired_ratio(b * 3.0 * np.array([1, 1.1, 0.9, 1, 1.05, 0.95]), b).verdict == LOSS
    mixed = paired_ratio(b * np.array([0.1, 10, 0.1, 10, 0.1, 10]), b)
    assert mixed.verdict == UNDECIDED and mixed.low < 1 < mixed.high
    # A diverged seed leaves the cell undecided rather than dropping the seed.
    assert paired_ratio(np.array([0.1, np.nan, 0.1, 0.1, 0.1]), np.ones(5)).verdict == UNDECIDED


def test_fewer_than_min_seeds_decide_nothing():
    """Three seeds all 10x better: an interval below 1, but no verdict (a sign test would give p = 0.25)."""
    few = paired_ratio([0.1, 0.11, 0.09], [1.0, 1.0, 1.0])
    assert few.high < 1 and few.verdict == UNDECIDED and MIN_SEEDS == 5
    enough = paired_ratio([0.1, 0.11, 0.09, 0.1, 0.1], [1.0] * 5)
    assert enough.verdict == WIN


def test_sign_flip_p_is_exact():
    assert sign_flip_p(np.array([1.0, 2.0, 3.0, 4.0, 5.0])) == pytest.approx(2 / 32)  # all one sign: 2 of 32 patterns
    assert sign_flip_p(np.array([1.0, -1.0, 1.0, -1.0])) == pytest.approx(1.0)
    assert np.isnan(sign_flip_p(np.array([1.0, np.nan])))
    assert paired_difference([2.0] * 6, [1.0, 1.1, 0.9, 1.0, 1.2, 0.8]).p_value == pytest.approx(2 / 64)


def test_seeds_needed_from_the_spread():
    """A mean effect of one standard deviation needs about 7 seeds at 95% (t_{n-1} / √n < 1)."""
    n = seeds_needed(1.0, 1.0)
    assert n == 7 and sps.t.ppf(0.975, n - 1) / np.sqrt(n) < 1 < sps.t.ppf(0.975, n - 2) / np.sqrt(n - 1)
    iv = paired_ratio([0.5, 1.5, 0.8, 1.2, 0.7], [1.0] * 5)
    assert iv.verdict == UNDECIDED and (iv.seeds_needed is None or iv.seeds_needed > 5)
    assert seeds_needed(0.0, 1.0) is None
    assert seeds_needed(1e-4, 1.0) is None  # more than 10 000 seeds
    # The first n with t_{n-1} · spread / √n below the effect, for a range of effect sizes.
    for effect in (0.05, 0.2, 0.7, 3.0):
        n = seeds_needed(effect, 1.0)
        assert sps.t.ppf(0.975, n - 1) / np.sqrt(n) < effect
        assert n == 5 or sps.t.ppf(0.975, n - 2) / np.sqrt(n - 1) >= effect


def test_welch_interval_matches_scipy():
    a, b = np.array([20.0, 15, 25, 30, 18, 22]), np.array([1.0, 2, 0, 1, 3, 1, 2, 0, 1, 1])
    iv = welch_interval([a, b], [1.0, -1.0], lower_is_better=False)
    ref = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert iv.estimate == pytest.approx(a.mean() - b.mean()) and (iv.low, iv.high) == pytest.approx((ref.low, ref.high))
    assert iv.n == 6 and iv.verdict == WIN  # the smallest group has 6 values; higher is better here
    assert welch_interval([[1.0], [2.0, 3.0]], [1.0, -1.0]).low == -np.inf
    assert welch_interval([a[:4], b], [1.0, -1.0], lower_is_better=False).verdict == UNDECIDED  # 4 < 5 values


def test_all_win():
    assert all_win([WIN, WIN]) is True
    assert all_win([WIN, LOSS, UNDECIDED]) is False
    assert all_win([WIN, UNDECIDED]) is None and all_win([]) is None


def test_paired_difference_and_bad_input():
    d = paired_difference([0.9, 0.91, 0.92, 0.9, 0.93], [0.8, 0.8, 0.81, 0.79, 0.8])
    assert d.estimate == pytest.approx(0.112) and d.verdict == WIN  # higher is better by default
    assert paired_difference([1.0, 2.0], [1.0, 2.0]).verdict == UNDECIDED
    with pytest.raises(ValueError, match="paired values must be two 1-D arrays of equal length"):
        paired_ratio([1.0, 2.0], [1.0])


@pytest.mark.parametrize("sizes", [(5, 10), (6, 12), (10, 10)])
def test_welch_interval_keeps_its_level_for_unequal_groups(sizes):
    """Independent groups of unequal size and spread, equal means: the Welch interval covers the true
    difference (0) at least 93% of the time (Section 4.2's teacher vs random play, Section 5.1's sizes)."""
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(2000):
        a, b = rng.normal(0, 1, sizes[0]), rng.normal(0, 3, sizes[1])
        iv = welch_interval([a, b], [1.0, -1.0])
        covered += iv.low <= 0 <= iv.high
    assert covered / 2000 >= 0.93


def test_welch_interval_rejects_empty_groups():
    with pytest.raises(ValueError, match=r"groups\[1\]"):
        welch_interval([[1.0, 2.0], []], [1.0, -1.0])
    with pytest.raises(ValueError, match="groups and weights"):
        welch_interval([[1.0, 2.0]], [1.0, -1.0])


# --- every path a claim takes: level and power ---------------------------------------------------


@pytest.mark.parametrize("sampler", ["normal", "t, 3 df", "skewed (centred lognormal)"])
def test_the_censored_path_keeps_its_level_and_has_power(sampler):
    """Runs that never reach their target (30% of values +inf): the order-statistic median interval covers the
    zero median at least 95% of the time at 5 and 10 seeds, whatever the distribution (it is distribution-free),
    and still decides an effect of 1 sd at 10 normal seeds in a good share of replicates."""
    from sobolev.common.decision_level import MEDIAN_SAMPLERS, censored_rule, power

    for n in (5, 10):
        coverage, false = level(censored_rule, n, sampler, reps=1500, samplers=MEDIAN_SAMPLERS)
        assert coverage >= 0.94 and false <= 0.06, (sampler, n, coverage)
    if sampler == "normal":
        assert power(censored_rule, 10, 1.0, sampler, reps=1500, samplers=MEDIAN_SAMPLERS) > 0.35


def test_effects_compared_with_effects_keep_the_level_with_a_shared_seed_effect():
    from sobolev.common.decision_level import effect_difference_rule

    for n in (5, 10):
        coverage, false = level(effect_difference_rule, n, "normal", reps=2000)
        assert coverage >= 0.93 and false <= 0.06


def test_power_an_effect_of_one_sd_is_decided_at_ten_seeds():
    """The level test cannot catch a rule that never decides; this one does: at 10 seeds an effect of one standard
    deviation is decided in most replicates by the package's rule, and hardly ever by over-cautious rules."""
    from sobolev.common.decision_level import power

    assert power(t_rule, 10, 1.0) > 0.7
    assert power(t_rule, 5, 1.0) > 0.25 and power(t_rule, 3, 5.0) == 0.0  # fewer than 5 seeds decide nothing

    def never(v):
        return np.full(len(v), -np.inf), np.full(len(v), np.inf)

    def interval_999(v):
        _, low, high = t_interval(v, level=0.999)
        return low, high

    assert power(never, 10, 1.0) == 0.0 and power(interval_999, 10, 1.0) < 0.35


def test_holm_keeps_a_claims_false_loss_rate_over_many_cells():
    """ "Any decided loss → NOT reproduced" over many null cells: without adjustment a false loss is likely (most of
    64 cells), with Holm it stays near 5% or below."""
    from sobolev.common.decision_level import family_false_loss

    assert family_false_loss(16, 5, holm_adjusted=False, reps=400) > 0.2
    assert family_false_loss(16, 5, holm_adjusted=True, reps=400) <= 0.07
    assert family_false_loss(64, 5, holm_adjusted=True, reps=200) <= 0.08


def test_holm_and_all_win_with_p_values():
    from sobolev.common.stats import holm

    assert holm([WIN, LOSS, UNDECIDED], [0.001, 0.04, 0.5]) == [WIN, UNDECIDED, UNDECIDED]  # 0.04 > 0.05 / 2
    assert holm([WIN, LOSS], [0.01, 0.02]) == [WIN, LOSS]  # 0.01 ≤ 0.025, then 0.02 ≤ 0.05
    assert all_win([WIN, WIN], [0.04, 0.04]) is True  # every cell wins: no adjustment needed
    assert all_win([WIN, LOSS, UNDECIDED, UNDECIDED], [0.01, 0.04, 0.5, 0.5]) is None  # the loss does not survive
    assert all_win([WIN, LOSS], [0.01, 0.001]) is False


def test_censored_ratios_rank_never_as_the_worst_outcome():
    from sobolev.common.stats import median_interval_exact, paired_ratio_censored

    assert median_interval_exact(np.arange(5.0))[1:] == (-np.inf, np.inf)  # 5 values cannot reach 95%
    med, low, high = median_interval_exact(np.arange(10.0))
    assert (med, low, high) == (4.5, 1.0, 8.0)  # k = 2: P(Bin(10, ½) ≤ 1) = 0.011
    six = paired_ratio_censored([np.inf] * 6, [10.0] * 6)
    assert six.verdict == LOSS and six.estimate == np.inf and six.p_value == pytest.approx(2 / 64)
    assert paired_ratio_censored([np.inf] * 5, [10.0] * 5).verdict == UNDECIDED
    mixed = paired_ratio_censored([1.0, 1.0, 1.0, 1.0, np.inf], [10.0] * 5)
    assert mixed.verdict == UNDECIDED and mixed.estimate == pytest.approx(0.1)
    finite = paired_ratio_censored([1.0, 2.0, 1.5, 1.2, 1.1], [10.0] * 5)
    assert finite.low == paired_ratio([1.0, 2.0, 1.5, 1.2, 1.1], [10.0] * 5).low  # no censoring: the t path


def test_non_inferiority_against_a_margin():
    from sobolev.common.stats import Interval, non_inferior

    assert non_inferior(Interval(1.2, 0.9, 1.6, 10, 1.0), 2.0) == "yes"  # at most 2× worse, decidedly
    assert non_inferior(Interval(3.0, 2.5, 3.5, 10, 1.0), 2.0) == "no"
    assert non_inferior(Interval(1.5, 0.9, 2.5, 10, 1.0), 2.0) == UNDECIDED
    assert non_inferior(Interval(1.2, 0.9, 1.6, 4, 1.0), 2.0) == UNDECIDED  # too few seeds
    iv = paired_ratio(np.exp(np.random.default_rng(0).normal(0, 0.3, 8)), np.ones(8))
    assert iv.p_against(np.exp(np.log(iv.high) + 1)) < 0.05 and iv.p_against(iv.estimate) == pytest.approx(1.0)
