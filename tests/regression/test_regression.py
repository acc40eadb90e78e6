import json
import math
import runpy
from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch

from sobolev.common import compare
from sobolev.common.params import read_params
from sobolev.common.paths import ROOT
from sobolev.core.functions import BenchmarkFunction, check_gradient, get_function
from sobolev.core.samples import Normaliser, make_sample
from sobolev.core.training import NonFiniteLossError, train_ensemble
from sobolev.regression import compute as R
from sobolev.regression import plots as F
from sobolev.regression import report
from sobolev.regression.config import RegressionConfig

TINY = dict(
    functions=["booth", "styblinski_tang"],
    sizes=[20, 40],
    seeds=[3, 2],
    lrs=[1e-3, 1e-2],
    steps=30,
    hidden=16,
    sweep_weights=[0.1],
    sweep_sizes=[40],
    sweep_seeds=2,
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
    cfg = tiny_config()
    grid = R.build_grid(cfg)
    arms = len(cfg.arms)
    # per function: arms × lrs × seeds (3 at n=20, 2 at n=40), plus the λ sweep of sobolev-raw at n=40 (lrs × 2 seeds)
    assert len(grid) == 2 * (arms * 2 * 3 + arms * 2 * 2 + 2 * 2)
    assert set(grid[grid.method == "regular"].weight) == {0.0}
    assert set(grid[(grid.arm == "sobolev-raw") & (grid.n_train == 40)].weight) == {1.0, 0.1}
    assert set(grid[grid.arm == "balanced-standard"].weight) == {1.0}
    assert grid.groupby("n_train").seed.nunique().to_dict() == {20: 3, 40: 2}
    assert (grid.arm == grid.method + "-" + grid.normalisation).all()


def test_same_seed_same_numbers(tiny):
    again = R.run_grid(tiny_config(), progress=False)
    pd.testing.assert_frame_equal(tiny.runs, again.runs)
    assert tiny.runs[["val_mse", "test_mse", "test_grad_mse", "train_loss"]].notna().all().all()


def test_recorded_training_loss_is_the_objective_on_the_training_set(tiny):
    """``train_loss`` is the arm's own objective (model units) on the whole set; for raw regular runs it
    equals the training value MSE on the function's scale, recomputed here from the prediction."""
    row = tiny.runs[(tiny.runs.arm == "regular-raw") & (tiny.runs.n_train == 20)].iloc[0]
    train = tiny.training_set(int(row.run))
    y, _ = tiny.predict(int(row.run), train.x)
    assert float((y - train.y).pow(2).mean()) == pytest.approx(row.train_loss, rel=1e-4)
    assert row.train_mse == pytest.approx(row.train_loss, rel=1e-4)
    # test_nmse divides by the function's variance on its domain (from the test sample)
    test = make_sample(get_function(row.function), 300, 0, "test")
    assert row.test_nmse == pytest.approx(row.test_mse / float(test.y.double().var()), rel=1e-6)


def test_convergence_criterion():
    loss_90 = pd.Series([1.0, 1.0, 1e-12, 1.0, float("nan")])
    loss_end = pd.Series([0.97, 0.9, 5e-13, 1.2, float("nan")])
    assert R.converged(loss_90, loss_end, 0.05).tolist() == [True, False, True, False, False]


def test_paired_runs_share_initial_data(tiny):
    """Every arm of one (function, size, seed) trains on the same points from the same initial weights:
    the standardising statistics (computed from the training values) agree across arms."""
    runs = tiny.runs
    standard = runs[runs.normalisation == "standard"]
    stats = {r.run: (tiny.normalisers[r.run].y_mean, tiny.normalisers[r.run].y_std) for r in standard.itertuples()}
    for _, group in standard.groupby(["function", "n_train", "seed"]):
        assert len(set(group.arm)) == 2 and len({stats[r] for r in group.run}) == 1
    by_seed = standard[(standard.function == "booth") & (standard.n_train == 20)].groupby("seed").run.first()
    assert stats[by_seed[0]] != stats[by_seed[1]]  # and different seeds draw different points
    a, b = R.BatchedMLP.init([0, 1, 0], hidden=16), R.BatchedMLP.init([0], hidden=16)
    assert torch.equal(a.params["W2"][2], b.params["W2"][0]) and not torch.equal(a.params["W2"][1], b.params["W2"][0])


def test_paired_cells_compare_each_arm_with_its_baseline(tiny):
    chosen = R.chosen_runs(tiny.runs)
    cells = R.paired_cells(chosen)
    assert set(zip(cells.arm, cells.baseline, strict=True)) == {
        ("sobolev-raw", "regular-raw"), ("balanced-standard", "regular-standard")
    }  # fmt: skip
    assert len(cells) == 2 * 2 * 2 and set(cells.seeds) == {3, 2}
    # The ratio is the geometric mean of the per-seed ratios, recomputed by hand for one cell.
    c = cells[(cells.arm == "sobolev-raw") & (cells.function == "booth") & (cells.n_train == 20)].iloc[0]
    a = chosen[(chosen.arm == "sobolev-raw") & (chosen.function == "booth") & (chosen.n_train == 20)
               & (chosen.weight == 1.0)].sort_values("seed")  # fmt: skip
    b = chosen[(chosen.arm == "regular-raw") & (chosen.function == "booth") & (chosen.n_train == 20)].sort_values(
        "seed"
    )
    gm = float(np.exp(np.mean(np.log(a.test_mse.to_numpy() / b.test_mse.to_numpy()))))
    assert c.ratio == pytest.approx(gm, rel=1e-9) and c.low <= c.ratio <= c.high
    assert c.verdict == ("win" if c.high < 1 else "loss" if c.low > 1 else "undecided")


def test_user_function_in_five_dimensions_through_the_public_api():
    fn = BenchmarkFunction("quadratic5", lambda x: (x**2).sum(-1), lambda x: 2 * x, ((-1.0, 1.0),) * 5)
    assert check_gradient(fn).passed
    cfg = tiny_config(sizes=[30], seeds=[2], sweep_sizes=[], sweep_weights=[], lrs=[1e-2])
    result = R.run_grid(cfg, functions=[fn], progress=False)
    assert set(result.runs.function) == {"quadratic5"} and result.params["W1"].shape[2] == 5
    y, g = result.predict(0, torch.zeros(4, 5))
    assert y.shape == (4,) and g.shape == (4, 5)
    cells = R.paired_cells(R.chosen_runs(result.runs))
    assert set(cells.function) == {"quadratic5"}


def test_float64_training_is_stable_across_ensemble_sizes():
    """The same model and seed trained alone or beside others: float64 keeps them together. The batch of 1 or 3 may
    round differently (another kernel, another CPU); measured here, alone vs beside others differ by 4e-16 and a
    1e-13 relative nudge of the initial weights moves the result by 8e-14, so 1e-9 leaves four decades of room."""
    x = torch.rand(3, 40, 2, dtype=torch.float64) * 2 - 1
    t, G = (x**2).sum(2), 2 * x
    finals = []
    for seeds in ([0], [0, 1, 2]):
        model = R.BatchedMLP.init(seeds, hidden=32, dtype=torch.float64)
        train_ensemble(model, x[: len(seeds)], t[: len(seeds)], 1e-2, 300, 100, G=G[: len(seeds)], weight=1.0,
                       schedule="cosine", warmup=0.05, progress=False)  # fmt: skip
        finals.append(model.params["W2"][0])
    torch.testing.assert_close(finals[0], finals[1], rtol=0, atol=1e-9)


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
            "diverged": False,
            "test_mse": 0.0,
            "test_grad_mse": 0.0,
        }
    )
    choose = partial(compare.select_lr, key_name="regression.lrs")
    assert set(choose(runs).lr) == {0.01}  # mean 2.25 beats mean 3.0
    runs.loc[2, "diverged"] = True  # one seed of lr 0.01 diverged: it loses on its surviving seed too
    assert set(choose(runs).lr) == {0.1}
    assert list(compare.diverged(runs).index) == [2]
    runs.loc[0, "diverged"] = True  # every rate has a diverged seed: nothing can be chosen, the key is named
    with pytest.raises(compare.DivergenceError, match=r"every learning rate in regression.lrs = \[0.01, 0.1\] "
                       r"diverged for function=f, n_train=10, method=regular.*lower regression.lrs"):  # fmt: skip
        choose(runs)


def test_divergence_is_non_finite_or_far_beyond_the_zero_prediction():
    ms = np.array([4.0] * 5)  # E f² = 4: predicting 0 everywhere scores 4
    val = np.array([1.0, 399.0, 401.0, np.inf, np.nan])
    assert compare.is_diverged(val, ms).tolist() == [False, False, True, True, True]


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
    with pytest.raises(
        NonFiniteLossError,
        match=r"regression: .* at step \d+ of 30 .*likely cause: a learning rate in "
        r"regression.lrs = \[1000000.0\] too large.*Nothing was written",
    ):
        R.run_grid(tiny_config(lrs=[1e6], functions=["beale"], sweep_weights=[], sweep_sizes=[], sweep_arms=[]),
                   progress=False)  # fmt: skip


def test_a_diverging_model_in_an_ensemble_loses_without_stopping_the_others():
    result = R.run_grid(tiny_config(lrs=[1e-3, 1e6], functions=["beale"], sweep_weights=[], sweep_sizes=[],
                                    sweep_arms=[]), progress=False)  # fmt: skip
    runs = result.runs
    finite = runs.val_mse.map(math.isfinite)
    assert not finite[runs.lr == 1e6].all() and finite[runs.lr == 1e-3].all()  # some diverged, the others trained
    assert set(compare.diverged(runs).lr) == {1e6} and runs.diverged[runs.lr == 1e6].all()  # NaN or exploded
    chosen = R.chosen_runs(runs)
    assert not chosen.diverged.any()  # a setting with a diverged seed never wins
    assert set(chosen[chosen.arm == "sobolev-raw"].lr) == {1e-3}


def test_a_configuration_whose_every_rate_diverged_stops_the_grid_at_once(monkeypatch):
    """Not after the whole grid (6 min at the ci scale): as soon as a configuration's runs have all trained and
    every rate diverged, before the next ensemble starts."""
    cfg = tiny_config(functions=["beale"], sweep_weights=[], sweep_sizes=[], sweep_arms=[])
    trained = []
    real_train = R.train_ensemble
    monkeypatch.setattr(R, "train_ensemble", lambda *a, **k: trained.append(k["desc"]) or real_train(*a, **k))
    monkeypatch.setattr(R, "is_diverged", lambda val, ms: np.ones(len(val), bool))  # every run "diverged"
    with pytest.raises(compare.DivergenceError, match=r"every learning rate in regression.lrs = \[0.001, 0.01\]"):
        R.run_grid(cfg, progress=False)
    assert len(trained) == 1 < len(R._ensembles(R.build_grid(cfg), cfg.ensemble_size)), trained


def test_a_grid_whose_every_rate_explodes_stops_naming_the_key():
    """The issue's case (regression.lrs = [1e5, 1e6]): models that explode to huge but finite errors
    (1e34 and beyond here) are diverged too, and no verdict is computed from them. Whether an
    ensemble reaches inf first (the training loop's stop) depends on rounding; both name the key."""
    cfg = tiny_config(lrs=[1e5, 1e6], functions=["beale"], sweep_weights=[], sweep_sizes=[], sweep_arms=[])
    key = r"regression.lrs = \[100000.0, 1000000.0\]"
    with pytest.raises((compare.DivergenceError, NonFiniteLossError), match=key):
        runs = R.run_grid(cfg, progress=False).runs
        assert runs.diverged.all()
        R.chosen_runs(runs)


def _runs_with_ratios(ratios: dict[tuple[str, int], float], seeds: int = 8, noise: float = 0.05) -> pd.DataFrame:
    """Chosen runs of regular-raw and sobolev-raw whose per-seed ratio is ``ratio`` × (1 ± noise)."""
    rng = np.random.default_rng(0)
    rows = []
    for (fn, n), ratio in ratios.items():
        for seed in range(seeds):
            base = float(rng.uniform(1, 2))
            for arm, value in (
                ("regular-raw", base),
                ("sobolev-raw", base * ratio * (1 + noise * rng.standard_normal())),
            ):
                method = arm.split("-")[0]
                rows.append({"function": fn, "n_train": n, "arm": arm, "method": method, "normalisation": "raw",
                             "weight": 0.0 if method == "regular" else 1.0, "lr": 1e-3, "seed": seed,
                             "test_mse": value, "test_nmse": value, "test_grad_mse": value,
                             "converged": True})  # fmt: skip
    return pd.DataFrame(rows)


def test_claims_are_decided_by_paired_intervals():
    chosen = _runs_with_ratios({("ackley", 10): 3.0, ("ackley", 100): 1.0, ("booth", 10): 0.01, ("booth", 100): 0.01})
    cells = R.paired_cells(chosen)
    verdicts = cells.set_index(["function", "n_train"]).verdict.to_dict()
    assert verdicts == {
        ("ackley", 10): "loss",
        ("ackley", 100): "undecided",
        ("booth", 10): "win",
        ("booth", 100): "win",
    }
    claims = {c.text: c.holds for c in report.arm_claims(cells, chosen, "sobolev-raw")}
    assert claims["Sobolev lowers test MSE on 1 of 2 functions at n=10"] is True
    assert claims["Ackley is a loss at low data (n ≤ 100)"] is None  # lost at 10, undecided at 100
    only = next(k for k in claims if k.startswith("Ackley is the only function"))
    assert claims[only] is True
    # Ackley's low-data loss makes the mean log ratio *fall* from n=10 to n=100: weaker with less data.
    assert claims["the effect is stronger with less data (the mean log ratio rises at every step in size)"] is False
    assert claims[next(k for k in claims if k.startswith("often by an order of magnitude"))] is True  # both ≥ 10×
    trend = _runs_with_ratios({("booth", 10): 0.01, ("booth", 100): 0.3})
    tc = R.paired_cells(trend)
    tclaims = {c.text.split(" (")[0]: c.holds for c in report.arm_claims(tc, trend, "sobolev-raw")}
    assert tclaims["the effect is stronger with less data"] is True
    # A trend that reverses is not "stronger with less data".
    reverse = _runs_with_ratios({("booth", 10): 1.0, ("booth", 100): 0.1})
    rc = R.paired_cells(reverse)
    rclaims = {c.text.split(" (")[0]: c.holds for c in report.arm_claims(rc, reverse, "sobolev-raw")}
    assert rclaims["the effect is stronger with less data"] is False
    metrics = report.metrics_from(cells, chosen)
    json.dumps(metrics)
    assert metrics["sobolev-raw"]["decided"]["n10"] == {"win": 1, "loss": 1, "undecided": 0}
    assert metrics["convergence"]["sobolev-raw/n10"] == {"converged": 16, "runs": 16}  # 2 functions × 8 seeds
    table = report.regression_table(metrics, "sobolev-raw")
    assert "| ackley | 10 |" in table and "loss" in table


def test_balanced_weights_are_used_for_the_balanced_arm():
    g = torch.tensor([[1.0, 10.0], [3.0, -10.0]])
    alpha, w = R.loss_weights("balanced", 1.0, g)
    assert alpha == pytest.approx(1 / 3)
    torch.testing.assert_close(w, torch.tensor([(2 / 3) / (2 * 5.0), (2 / 3) / (2 * 100.0)]))
    alpha, w = R.loss_weights("sobolev", 0.1, g)
    assert alpha == 1.0 and torch.equal(w, torch.full((2,), 0.1))
    with pytest.raises(ValueError, match="method must be 'sobolev' or 'balanced'"):
        R.loss_weights("regular", 1.0, g)


def test_the_readme_example_on_a_five_input_function_runs_and_decides(capsys):
    runpy.run_path(str(ROOT / "examples" / "own_function.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert out.startswith("GradientCheck(autograd_error=")
    assert "balanced-standard" in out and "sobolev-raw" in out
    assert any(v in out for v in ("win", "loss", "undecided"))


def test_only_ackley_loses_needs_a_decided_ackley_loss():
    """The old claim held whenever no *other* function lost, even with Ackley undecided or a win."""
    import pandas as pd

    def cells(ackley, booth):
        return pd.DataFrame({"function": ["ackley", "ackley", "booth", "booth"], "n_train": [10, 100, 10, 100],
                             "verdict": [*ackley, *booth]})  # fmt: skip

    assert report.only_ackley_loses(cells(["loss", "undecided"], ["win", "win"])) is True
    # "only" needs the others decided: an undecided other function leaves it undecided
    assert report.only_ackley_loses(cells(["loss", "undecided"], ["win", "undecided"])) is None
    assert report.only_ackley_loses(cells(["undecided", "undecided"], ["win", "win"])) is None
    assert report.only_ackley_loses(cells(["win", "win"], ["win", "win"])) is False
    assert report.only_ackley_loses(cells(["loss", "loss"], ["loss", "win"])) is False


def test_order_of_magnitude_is_decided_on_each_wins_interval():
    """A win whose interval straddles 0.1 is undecided about 10×, not a case against it."""
    import pandas as pd

    def won(*bounds):
        return pd.DataFrame([{"ratio": (lo * hi) ** 0.5, "low": lo, "high": hi} for lo, hi in bounds])

    assert report.order_of_magnitude(won((0.01, 0.05), (0.02, 0.09)))[0] is True
    assert report.order_of_magnitude(won((0.05, 0.2), (0.05, 0.3)))[0] is None  # straddling: undecided
    assert report.order_of_magnitude(won((0.2, 0.5), (0.3, 0.6), (0.01, 0.05)))[0] is False
    assert report.order_of_magnitude(won())[0] is None


def test_orders_of_magnitude_wording_matches_its_threshold():
    """The claim tests ≥ 10× (one order of magnitude): its words say so."""
    chosen = _runs_with_ratios({("booth", 10): 0.01, ("booth", 100): 0.01})
    texts = [c.text for c in report.arm_claims(R.paired_cells(chosen), chosen, "sobolev-raw")]
    big = next(t for t in texts if "≥ 10×" in t)
    assert "order of magnitude" in big and "orders of magnitude" not in big


def test_grid_in_code_needs_no_params_file_and_leaves_threads_alone(monkeypatch):
    """From an installed wheel: the config is built in code, and the caller's thread count stays."""
    import sobolev.common.params as params_module

    monkeypatch.setattr(params_module, "PARAMS", ROOT / "no-such-params.yaml")
    cfg = RegressionConfig.in_code(sizes=[20], seeds=[1], arms=["regular-raw", "sobolev-raw"], lrs=[0.01],
                                   steps=10, n_test=50, n_val=20, threads=1)  # fmt: skip
    before = torch.get_num_threads()
    result = R.run_grid(cfg, progress=False)
    assert torch.get_num_threads() == before
    assert len(result.runs) == 2 and result.runs.test_mse.notna().all()
    with pytest.raises(ValueError, match=r"regression\.steps"):
        RegressionConfig.in_code(steps=0)


def test_the_sections_figures_pass_the_figure_check(tiny):
    from sobolev.common.plotting import figure_problems

    chosen = R.chosen_runs(tiny.runs)
    cells = R.paired_cells(chosen)
    figures = {"fig2_right": F.figure2(chosen), "paired_ratios": F.paired_ratios(cells),
               "weight_sweep": F.weight_sweep(chosen, 40)}  # fmt: skip
    for name in ("booth", "styblinski_tang"):
        figures[name] = F.surfaces_at(get_function(name), tiny, chosen, 20, ("regular-raw", "sobolev-raw"))
    assert {k: figure_problems(f) for k, f in figures.items()} == {k: [] for k in figures}


def test_surfaces_show_each_models_own_training_points(tiny):
    chosen = R.chosen_runs(tiny.runs)
    fig = F.surfaces_at(get_function("booth"), tiny, chosen, 20, ("regular-raw", "sobolev-raw"))
    top = [ax for ax in fig.axes if ax.get_title() and "∇" not in ax.get_title() and "gradient" not in ax.get_title()
           and not ax.get_title().startswith("|error|")]  # fmt: skip
    errors = [ax for ax in fig.axes if ax.get_title().startswith("|error|")]
    assert len(errors) == 2 and all(ax.collections for ax in errors)  # each model's error, under its surface
    truth, *models = top
    points = lambda ax: [c.get_offsets() for c in ax.collections if len(np.asarray(c.get_offsets())) == 20]  # noqa: E731
    assert points(truth) == []  # the truth saw no sample
    for ax, arm in zip(models, ("regular-raw", "sobolev-raw"), strict=True):
        run = int(F.median_seed(chosen, "booth", 20, arm).run)
        shown = points(ax)
        assert len(shown) == 1 and np.allclose(shown[0], tiny.training_set(run).x.numpy())
