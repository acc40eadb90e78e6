"""The inexact-derivatives noise curve: labels get the relative noise they claim, the arms are paired
by seed, and the advantage falls as the noise grows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from sobolev.core.functions import FUNCTIONS
from sobolev.inexact import compute, plots, report
from sobolev.inexact.config import OUTPUTS, InexactConfig


def test_noisy_labels_have_the_relative_error_they_claim():
    G = torch.randn(4000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 5
    for level in (0.01, 0.2, 1.0):
        noisy = compute.noisy_labels(G, level, torch.Generator().manual_seed(1))
        rel = ((noisy - G).norm(dim=1) / G.norm(dim=1)).pow(2).mean().sqrt()
        assert float(rel) == pytest.approx(level, rel=0.05)  # root-mean-square relative error = level
    assert torch.equal(compute.noisy_labels(G, 0.0, torch.Generator().manual_seed(1)), G)
    with pytest.raises(ValueError, match=r"level: expected a relative noise ≥ 0, got -0.1"):
        compute.noisy_labels(G, -0.1, torch.Generator())


def test_noise_curve_pairs_seeds_and_the_advantage_falls_with_noise():
    runs = compute.noise_curve({"rosenbrock": FUNCTIONS["rosenbrock"]}, 30, [0.0, 1.0], [1.0], 5, n_test=500)
    assert len(runs) == 5 * 3 and set(runs.arm) == {"regular", "sobolev"}
    assert np.isfinite(runs.test_nmse).all()
    table = compute.advantage(runs).set_index("level")
    assert table.loc[0.0, "verdict"] == "win"  # exact derivatives: decidedly more accurate
    assert table.loc[1.0, "ratio"] > 5 * table.loc[0.0, "ratio"]  # 100% noise: the advantage is gone
    assert (table.seeds == 5).all()


def test_crossing_states_where_the_advantage_is_lost_on_intervals():
    """Not "the first level without a decided win" (which measures power as much as the effect): the highest level
    with a decided win and the lowest with a decided loss."""
    table = pd.DataFrame({"function": ["f"] * 4 + ["g"] * 2, "lam": [1.0] * 6,
                          "level": [0.0, 0.05, 0.2, 1.0, 0.0, 1.0],
                          "verdict": ["win", "undecided", "win", "loss", "win", "win"]})  # fmt: skip
    out = compute.crossing(table).set_index("function")
    assert out.loc["f", "last_win"] == 0.2 and out.loc["f", "first_loss"] == 1.0  # an undecided gap at 5%
    assert out.loc["g", "last_win"] == 1.0 and math.isnan(out.loc["g", "first_loss"])


def test_equal_budget_spends_the_same_evaluations_and_pairs_the_points():
    from sobolev.core.families import lookup

    runs = compute.equal_budget({"rosenbrock_5d": lookup("rosenbrock_5d")}, [12, 30], [2, 2], n_test=200)
    assert set(runs.method) == set(compute.METHODS) and (runs[runs.method == "values"].lam == 0).all()
    assert set(runs.lam) <= {0.0, 0.1, 1.0, 10.0}  # each derivative fit's weight, chosen by cross-validation
    shuffled = runs[runs.method == "knn_shuffled"].set_index(["budget", "seed"])
    knn_ = runs[runs.method == "knn"].set_index(["budget", "seed"])
    assert (shuffled.gradient_error > knn_.gradient_error.loc[shuffled.index]).all()  # the same labels, misplaced
    fd = runs[runs.method == "finite_differences"]
    assert set(fd.budget) == {30}  # 12 // 6 = 2 points: below MIN_FD_POINTS, left out
    assert (fd.points == 5).all() and (fd.calls == 30).all()  # forward differences: d + 1 calls per point
    others = runs[~runs.method.str.startswith("finite_differences")]
    assert (others.points == others.budget).all() and (others.calls == others.budget).all()
    assert (fd.gradient_error < 1e-6).all()  # forward differences of a smooth function: near exact
    knn = runs[runs.method == "knn"]
    assert (knn.gradient_error > 0.05).all()  # 12 or 30 samples in 5-D: a poor estimate
    assert (
        runs[runs.method == "exact"].gradient_error.eq(0).all()
        and runs[runs.method == "values"].gradient_error.isna().all()
    )
    g = torch.arange(12.0).view(6, 2)
    assert sorted(compute.shuffled(g, 3)[:, 0].tolist()) == g[:, 0].tolist()  # a permutation of the rows
    assert compute.knn_neighbours(4, 2, 100) == 4 and compute.knn_neighbours(4, 10, 100) == 20
    assert compute.knn_neighbours(4, 10, 12) == 11  # never more than the other samples
    fn = {"rosenbrock_5d": lookup("rosenbrock_5d")}
    with pytest.raises(ValueError, match=r"fns: expected a non-empty dict"):
        compute.equal_budget({}, [20], [2])
    with pytest.raises(ValueError, match=r"budgets: expected integers ≥ 3 \(evaluations\), got \[1\]"):
        compute.equal_budget(fn, [1], [2])
    with pytest.raises(ValueError, match=r"seeds: expected a count ≥ 1 per budget \(1\), got \[2, 2\]"):
        compute.equal_budget(fn, [20], [2, 2])
    with pytest.raises(ValueError, match=r"fns: expected a non-empty dict"):
        compute.noise_curve({}, 20, [0.0], [1.0], 2)


def test_relative_error_is_the_noise_level_and_ignores_tiny_gradients():
    G = torch.randn(5000, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    noisy = compute.noisy_labels(G, 0.1, torch.Generator().manual_seed(2))
    assert compute.relative_error(G, noisy) == pytest.approx(0.1, rel=0.03)
    G[0] = 1e-12  # a point where the gradient vanishes must not dominate the measure
    assert compute.relative_error(G, noisy) < 0.2


def test_budget_table_and_guidance_decide_against_values_only():
    from sobolev.inexact import report

    rng = np.random.default_rng(0)
    rows = []
    for fn in ("f", "g"):
        for seed in range(6):
            base = rng.uniform(1, 2)
            for method, factor in (("values", 1.0), ("exact", 0.1), ("knn", 3.0), ("finite_differences", 0.5),
                                   ("finite_differences_shuffled", 1.0)):  # fmt: skip
                rows.append({"function": fn, "dim": 2, "budget": 30, "method": method, "seed": seed, "points": 30,
                             "calls": 30, "test_nmse": base * factor * rng.uniform(0.9, 1.1),
                             "gradient_error": 0.0})  # fmt: skip
    table = report.budget_table(pd.DataFrame(rows)).set_index(["function", "method"])
    assert table.loc[("f", "exact"), "verdict"] == "win" and table.loc[("f", "knn"), "verdict"] == "loss"
    assert table.loc[("f", "exact"), "ratio"] == pytest.approx(0.1, rel=0.1)
    advice = report.guidance(table.reset_index())
    assert advice.black_box.tolist() == ["forward differences"]  # wins everywhere, k-NN loses
    assert advice.with_gradients.tolist() == ["exact gradients"] and advice.caveat.tolist() == [""]
    hopeless = pd.DataFrame(rows).assign(test_nmse=lambda r: r.test_nmse + 5)  # nothing beats the mean
    advice = report.guidance(report.budget_table(hopeless))
    assert advice.black_box.tolist() == ["nothing learns at this budget"] and advice.nothing_learns.tolist() == ["f, g"]


def synthetic_result(seeds=6):
    """Runs shaped as compute.run's, with known effects: Sobolev's advantage halves per level, harm from 50%."""
    rng = np.random.default_rng(1)
    noise, budget = [], []
    for fn in ("f", "g"):
        for seed in range(seeds):
            base = rng.uniform(1, 2)
            noise.append({"function": fn, "arm": "regular", "level": math.nan, "lam": math.nan, "seed": seed,
                          "points": 50, "test_nmse": base, "iterations": 10})  # fmt: skip
            for level, factor in ((0.0, 0.05), (0.05, 0.3), (0.5, 5.0)):
                for lam in (1.0, 0.1):
                    noise.append({"function": fn, "arm": "sobolev", "level": level, "lam": lam, "seed": seed,
                                  "points": 50, "test_nmse": base * factor * rng.uniform(0.8, 1.2),
                                  "iterations": 10})  # fmt: skip
        for d, name in ((2, fn), (5, f"{fn}_5d")):
            for m in (20, 100):
                for seed in range(seeds):
                    for method, factor in (("values", 1.0), ("finite_differences", 2.0), ("knn", 1.0), ("exact", 0.2),
                                           ("knn_shuffled", 1.0), ("finite_differences_shuffled", 1.0)):  # fmt: skip
                        pts = m // (d + 1) if method == "finite_differences" else m
                        label_error = {"knn": 0.1 * d, "finite_differences": 1e-8, "knn_shuffled": 1.0,
                                       "finite_differences_shuffled": 1.0}.get(method, 0.0)  # fmt: skip
                        budget.append({"function": name, "dim": d, "budget": m, "method": method, "seed": seed,
                                       "points": pts, "calls": pts * (d + 1) if method == "finite_differences" else m,
                                       "test_nmse": 0.1 * factor * rng.uniform(0.8, 1.2),
                                       "gradient_error": label_error * rng.uniform(0.9, 1.1), "lam": 1.0,
                                       "value_term": 1e-6, "iterations": 1000 if seed == 0 else 50})  # fmt: skip
    return compute.Result(InexactConfig.load("ci"), pd.DataFrame(noise), pd.DataFrame(budget))


def test_claims_metrics_and_readme_come_from_the_runs():
    import json

    from sobolev.inexact import report

    result = synthetic_result()
    claims = {c.text.split(" (")[0]: c for c in report.claims(result)}
    assert claims["exact derivative labels decidedly improve on regular training"].holds is True
    jenn = next(c for t, c in claims.items() if t.startswith("JENN: the advantage disappears"))
    assert jenn.holds is True and "last decided win at 5%, first decided loss at 50%" in jenn.evidence
    assert next(c for t, c in claims.items() if t.startswith("noisy derivative labels never")).holds is False
    weights = next(c for t, c in claims.items() if t.startswith("JENN: down-weighting"))
    assert weights.holds in (True, None)  # the same factors at both weights: never decidedly better
    assert next(c for t, c in claims.items() if t.startswith("k-NN estimates degrade")).holds is True
    m = json.loads(json.dumps(report.metrics(result)))  # JSON-clean: no NaN
    block = report.readme_block(m)
    assert "| f | 1 | win | 5% | 50% |" in block and "black box → **values only**" in block
    assert "equal budget, exact: 83% of 48" in block  # seed 0 of each ran to the 1000-iteration cap
    assert block.count("[REPRODUCED]") + block.count("[NOT reproduced]") + block.count("[UNDECIDED]") == len(
        m["claims"]
    )


def test_every_figure_is_readable():
    from matplotlib import pyplot as plt

    from sobolev.common.plotting import figure_problems

    for name, fig in plots.figures(synthetic_result()).items():
        assert figure_problems(fig) == [], name
        assert all(ax.get_yscale() == "log" for ax in fig.axes if ax.get_visible() and ax.lines), name
        plt.close(fig)


def test_the_noise_figure_of_one_function_is_readable():
    """The ci scale draws one panel: the two-line title once overlapped its y label (a FigureError in nbval)."""
    from matplotlib import pyplot as plt

    from sobolev.common.plotting import figure_problems, finish

    runs = synthetic_result().noise_runs
    fig = finish(plots.advantage_figure(runs[runs.function == "f"]))
    assert figure_problems(fig) == []
    plt.close(fig)


def test_save_writes_exactly_the_declared_outputs(tmp_path):
    report.save(synthetic_result(), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OUTPUTS)
    assert sorted(p.stem for p in (tmp_path / "figures").iterdir()) == sorted(plots.figures(synthetic_result()))
