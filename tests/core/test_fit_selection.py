"""``sobolev.fit`` decides how much to trust derivative labels from the data, keeps its weights bounded, says how
well it fits, and refuses what it cannot fit before training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import sobolev
from sobolev.core.fitting import balance, train_members
from sobolev.core.recipe import Recipe
from sobolev.core.selection import cross_validated_errors, fold_ids, fold_point_weights

pytestmark = pytest.mark.filterwarnings("ignore::sobolev.core.fitting.FitWarning")


def _inert(n: int, c: float, seed: int = 0):
    x = np.random.default_rng(seed).uniform(-2, 2, (n, 2))
    return x, np.sin(2 * x[:, 0]) + c * x[:, 1], np.stack([2 * np.cos(2 * x[:, 0]), np.full(n, c)], 1)


def _nmse(model, c: float = 0.0) -> float:
    xt, yt, _ = _inert(2000, c, seed=99)
    return float(np.mean((model.predict(xt) - yt) ** 2) / yt.var())


def test_the_derivative_weight_is_one_bounded_scale_for_every_input():
    """Differential ML's per-input balance gave an input with labels of 1e-4 a weight 1e8 times the other's: the fit
    collapsed. One shared scale: equal, bounded weights; a zero column counts (its weight is not 0)."""
    G = torch.tensor([[[1.0, 1e-4], [-2.0, 1e-4], [0.5, 1e-4]]], dtype=torch.float64)
    w = balance(G, 1.0)
    assert w.shape == (1, 2) and w[0, 0] == w[0, 1]
    assert float(w[0, 0]) == pytest.approx(1 / float(G.pow(2).mean()))
    zero = G.clone()
    zero[..., 1] = 0.0
    assert float(balance(zero, 1.0)[0, 1]) > 0  # a zero derivative is a label
    missing = G.clone()
    missing[0, 0, 0] = math.nan  # NaN is the only missing label: left out of the scale
    assert float(balance(missing, 1.0)[0, 0]) == pytest.approx(1 / float(torch.nanmean(missing.pow(2))))
    assert float(balance(torch.zeros(1, 3, 2, dtype=torch.float64), 1.0)[0, 0]) == pytest.approx(1e12)  # floored


@pytest.mark.parametrize("c", [0.0, 1e-4])
def test_an_almost_inert_input_no_longer_collapses_the_fit(c):
    x, y, g = _inert(60, c)
    with_d, without = sobolev.fit(x, y, g), sobolev.fit(x, y)
    assert with_d.diagnostics["train_r2_values"][0] > 0.999 and not with_d.diagnostics["warnings"]
    assert _nmse(with_d, c) < _nmse(without, c)  # the labels help (it was 1.0 against 2e-4 at c = 1e-4)


def test_labels_that_contradict_the_values_are_weighed_out_by_the_held_out_error():
    """y = x₀ with every derivative label 0: accepted as labels (not dropped as missing); the cross-validation sees
    that trusting them costs held-out accuracy and picks values only."""
    x, _, g = _inert(60, 0.0)
    model = sobolev.fit(x, x[:, 0], np.zeros_like(g))
    table = model.selection
    assert model.info["derivatives"] and model.recipe.lam == 0.0 and table.chosen[table.lam == 0].all()
    assert (table.heldout_mse[table.lam > 0] > table.heldout_mse[table.lam == 0].min()).all()
    assert model.diagnostics["train_r2_values"][0] > 0.999
    assert "derivative weight λ = 0, chosen from (0.0, 0.1, 1.0, 10.0) by 5-fold cross-validation" in repr(model)


def test_labels_without_information_are_not_trusted_and_exact_ones_are():
    x, y, g = _inert(60, 0.5)
    exact = sobolev.fit(x, y, g)
    shuffled = sobolev.fit(x, y, np.random.default_rng(1).permutation(g))
    assert exact.recipe.lam > 0 and _nmse(exact, 0.5) < _nmse(sobolev.fit(x, y), 0.5)
    assert shuffled.recipe.lam == 0.0
    # one output with exact labels, one with shuffled ones: each output chooses for itself
    both = sobolev.fit(x, np.c_[y, y], np.stack([g, np.random.default_rng(1).permutation(g)], 1))
    assert both.info["chosen_lam"][0] > 0 and both.info["chosen_lam"][1] == 0.0


def test_a_given_weight_switches_the_choice_off():
    x, y, g = _inert(30, 0.5)
    model = sobolev.fit(x, y, g, lam=0.3, models=2)
    assert model.recipe.lam == 0.3 and not model.recipe.select and model.selection.empty
    assert "derivative weight λ = 0.3 (given)" in repr(model) and model.info["models_trained"] == 2


def test_folds_partition_the_points_and_each_is_scored_by_the_model_that_held_it_out():
    ids = fold_ids(23, 5, seed=3)
    assert sorted(torch.bincount(ids).tolist()) == [4, 4, 5, 5, 5]
    masks = fold_point_weights(ids, 5)
    assert masks.shape == (5, 23) and bool((masks.sum(0) == 4).all())  # each point held out by exactly one fold
    targets = torch.arange(23, dtype=torch.float64).unsqueeze(0)
    values = targets.unsqueeze(1).repeat(1, 5, 1)
    values[0, ids, torch.arange(23)] += 2.0  # only the holding-out model errs (by 2) at each point
    assert float(cross_validated_errors(values, targets, ids)) == pytest.approx(4.0)
    with pytest.raises(ValueError, match=r"folds: expected 2 to 3"):
        fold_ids(3, 4, seed=0)


def test_a_point_of_weight_zero_is_out_of_the_model():
    """A fold model (point weight 0 on its fold) trains as a model on the other points alone would: the same
    objective, the same weights, up to rounding over 30 float64 L-BFGS iterations."""
    x, y, g = (torch.as_tensor(v) for v in _inert(30, 0.5))
    keep = torch.arange(30) % 3 != 0
    recipe = Recipe(hidden=8, optimiser="lbfgs", steps=30, converged=0.0)
    w = torch.ones(1, 2, dtype=torch.float64)
    masked, loss_m, _, _ = train_members(x[None], y[None], g[None], w, recipe, [7], point_weight=keep.double()[None])
    alone, loss_a, _, _ = train_members(x[keep][None], y[keep][None], g[keep][None], w, recipe, [7])
    assert float(loss_m) == pytest.approx(float(loss_a), rel=1e-6)
    for name, v in masked.params.items():
        torch.testing.assert_close(v, alone.params[name], rtol=1e-5, atol=1e-7)


def test_an_underfit_warns_and_the_repr_says_how_well_it_fits():
    x, y, g = _inert(40, 0.5)
    with pytest.warns(sobolev.FitWarning, match=r"explains .* of the variance of its own training values"):
        model = sobolev.fit(x, y, g, steps=2, lam=1.0, models=2)
    assert model.diagnostics["train_r2_values"][0] < 0.9 and model.diagnostics["members_at_cap"] == 2
    text = repr(model)
    assert "training R²" in text and "WARNING" in text
    good = sobolev.fit(x, y, g, models=2)
    d = good.diagnostics
    assert d["train_r2_values"][0] > 0.999 and d["train_r2_derivatives"][0] > 0.99 and d["heldout_r2"][0] > 0.99
    assert "held-out R²" in repr(good)


def test_noisy_labels_choose_on_the_members_own_held_out_points():
    x, y, g = _inert(120, 0.5)
    rng = np.random.default_rng(0)
    model = sobolev.fit(x, y + rng.normal(0, 0.05, 120), g + rng.normal(0, 0.05, g.shape), noisy=True, steps=300)
    assert "held-out points" in model.info["selection_method"] and len(model.selection) == 4
    assert model.recipe.validation == 0.2 and np.isfinite(model.predict(x)).all()


def test_selection_and_diagnostics_survive_save_and_load(tmp_path):
    x, y, g = _inert(30, 0.5)
    model = sobolev.fit(x, y, g, models=2)
    model.save(tmp_path / "m.pt")
    back = sobolev.FittedModel.load(tmp_path / "m.pt")
    assert back.selection.equals(model.selection) and back.diagnostics == model.diagnostics
    assert back.recipe == model.recipe and repr(back) == repr(model)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


def test_the_default_weight_stays_unless_another_is_clearly_better():
    """The one-standard-error rule: a candidate must beat the default λ by more than one standard error of the
    paired per-point difference; noise alone never moves the choice."""
    from sobolev.core.selection import Choice

    rng = np.random.default_rng(0)
    base = torch.tensor(rng.uniform(0.5, 1.5, 40))
    lams = (0.0, 0.1, 1.0, 10.0)
    noise = torch.stack([base + 0.3 * torch.tensor(rng.standard_normal(40)) for _ in lams])  # (C, n)
    noise[2] = base  # the default is no better on average than the others: within the noise
    choice = Choice.prefer(lams, noise.unsqueeze(0), torch.ones(1), "test", default=1.0)
    clearly = noise.clone()
    clearly[0] = 0.2 * base  # values only five times better at every point
    picked = Choice.prefer(lams, clearly.unsqueeze(0), torch.ones(1), "test", default=1.0)
    assert choice.lam(0) == 1.0 and picked.lam(0) == 0.0
    assert Choice.prefer(lams, clearly.unsqueeze(0), torch.ones(1), "test", default=3.0).lam(0) == 0.0  # no default


def test_too_few_points_keep_the_default_weight_and_say_why():
    """JENN's own 4-point test: cross-validation on 4 points scores extrapolation to the left-out ends (every weight
    but 0 extrapolates wildly there while fitting the interior best), so the default is kept and printed."""
    x = np.linspace(-np.pi, np.pi, 4)[:, None]
    model = sobolev.fit(x, (x * np.sin(x))[:, 0], np.sin(x) + x * np.cos(x), models=2)
    assert model.selection.empty and model.recipe.lam == 1.0
    assert "λ = 1 (the default: 4 points are too few to choose it by cross-validation (< 10))" in repr(model)


def test_a_fit_that_does_worse_than_the_mean_on_held_out_points_warns():
    """Exact labels, a function far too wiggly for its 12 points: every weight predicts held-out points worse than
    their mean, and the user is told, not left with a silent failure."""
    x = np.random.default_rng(2).uniform(-1, 1, (12, 2))
    a, b = 12 * x[:, 0], 11 * x[:, 1]
    y, g = np.sin(a) * np.cos(b), np.stack([12 * np.cos(a) * np.cos(b), -11 * np.sin(a) * np.sin(b)], 1)
    with pytest.warns(sobolev.FitWarning, match="on held-out points the model does worse than predicting the mean"):
        model = sobolev.fit(x, y, g, models=2)
    assert model.diagnostics["heldout_r2"][0] < -1  # -5.3 measured: far from the boundary on any CPU
