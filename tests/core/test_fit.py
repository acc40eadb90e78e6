"""``sobolev.fit`` and its engine: the hand-written tanh step, the flat Adam, the user-facing
checks, and properties a wrong implementation would break."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import sobolev
from sobolev.core.fitting import FittedModel, choose_recipe
from sobolev.core.inputs import check_samples
from sobolev.core.optimisers import BatchedAdam, flat_parameters
from sobolev.core.tanh_mlp import BatchedTanhMLP

# Short fits stop at their caps on purpose here; the warning itself is tested in test_fit_selection.py.
pytestmark = pytest.mark.filterwarnings("ignore::sobolev.core.fitting.FitWarning")


@pytest.mark.parametrize(("layers", "per_label"), [(1, False), (2, False), (3, False), (2, True)])
def test_tanh_step_matches_autograd_double_backward(layers, per_label):
    torch.manual_seed(0)
    M, B, D = 3, 11, 4
    model = BatchedTanhMLP.init([1, 2, 3], in_dim=D, hidden=7, layers=layers, dtype=torch.float64)
    x, t = torch.randn(M, B, D, dtype=torch.float64), torch.randn(M, B, dtype=torch.float64)
    G = torch.randn(M, B, D, dtype=torch.float64)
    G[0, 3, 1] = G[2, 0, 0] = math.nan  # missing labels
    # one weight per model and input, or one per label (M, B, D)
    w = torch.rand(M, B, D, dtype=torch.float64) if per_label else torch.rand(M, D, dtype=torch.float64)
    alpha = torch.rand(M, dtype=torch.float64)
    res = model.loss_and_grads(x, t, G, w, alpha)

    params = {n: v.clone().requires_grad_(True) for n, v in model.params.items()}
    xa = x.clone().requires_grad_(True)
    _, _, y = BatchedTanhMLP(params)._forward(xa)
    (g,) = torch.autograd.grad(y.sum(), xa, create_graph=True)
    gres = torch.where(torch.isnan(G), 0.0, g - G)
    per_model = alpha * (y - t).pow(2).mean(1) + (gres.pow(2) * (w if per_label else w.unsqueeze(1))).sum(2).mean(1)
    auto = torch.autograd.grad(per_model.sum(), list(params.values()))
    for name, ref in zip(params, auto, strict=True):
        torch.testing.assert_close(res.grads[name], ref, rtol=1e-10, atol=1e-12, msg=name)
    torch.testing.assert_close(model.predict(x)[1], g.detach())
    torch.testing.assert_close(model.losses(x, t, G, w, alpha), per_model.detach())
    assert torch.isfinite(res.grad_loss).all()  # missing labels are left out, not NaN


def test_flat_adam_equals_per_tensor_adam():
    """One fused update of the flat buffer gives the numbers of one update per tensor."""
    flat = BatchedTanhMLP.init([0, 1], in_dim=3, hidden=5)
    separate = BatchedTanhMLP({n: v.clone() for n, v in flat.params.items()})
    a, b = BatchedAdam(flat.params, torch.full((2,), 0.01)), BatchedAdam(separate.params, torch.full((2,), 0.01))
    assert a.flat is not None and b.flat is None
    x, t, G = torch.randn(2, 8, 3), torch.randn(2, 8), torch.randn(2, 8, 3)
    for _ in range(5):
        for model, opt in ((flat, a), (separate, b)):
            opt.step(model.loss_and_grads(x, t, G, torch.ones(2)).grads)
    for name in flat.params:
        torch.testing.assert_close(flat.params[name], separate.params[name], rtol=0, atol=0)


def test_flat_parameters_are_views_of_one_buffer():
    params = flat_parameters({"a": (2, 3), "b": (2,)}, torch.empty(0))
    params["a"].fill_(1.0)
    assert params["a"].untyped_storage().data_ptr() == params["b"].untyped_storage().data_ptr()
    assert params["b"].sum() == 0


def _quadratic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).uniform(-2, 2, (n, 2))
    return x, (x**2).sum(1) + x[:, 0] * x[:, 1], np.stack([2 * x[:, 0] + x[:, 1], 2 * x[:, 1] + x[:, 0]], 1)


@pytest.mark.parametrize("optimiser", ["lbfgs", "adam"])
def test_derivatives_make_a_small_sample_more_accurate(optimiser):
    x, y, g = _quadratic(30)
    xt, yt, gt = _quadratic(500, seed=1)
    with_d = sobolev.fit(x, y, g, steps=400, optimiser=optimiser)
    without = sobolev.fit(x, y, steps=400, optimiser=optimiser)
    err = lambda m: float(np.mean((m.predict(xt) - yt) ** 2) / yt.var())  # noqa: E731
    assert err(with_d) < 0.2 * err(without)
    assert err(with_d) < 1e-2
    derr = float(np.mean((with_d.predict_derivatives(xt) - gt) ** 2) / gt.var())
    assert derr < 1e-2


def test_shapes_types_and_spread():
    x, y, g = _quadratic(40)
    model = sobolev.fit(x.tolist(), y.tolist(), g.tolist(), steps=50, models=3)  # nested lists in
    p = model.predict_with_spread(x[:7])
    assert isinstance(p.value, np.ndarray) and p.value.shape == (7,) and p.derivatives.shape == (7, 2)
    assert (p.value_std > 0).all()  # three different members
    pt = model.predict(torch.tensor(x[:7], dtype=torch.float32))
    assert isinstance(pt, torch.Tensor) and pt.dtype == torch.float32
    # K outputs: (N, K) values and (N, K, D) derivatives; each output is its own function.
    ys, gs = np.stack([y, -2 * y], 1), np.stack([g, -2 * g], 1)
    two = sobolev.fit(x, ys, gs, steps=50, models=2)
    assert two.predict(x[:5]).shape == (5, 2) and two.predict_derivatives(x[:5]).shape == (5, 2, 2)
    # the second output is -2 × the first: its predictions are far from the first's
    assert np.corrcoef(two.predict(x)[:, 0], two.predict(x)[:, 1])[0, 1] < -0.9


@pytest.mark.parametrize("optimiser", ["lbfgs", "adam"])
def test_missing_partials_are_skipped_not_propagated(optimiser):
    x, y, g = _quadratic(40)
    g = g.copy()
    g[::2, 1] = np.nan  # half of the second partials missing
    model = sobolev.fit(x, y, g, steps=100, optimiser=optimiser)
    assert np.isfinite(model.predict(x)).all() and math.isfinite(model.info["train_loss"])


def test_save_load_roundtrip_and_repr(tmp_path):
    x, y, g = _quadratic(20)
    model = sobolev.fit(x, y, g, steps=30, models=2)
    model.save(tmp_path / "m.pt")
    back = FittedModel.load(tmp_path / "m.pt")
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    assert "2 tanh MLPs" in repr(model) and "D=2" in repr(model) and "N=20" in repr(model)
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(Exception, match=r"bad\.pt|pickle|load"):
        FittedModel.load(tmp_path / "bad.pt")


def test_fit_leaves_thread_count_alone():
    before = torch.get_num_threads()
    x, y, _ = _quadratic(20)
    sobolev.fit(x, y, steps=10, threads=1)
    assert torch.get_num_threads() == before


def test_noisy_recipe_holds_out_points_and_keeps_best():
    x, y, g = _quadratic(60)
    rng = np.random.default_rng(3)
    model = sobolev.fit(x, y + rng.normal(0, 0.5, 60), g + rng.normal(0, 0.5, g.shape), noisy=True, steps=200)
    assert model.recipe.validation == 0.2
    assert np.isfinite(model.predict(x)).all()


def test_recipe_is_the_same_with_and_without_derivatives():
    for n in (20, 500, 5000):
        assert choose_recipe(n, 3, True) == choose_recipe(n, 3, False)
    # small exact data: L-BFGS to convergence; large or noisy data: Adam
    assert choose_recipe(100, 2, True).optimiser == "lbfgs"
    assert choose_recipe(5000, 2, True).optimiser == "adam"
    assert choose_recipe(100, 2, True, noisy=True).optimiser == "adam"


@pytest.mark.parametrize("optimiser", ["lbfgs", "adam"])
def test_label_weights_zero_is_regular_training_one_is_unweighted(optimiser):
    """At one derivative weight (``lam`` given: no selection, so both fits train the same models in the same
    layout), confidence 0 on every label is regular training and confidence 1 is no weighting."""
    x, y, g = _quadratic(30)
    opts = dict(steps=60, models=2, optimiser=optimiser)
    regular = sobolev.fit(x, y, **opts)
    opts["lam"] = 1.0
    plain = sobolev.fit(x, y, g, **opts)
    zero = sobolev.fit(x, y, g, dydx_weight=np.zeros(30), **opts)
    one = sobolev.fit(x, y, g, dydx_weight=np.ones((30, 2)), **opts)
    np.testing.assert_allclose(zero.predict(x), regular.predict(x), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(one.predict(x), plain.predict(x), rtol=1e-6, atol=1e-9)
    # halving the trust in the second input's labels changes the fit (the weights reach the loss)
    half = np.ones((30, 2))
    half[:, 1] = 0.5
    assert not np.allclose(sobolev.fit(x, y, g, dydx_weight=half, **opts).predict(x), plain.predict(x))


def test_derivative_weight_decays_per_epoch_with_adam():
    from sobolev.core.tanh_mlp import BatchedTanhMLP
    from sobolev.core.training import train_ensemble

    seen = []
    x, y, g = _quadratic(40)
    model = sobolev.fit(x, y, g, optimiser="adam", steps=40, batch_size=20, lam_decay=0.5, models=1)
    assert model.recipe.lam_decay == 0.5
    # the schedule itself: weight × decay^(epochs done), epochs = updates × batch / N
    net = BatchedTanhMLP.init([0], 2, 4, dtype=torch.float64)
    xs, ts, Gs = (torch.as_tensor(v).unsqueeze(0) for v in (x, y, g))
    w = torch.ones(1, 2, dtype=torch.float64)
    original = net.loss_and_grads

    def spy(xb, tb, Gb, wb, vw):
        seen.append(float(wb.flatten()[0]))
        return original(xb, tb, Gb, wb, vw)

    net.loss_and_grads = spy
    train_ensemble(net, xs, ts, 1e-3, 4, batch_size=20, G=Gs, weight=w, progress=False,
                   weight_schedule=lambda i: 0.5 ** (i * 20 / 40))  # fmt: skip
    np.testing.assert_allclose(seen, [0.5**0.5, 0.5, 0.5**1.5, 0.25])


def test_lbfgs_stops_each_member_by_the_same_rules_with_and_without_derivatives_and_says_so():
    x, y, g = _quadratic(30)
    assert choose_recipe(30, 2, True).converged == 1e-8  # the default floor: far below any test error reached here
    looser = dict(models=2, converged=1e-4)  # a floor both arms reach before the cap on this easy problem
    for model in (sobolev.fit(x, y, g, lam=1.0, **looser), sobolev.fit(x, y, **looser)):
        its = model.info["iterations"]
        assert model.recipe.optimiser == "lbfgs" and max(its) < model.recipe.steps
        assert f"members stopped after {min(its)}–{max(its)} iterations; 0 of 2 at the cap" in repr(model)
        assert model.diagnostics["members_at_cap"] == 0 and not model.diagnostics["warnings"]
    with pytest.warns(sobolev.FitWarning, match="every member stopped at the cap of 60 L-BFGS iterations"):
        capped = sobolev.fit(x, y, g, models=2, steps=60, lam=1.0)  # still falling fast at 60 iterations
    assert capped.info["iterations"] == [60, 60] and "2 of 2 at the cap of 60 (objective still falling" in repr(capped)
    assert capped.diagnostics["falling_at_cap"] > 0.1
    assert choose_recipe(100, 2, True).batch_size == 100  # small data: full batch
    assert choose_recipe(5000, 2, True).batch_size < 5000


X, Y, G = _quadratic(10)
BAD = [
    (dict(x=np.where(np.arange(20).reshape(10, 2) == 5, np.nan, X), y=Y), r"x: row 2 holds nan"),
    (dict(x=X, y=np.where(np.arange(10) == 4, np.inf, Y)), r"y: row 4 holds inf"),
    (dict(x=X, y=Y, dydx=np.where(np.arange(20).reshape(10, 2) == 7, np.inf, G)), r"dydx: row 3 holds inf"),
    (dict(x=X, y=Y, dydx=np.full_like(G, np.nan)), r"every entry is NaN"),
    (dict(x=np.zeros((0, 2)), y=np.zeros(0)), r"x: no points"),
    (dict(x=X[:1], y=Y[:1]), r"1 point\(s\); need at least 2"),
    (dict(x=X, y=Y[:9]), r"y: expected shape \(10,\) or \(10, K\) to match x's 10 points, got \(9,\)$"),
    (dict(x=X, y=Y, dydx=G[:, :1]), r"dydx: expected shape \(10, 2\)"),
    (dict(x=np.zeros((10, 0)), y=Y), r"D = 0 inputs"),
    (dict(x=[[1, 2], [3]], y=[1, 2]), r"x: expected a rectangular array|x: expected numbers"),
    (dict(x=[["a", "b"], ["c", "d"]], y=[1, 2]), r"x: expected numbers"),
    (dict(x=torch.ones(10, 2, dtype=torch.bool), y=Y), r"x: expected real numbers"),
    (dict(x=X, y=Y, lr=math.nan), r"lr: expected a finite number"),
    (dict(x=X, y=Y, steps=0), r"steps: expected an integer"),
    (dict(x=X, y=Y, optimiser="sgd"), r"optimiser: expected one of \('lbfgs', 'adam'\), got 'sgd'"),
    (dict(x=X, y=Y, optimiser="lbfgs", validation=0.2), r"validation: 0.2 needs optimiser='adam'"),
    (dict(x=X, y=Y, converged=float("nan")), r"converged: expected a finite number"),
    (dict(x=X, y=Y, lam_decay=0.9), r"lam_decay: 0.9 needs optimiser='adam'"),
    (dict(x=X, y=Y, dydx_weight=np.ones(10)), r"dydx_weight: given without dydx"),
    (dict(x=X, y=Y, dydx=G, dydx_weight=np.ones(9)), r"dydx_weight: expected shape \(10,\), \(10, 2\)"),
    (dict(x=X, y=Y, dydx=G, dydx_weight=-np.ones(10)), r"dydx_weight: row 0 holds .* finite and ≥ 0"),
    (dict(x=X, y=Y, dydx=G, dydx_weight=np.r_[np.ones(9), np.nan]), r"dydx_weight: row 9 holds \[nan"),
    (dict(x=X, y=Y, models=2.5), r"models: expected an integer"),
    (dict(x=X, y=Y, lam=-1.0), r"lam: expected a finite number"),
    (dict(x=X, y=Y, learning_rate=0.1), r"unknown option\(s\) \['learning_rate'\]"),
    (dict(x=X, y=Y, noisy="yes"), r"noisy: expected True or False"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_input_is_named_before_training(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sobolev.fit(**kwargs)


def test_integers_are_accepted_and_one_input_may_be_flat():
    s = check_samples(np.arange(5), np.arange(5) ** 2, 2 * np.arange(5))
    assert s.x.shape == (5, 1) and s.dydx.shape == (5, 1, 1) and s.x.dtype == torch.float64


def test_predict_checks_its_points():
    x, y, _ = _quadratic(10)
    model = sobolev.fit(x, y, steps=5, models=1)
    with pytest.raises(ValueError, match=r"x: expected 2 inputs per point"):
        model.predict(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"x: row 1 holds nan"):
        model.predict(np.array([[0.0, 0.0], [np.nan, 0.0]]))


def test_readme_example_is_the_example_file_and_runs(tmp_path, monkeypatch, capsys):
    import runpy

    from sobolev.common.paths import ROOT

    code = (ROOT / "examples" / "fit_your_data.py").read_text()
    assert f"```python\n{code}```" in (ROOT / "docs" / "fit.md").read_text()
    ten = (ROOT / "examples" / "fit_ten_lines.py").read_text()
    assert f"```python\n{ten}```" in (ROOT / "README.md").read_text()  # the landing page's ten lines
    assert len([line for line in ten.splitlines() if line.strip()]) <= 10
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(ROOT / "examples" / "fit_ten_lines.py"), run_name="__main__")
    assert capsys.readouterr().out.startswith("FittedModel: 5 tanh MLPs")
    monkeypatch.chdir(tmp_path)  # it saves model.pt
    runpy.run_path(str(ROOT / "examples" / "fit_your_data.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert out.startswith("FittedModel: 5 tanh MLPs 2×16 per output, D=2 → K=1, trained on N=100 points with "
                          "derivative labels\n  derivative weight λ = ")  # fmt: skip
    table = np.array([line.strip("[] ").split() for line in out.splitlines()[-5:]], dtype=float)
    assert table.shape == (5, 3)
    assert np.abs(table[:, 0] - table[:, 1]).max() < 0.05  # prediction against the truth


def test_benchmark_table_pairs_seeds_and_decides_on_the_interval():
    import pandas as pd

    from sobolev.readme import fit_comparison

    rows = []
    for seed in range(5):
        jenn = 0.1 * (1 + seed)  # seeds differ a lot; ours is 0.5× JENN's on every one of them
        for library, nmse in (("jenn", jenn), ("sobolev", 0.5 * jenn), ("gekpls", 0.25 * jenn)):
            rows.append(dict(function="f", dim=2, n=20, seed=seed, derivatives="with", library=library,
                             nmse=nmse, seconds=1.0 if library == "sobolev" else 3.0))  # fmt: skip
        for library, nmse in (("jenn", 1.0), ("sobolev", 1.5 if seed % 2 else 0.6)):  # no consistent sign
            rows.append(dict(function="f", dim=2, n=100, seed=seed, derivatives="with", library=library,
                             nmse=nmse, seconds=1.0))  # fmt: skip
    rows.append(dict(function="f", dim=2, n=100, seed=0, derivatives="with", library="gekpls", skipped="too big"))
    table = fit_comparison(pd.DataFrame(rows)).set_index(["n", "other"])
    assert len(table) == 3  # the skipped GP cell is not a comparison
    assert table.loc[(20, "jenn"), "verdict"] == "win"
    assert table.loc[(20, "jenn"), "paired"].startswith("0.5 [0.5, 0.5]")
    assert table.loc[(20, "gekpls"), "verdict"] == "loss"
    assert table.loc[(20, "gekpls"), "paired"].startswith("2 [2, 2]")
    assert table.loc[(20, "gekpls"), "speedup"] == 3.0
    assert table.loc[(100, "jenn"), "verdict"] == "undecided"
    # four seeds decide nothing, whatever the interval
    four = fit_comparison(pd.DataFrame([r for r in rows if r["seed"] < 4])).set_index(["n", "other"])
    assert four.loc[(20, "jenn"), "verdict"] == "undecided"


def test_train_members_trains_stacked_data_sets_independently():
    """The engine under sobolev.fit, for callers that stack many data sets: model i fits set i."""
    from sobolev.core.fitting import Recipe, train_members
    from sobolev.core.samples import Normaliser

    sets = [_quadratic(30, seed) for seed in (0, 1)]
    x = torch.stack([torch.as_tensor(s[0]) for s in sets])
    y = torch.stack([torch.as_tensor(s[1]) for s in sets]) * torch.tensor([[1.0], [-3.0]], dtype=torch.float64)
    g = torch.stack([torch.as_tensor(s[2]) for s in sets]) * torch.tensor([1.0, -3.0], dtype=torch.float64).view(
        2, 1, 1
    )
    nm = Normaliser.from_samples(x, y)  # a batch: one normaliser per set
    recipe = Recipe(hidden=8, optimiser="lbfgs", steps=200)
    model, loss, iterations, _ = train_members(nm.x(x), nm.y(y), nm.g(g), torch.ones(2, 2), recipe, [0, 1])
    assert loss.shape == (2,) and bool((loss < 1e-2).all())
    assert iterations.shape == (2,) and bool(((iterations >= 1) & (iterations <= 200)).all())  # each its own stop
    pred, _ = model.predict(nm.x(x).to(model.params["W1"]))
    np.testing.assert_allclose(nm.y_back(pred.double()).numpy(), y.numpy(), atol=0.2 * float(y.abs().max()))
    with pytest.raises(ValueError, match=r"seeds: expected one per model \(2\), got 1"):
        train_members(nm.x(x), nm.y(y), None, None, recipe, [0])
