import math

import numpy as np
import pandas as pd
import pytest
import torch

from sobolev.core.models import BatchedSmoothMLP
from sobolev.core.samples import Normaliser
from sobolev.differential import compute as experiment
from sobolev.differential import report
from sobolev.differential.config import DifferentialConfig
from sobolev.differential.simulators import BachelierBasket, BlackScholes, make_simulator
from sobolev.differential.training import batch_size_for, fit, one_cycle, train


def test_black_scholes_labels_are_the_pathwise_formula():
    bs = BlackScholes()
    data = bs.training_set(1000, seed=3)
    g = torch.Generator().manual_seed(3)
    torch.randn(1000, generator=g, dtype=torch.float64)  # the spots' draws
    z2 = torch.randn(1000, generator=g, dtype=torch.float64)
    s1, tau = data.x[:, 0], bs.T2 - bs.T1
    expected = torch.zeros(1000, dtype=torch.float64)
    for sign in (1, -1):
        s2 = s1 * torch.exp(-0.5 * bs.vol**2 * tau + sign * bs.vol * math.sqrt(tau) * z2)
        expected += 0.5 * (s2 > bs.strike) * s2 / s1  # 1{S₂ > K} S₂/S₁
    torch.testing.assert_close(data.dydx[:, 0], expected, rtol=1e-12, atol=1e-12)


def test_basket_labels_are_the_pathwise_formula():
    basket = BachelierBasket(7, market_seed=1)
    data = basket.training_set(500, seed=2)
    g = torch.Generator().manual_seed(2)
    torch.randn(500, 7, generator=g, dtype=torch.float64)
    dw = math.sqrt(basket.T2 - basket.T1) * torch.randn(500, 7, generator=g, dtype=torch.float64) @ basket.chol.T
    hits = 0.5 * (((data.x + dw) @ basket.weights > basket.strike).double()
                  + ((data.x - dw) @ basket.weights > basket.strike).double())  # fmt: skip
    torch.testing.assert_close(data.dydx, hits.unsqueeze(1) * basket.weights, rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    "sim", [BlackScholes(vol_mult=1e-12), BachelierBasket(7, vol_mult=1e-12)], ids=["bs", "basket7"]
)
def test_labels_average_to_the_true_price_and_delta(sim):
    """With the spot pinned at 1 (vol_mult → 0), the labels are unbiased: their means converge to the truth."""
    data = sim.training_set(400_000, seed=0)
    spot = torch.ones(1, sim.dim, dtype=torch.float64)
    se_y = float(data.y.std()) / math.sqrt(len(data.y))
    assert abs(float(data.y.mean()) - float(sim.price(spot)[0])) < 4 * se_y
    se_g = data.dydx.std(0) / math.sqrt(len(data.y))
    assert bool(((data.dydx.mean(0) - sim.delta(spot)[0]).abs() < 4 * se_g + 1e-12).all())


@pytest.mark.parametrize("sim", [BlackScholes(), BachelierBasket(20, market_seed=3)], ids=["bs", "basket20"])
def test_closed_form_delta_matches_finite_differences_of_the_price(sim):
    spots = sim.test_spots(50)
    h = 1e-6
    fd = torch.stack([(sim.price(spots + h * e) - sim.price(spots - h * e)) / (2 * h)
                      for e in torch.eye(sim.dim, dtype=torch.float64)], -1)  # fmt: skip
    torch.testing.assert_close(sim.delta(spots), fd, rtol=1e-6, atol=1e-8)


def test_basket_market_is_as_specified():
    b = BachelierBasket(7, market_seed=0)
    assert float(b.weights.sum()) == pytest.approx(1.0) and bool((torch.diag(b.corr) - 1).abs().max() < 1e-12)
    assert math.sqrt(float(b.weights @ b.cov @ b.weights)) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="problem must be 'black_scholes' or 'basket<d>'"):
        make_simulator("basket")


def test_smooth_ensemble_input_gradient_equals_autograd():
    net = BatchedSmoothMLP([0, 1], in_dim=3, hidden=5, layers=3).double()
    x = torch.randn(2, 7, 3, dtype=torch.float64, requires_grad=True)
    y, g = net(x)
    (auto,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, auto)
    one = BatchedSmoothMLP([1], in_dim=3, hidden=5, layers=3)
    assert torch.equal(one.weights[1][0], BatchedSmoothMLP([0, 1], 3, 5, 3).weights[1][1])  # one seed, one model


def test_schedule_batches_and_standardisation():
    assert one_cycle(0.0) == pytest.approx(1e-8) and one_cycle(0.2) == pytest.approx(0.1)
    assert one_cycle(0.4) == pytest.approx(0.055) and one_cycle(1.0) == pytest.approx(1e-8)
    assert batch_size_for(1024) == 256 and batch_size_for(16384) == 1024 and batch_size_for(100) == 100
    x, y = torch.randn(2, 50, 3, dtype=torch.float64) * 4 + 1, torch.randn(2, 50, dtype=torch.float64) * 3
    sc = Normaliser.from_samples(x, y)  # a batch: one normaliser per model's training set
    torch.testing.assert_close(sc.x(x).mean(1), torch.zeros(2, 3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(sc.y(y).std(1), torch.ones(2, dtype=torch.float64))
    g = torch.randn(2, 50, 3, dtype=torch.float64)
    torch.testing.assert_close(sc.g_back(sc.g(g)), g)
    torch.testing.assert_close(sc.y_back(sc.y(y)), y)
    # model i of the batch is the single normaliser of set i, on every map
    for i in range(2):
        one = Normaliser.from_samples(x[i], y[i])
        torch.testing.assert_close(sc.x(x)[i], one.x(x[i]))
        torch.testing.assert_close(sc.g(g)[i], one.g(g[i]))
        torch.testing.assert_close(sc.y(y)[i], one.y(y[i]))


def test_differential_training_beats_standard_on_a_small_black_scholes_set():
    bs = BlackScholes()
    data = bs.training_set(1024, seed=0)
    test = bs.test_spots()
    errors = {}
    for name, dydx in (("standard", None), ("differential", data.dydx)):
        model = fit(data.x, data.y, dydx, seeds=2, steps=600, progress=False)  # sobolev.fit's noisy recipe
        assert model.recipe.validation > 0 and model.recipe.models == 2 and model.recipe.optimiser == "adam"
        value, delta = model.predict(test), model.predict_derivatives(test)
        errors[name] = float((delta[:, 0] - bs.delta(test)[:, 0]).pow(2).mean().sqrt())
        assert value.shape == (100,) and delta.shape == (100, 1)
    assert errors["differential"] < errors["standard"]
    with pytest.raises(ValueError, match=r"dydx: expected shape \(1024, 1\) or \(1024, 1, 1\)"):
        fit(data.x, data.y, data.dydx[:10])


def test_paired_models_share_initial_weights_and_batches():
    """Two models of one seed on one training set end identical (same initial weights, same minibatch
    order), whatever their ensemble neighbours; another seed differs. So a standard and a differential
    model of one seed differ by their loss only."""
    x = torch.rand(3, 600, 2, dtype=torch.float64)
    x[1] = x[0]
    y = x.sum(2)
    ens = train(x, y, torch.ones_like(x), [4, 4, 5], [False, False, True], epochs=3, progress=False)
    w = ens.model.weights[0]
    assert torch.equal(w[0], w[1]) and not torch.allclose(w[0], w[2])


def test_sample_efficiency_recovers_a_known_factor():
    rows = []
    for n in (1000, 2000, 4000, 8000):
        for seed in range(5):
            noise = 1 + 0.01 * (seed - 2)
            rows.append({"problem": "p", "n_train": n, "method": "standard", "seed": seed,
                         "value_rmse": noise / math.sqrt(n), "delta_rmse": 1.0})  # fmt: skip
            rows.append({"problem": "p", "n_train": n, "method": "differential", "seed": seed,
                         "value_rmse": noise / math.sqrt(4 * n), "delta_rmse": 1.0})  # fmt: skip
    eff = experiment.sample_efficiency(pd.DataFrame(rows), "value", 500)
    multiple = experiment.data_multiple(pd.DataFrame(rows), "value", 2.0)  # measured pairs only: 1000/2000 ...
    assert multiple.n_train.tolist() == [1000, 2000, 4000] and (multiple.verdict == "win").all()
    np.testing.assert_allclose(multiple.ratio, np.sqrt(0.5), rtol=1e-6)  # differential at n vs standard at 2n
    np.testing.assert_allclose(eff.factor, 4.0, rtol=1e-6)
    assert eff.extrapolated.tolist() == [False, False, True, True]
    assert (eff.low <= eff.factor + 1e-9).all() and (eff.high >= eff.factor - 1e-9).all()
    table = experiment.rmse_table(pd.DataFrame(rows), 500)
    assert set(table[table.quantity == "value"].verdict) == {"win"}
    assert set(table[table.quantity == "delta"].verdict) == {"undecided"}
    runs = pd.DataFrame(rows).assign(collapsed=False)
    runs.loc[3, "collapsed"] = True
    claims = {c.text.split(" (")[0]: c.holds for c in report.table_claims(table, eff, runs)}
    assert claims["derivative labels lower the test error of the prices in every problem and size"] is True
    assert claims["the reference's recipe trains every seed"] is False
    metrics = report.metrics_from(table, eff, runs)
    assert metrics["collapsed_runs"] == 1 and "| p | 1000 | value |" in report.readme_block(metrics)


def test_config_rejects_bad_problems(tmp_path):
    from sobolev.common.params import ParamError, read_params

    section = {k: v for k, v in read_params()["differential"].items() if k not in ("ci", "paper")}
    message = r"differential.problems\[1\]='basket0': must be 'black_scholes' or 'basket<d>'"
    with pytest.raises(ParamError, match=message):
        DifferentialConfig.from_values({**section, "problems": ["black_scholes", "basket0"]})
    with pytest.raises(ParamError, match=r"differential.shown='black_scholes': must be one of the basket problems"):
        DifferentialConfig.from_values({**section, "shown": "black_scholes"})


def test_undecided_reference_cells_are_undecided_not_disagreements():
    """The old claim counted an undecided cell as a disagreement with the reference (NOT reproduced)."""

    def table(verdicts):
        return pd.DataFrame({"problem": "basket7", "n_train": [4096, 8192, 16384], "quantity": "value",
                             "verdict": verdicts, "seeds": 10})  # fmt: skip

    def agree(verdicts):
        claims = report.table_claims(table(verdicts), pd.DataFrame())
        return next(c.holds for c in claims if c.text.startswith("the reference's single runs"))

    assert agree(["win", "win", "undecided"]) is None
    assert agree(["win", "win", "win"]) is True
    assert agree(["win", "loss", "win"]) is False


def test_several_times_the_data_never_rests_on_extrapolation():
    """Differential at n against standard at 2n, measured sizes only: no pair beyond the largest size."""
    rows = [{"problem": "basket7", "n_train": n, "method": m, "seed": s, "value_rmse": (1.0 if m == "standard" else 2.0)
             / np.sqrt(n) * (1 + 0.01 * s), "delta_rmse": 1.0} for n in (100, 200, 400) for m in experiment.METHODS
            for s in range(5)]  # fmt: skip  # differential needs 4x the data: it does *not* buy 2x
    multiple = experiment.data_multiple(pd.DataFrame(rows), "value", 2.0)
    assert multiple.standard_n.max() == 400 and (multiple.verdict == "loss").all()
    runs = pd.DataFrame(rows).assign(collapsed=False)
    claims = report.table_claims(experiment.rmse_table(pd.DataFrame(rows), 200), pd.DataFrame(), runs)
    assert next(c.holds for c in claims if c.text.startswith("derivative labels buy several")) is False
