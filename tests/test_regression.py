import json
import math

import pandas as pd
import pytest
import torch

from sobolev.common import compare
from sobolev.common.params import read_params
from sobolev.core.data import Normaliser, make_sample
from sobolev.core.functions import get_function
from sobolev.regression import grid as R
from sobolev.regression import report
from sobolev.regression.config import RegressionConfig

TINY = dict(
    functions=["booth", "styblinski_tang"],
    sizes=[20, 40],
    seeds=2,
    lrs=[1e-3, 1e-2],
    steps=30,
    hidden=16,
    sweep_weights=[0.1],
    sweep_sizes=[40],
    n_test=300,
    n_val=100,
    threads=2,
    log_every=10,
)


def tiny_config(**changes) -> RegressionConfig:
    """The committed params with ``TINY`` (and ``changes``) on top, checked like params.yaml."""
    section = {k: v for k, v in read_params()["regression"].items() if k not in ("ci", "paper")}
    return RegressionConfig.from_values({**section, **TINY, **changes})


@pytest.fixture(scope="module")
def tiny():
    return R.run_grid(tiny_config(), progress=False)


def test_grid_counts_and_pairing():
    grid = R.build_grid(tiny_config())
    # per function: sizes × norms × lrs × seeds regular (2·2·2·2 = 16), Sobolev the same + sweep at n=40 (8)
    assert len(grid) == 2 * (16 + 16 + 8)
    assert set(grid[grid.method == "regular"].weight) == {0.0}
    assert set(grid[(grid.method == "sobolev") & (grid.n_train == 20)].weight) == {1.0}
    assert set(grid[(grid.method == "sobolev") & (grid.n_train == 40)].weight) == {1.0, 0.1}


def test_same_seed_same_numbers(tiny):
    again = R.run_grid(tiny_config(), progress=False)
    pd.testing.assert_frame_equal(tiny.runs, again.runs)
    assert tiny.runs[["val_mse", "test_mse", "test_grad_mse"]].notna().all().all()


def test_paired_runs_share_initial_data(tiny):
    """Regular and Sobolev runs of one (function, size, seed) train on the same points from the same
    initial weights: their standardising statistics (computed from the training values) agree."""
    runs = tiny.runs
    standard = runs[runs.normalisation == "standard"]
    stats = {r.run: (tiny.normalisers[r.run].y_mean, tiny.normalisers[r.run].y_std) for r in standard.itertuples()}
    for _, group in standard.groupby(["function", "n_train", "seed"]):
        assert len(set(group.method)) == 2 and len({stats[r] for r in group.run}) == 1
    by_seed = standard[(standard.function == "booth") & (standard.n_train == 20)].groupby("seed").run.first()
    assert stats[by_seed[0]] != stats[by_seed[1]]  # and different seeds draw different points
    a, b = R.BatchedMLP.init([0, 1, 0], hidden=16), R.BatchedMLP.init([0], hidden=16)
    assert torch.equal(a.params["W2"][2], b.params["W2"][0]) and not torch.equal(a.params["W2"][1], b.params["W2"][0])


def test_predict_reproduces_recorded_test_error(tiny):
    row = tiny.runs.iloc[5]
    test = make_sample(get_function(row.function), 300, 0, "test")
    y, g = tiny.predict(int(row.run), test.x)
    assert float((y - test.y).pow(2).mean()) == pytest.approx(row.test_mse, rel=1e-4)
    assert float((g - test.g).pow(2).sum(1).mean()) == pytest.approx(row.test_grad_mse, rel=1e-4)
    # The same run as a standalone nn.Module on normalised inputs.
    net, nm = tiny.model(int(row.run))
    with torch.no_grad():
        torch.testing.assert_close(nm.y_back(net(nm.x(test.x))), y, rtol=1e-5, atol=1e-4)


def test_select_lr_picks_lowest_mean_validation_error():
    runs = pd.DataFrame(
        {
            "function": "f",
            "n_train": 10,
            "method": "regular",
            "normalisation": "raw",
            "weight": 0.0,
            "lr": [0.1, 0.1, 0.01, 0.01],
            "seed": [0, 1, 0, 1],
            "val_mse": [1.0, 5.0, 2.0, 2.5],
            "test_mse": 0.0,
            "test_grad_mse": 0.0,
        }
    )
    assert set(compare.select_lr(runs).lr) == {0.01}  # mean 2.25 beats mean 3.0
    runs.loc[2, "val_mse"] = float("nan")  # one seed of lr 0.01 diverged: it loses on its surviving seed too
    assert set(compare.select_lr(runs).lr) == {0.1}
    assert list(compare.diverged(runs).index) == [2]
    runs.loc[:, "val_mse"] = float("nan")  # all diverged: ties go to the smaller rate
    assert set(compare.select_lr(runs).lr) == {0.01}


def test_faithful_and_tuned_settings(tiny):
    f, t = R.faithful(tiny.runs), R.tuned(tiny.runs)
    assert set(f.normalisation) == {"raw"} and set(f.weight) <= {0.0, 1.0}
    assert set(t.weight) <= {0.0, 1.0}
    # One learning rate and one normalisation per (function, size, method), all seeds kept.
    assert (
        (
            t.groupby(["function", "n_train", "method"]).agg(
                lr=("lr", "nunique"), nm=("normalisation", "nunique"), s=("seed", "count")
            )
            == [1, 1, 2]
        )
        .all()
        .all()
    )
    # The tuned choice is never worse on validation than the faithful one.
    key = ["function", "n_train", "method"]
    fv, tv = f.groupby(key).val_mse.mean(), t.groupby(key).val_mse.mean()
    assert bool((tv <= fv + 1e-12).all())


def test_summaries_claims_and_metrics():
    summary = pd.DataFrame(
        {
            "function": ["ackley", "ackley", "booth", "booth"] * 2,
            "n_train": [10, 100] * 4,
            "method": ["regular"] * 4 + ["sobolev"] * 4,
            "normalisation": "raw",
            "weight": [0.0] * 4 + [1.0] * 4,
            "lr": 1e-3,
            "test_mse": [1.0, 1.0, 10.0, 10.0, 2.0, 0.5, 0.1, 5.0],
            "test_mse_std": 0.1,
            "test_grad_mse": 1.0,
            "test_grad_mse_std": 0.0,
            "seeds": 3,
        }
    )
    assert compare.wins(summary) == {10: 1, 100: 2}
    claims = {c.text.split(" (")[0]: c for c in report.claims(summary)}
    assert claims["Sobolev lowers test MSE on 1 of 2 functions"].holds
    assert claims["Ackley is the exception at low data"].holds
    assert not claims["often by orders of magnitude"].holds  # 1 of 3 wins is ≥10×
    assert not claims["the effect is stronger with less data"].holds  # median ratio 1.005 vs 0.5
    assert claims["the gap persists at the largest size"].holds
    metrics = report.metrics_dict({"faithful": summary})
    assert metrics["faithful"]["booth"]["n10"]["sobolev"]["test_mse"] == 0.1
    assert metrics["faithful"]["sobolev_wins"] == {"n10": 1, "n100": 2}
    json.dumps(metrics)


def test_normaliser_chain_rule():
    fn = get_function("beale")
    train = make_sample(fn, 50, 0)
    nm = Normaliser.fit("standard", fn, train)
    assert float(nm.x(train.x).abs().max()) <= 1.0
    assert float(nm.y(train.y).mean()) == pytest.approx(0, abs=1e-5)
    # The gradient of the normalised function, by finite differences in normalised coordinates.
    xn = nm.x(train.x).double()
    h = 1e-6
    back = lambda z: nm.y(fn(nm.x_center.double() + z * nm.x_scale.double()))  # noqa: E731
    fd = torch.stack([(back(xn + h * e) - back(xn - h * e)) / (2 * h) for e in torch.eye(2, dtype=torch.float64)], -1)
    torch.testing.assert_close(nm.g(fn.grad(train.x.double())), fd, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(nm.g_back(nm.g(train.g)), train.g)
    raw = Normaliser.fit("raw", fn, train)
    assert torch.equal(raw.x(train.x), train.x)
    with pytest.raises(ValueError, match="normalisation must be one of"):
        Normaliser.fit("minmax", fn, train)


def test_a_huge_learning_rate_stops_the_grid_with_a_message():
    from sobolev.core.training import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match=r"regression: .* at step \d+ of 30 .*likely cause: a learning rate in "
                       r"regression.lrs = \[1000000.0\] too large.*Nothing was written"):
        R.run_grid(tiny_config(lrs=[1e6], functions=["beale"], sweep_weights=[], sweep_sizes=[]), progress=False)


def test_a_diverging_model_in_an_ensemble_loses_without_stopping_the_others():
    result = R.run_grid(tiny_config(lrs=[1e-3, 1e6], functions=["beale"], sweep_weights=[], sweep_sizes=[]),
                        progress=False)  # fmt: skip
    runs = result.runs
    diverged = runs[runs.lr == 1e6].val_mse.map(math.isfinite)
    assert not diverged.any() and runs[runs.lr == 1e-3].val_mse.map(math.isfinite).all()
    assert set(compare.diverged(runs).lr) == {1e6}
    assert set(R.faithful(runs).lr) == {1e-3}
