"""The noise curve: Sobolev training's advantage over regular training against the relative noise of
its derivative labels, per function, on paired seeds.

Within a seed every arm sees the same points, values and initial weights; the Sobolev arms differ
only in the noise on their derivative labels and in the derivative weight ``lam``. Label ``i``
becomes ``G̃ᵢ = Gᵢ + ε ‖Gᵢ‖ ξᵢ / √D`` with ``ξᵢ ~ N(0, I)``, so the relative error
``‖G̃ᵢ − Gᵢ‖ / ‖Gᵢ‖`` is about ``ε`` at every point (JENN's noisy-partials study speaks of the
mean error of the partials in these terms). Every arm of a function is one batched run of
:func:`sobolev.core.fitting.train_members` with :func:`sobolev.fit`'s recipe for the size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TextIO

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from sobolev.common.stats import LOSS, WIN, paired_ratio
from sobolev.core.families import lookup
from sobolev.core.fitting import balance, choose_recipe, train_members, train_sets
from sobolev.core.functions import BenchmarkFunction
from sobolev.core.gradient_estimates import finite_difference_gradients, knn_gradients
from sobolev.core.samples import Normaliser, Sample, make_sample, stable_seed
from sobolev.core.tanh_mlp import BatchedTanhMLP
from sobolev.inexact.config import InexactConfig


def noisy_labels(G: Tensor, level: float, generator: torch.Generator) -> Tensor:
    """``G (N, D)`` with relative noise ``level``: ``G + level ‖Gᵢ‖ ξᵢ / √D`` per point, float64."""
    if not (isinstance(level, (int, float)) and math.isfinite(level) and level >= 0):
        raise ValueError(f"level: expected a relative noise ≥ 0, got {level!r}")
    G = G.double()
    xi = torch.randn(G.shape, generator=generator, dtype=torch.float64)
    return G + level * G.norm(dim=1, keepdim=True) * xi / math.sqrt(G.shape[1])


def train_and_score(
    xs: list[Tensor],
    ys: list[Tensor],
    Gs: list[Tensor] | None,
    lams: list[float] | None,
    seeds: list[int],
    tests: list[Sample],
    desc: str,
    device: str = "cpu",
    progress: bool | TextIO = False,
) -> pd.DataFrame:
    """Train one model per training set, all of the same size, in one batched run with :func:`sobolev.fit`'s recipe
    and engine (:func:`~sobolev.core.fitting.train_sets`, one member per set), and score each on its test set.

    Args:
        xs, ys, Gs: per set, points ``(N, D)``, values ``(N,)`` and derivative labels ``(N, D)`` (``Gs=None``: values
            only).
        lams: per set, a fixed derivative weight; ``None``: each set chooses its own among the fit's candidates by
            cross-validation, as :func:`sobolev.fit` does (0, values only, included).
        seeds: per set, the initial-weight seed (equal seeds: equal initial weights).
        tests: per set, its function's test set (all of one size), so that several functions' models train in one
            run.

    Returns:
        One row per set: ``test_nmse`` (test MSE / Var f), ``iterations`` (L-BFGS: where the member stopped; Adam:
        the schedule's steps), ``lam`` (the weight it trained with, chosen or given) and ``value_term`` (its final
        training value error in standardised units: what both arms' stopping rules share).
    """
    x = torch.stack([v.double() for v in xs])  # (M, N, D)
    y = torch.stack([v.double() for v in ys])
    nm = Normaliser.from_samples(x, y)  # each set's own training data, as sobolev.fit standardises
    recipe = replace(choose_recipe(x.shape[1], x.shape[2], Gs is not None), device=device, models=1)
    G = None if Gs is None else nm.g(torch.stack([v.double() for v in Gs]))
    xn, yn = nm.x(x), nm.y(y)
    if Gs is not None and lams is not None:  # fixed weights, one per set: the noise curve
        weight = balance(G, torch.tensor(lams, dtype=torch.float64))
        trained = train_members(xn, yn, G, weight, recipe, seeds, desc=desc, progress=progress)
        model, iterations, used = trained.model, trained.iterations, list(lams)
    else:
        out = train_sets(xn, yn, G, replace(recipe, select=G is not None), progress, seeds=seeds, desc=desc)
        model = BatchedTanhMLP(out.params())
        iterations, used = out.trained.iterations[out.keep], out.lams
    dtype = model.params["W1"].dtype
    pred = nm.y_back(model.predict(xn.to(dtype))[0].double())
    value_term = (pred - y).pow(2).mean(1) / nm.y_std.pow(2)
    xt = nm.x(torch.stack([t.x.double() for t in tests])).to(dtype)  # (M, T, D)
    yt = torch.stack([t.y.double() for t in tests])
    test = nm.y_back(model.predict(xt)[0].double())
    return pd.DataFrame(
        {
            "test_nmse": ((test - yt).pow(2).mean(1) / yt.var(1)).tolist(),
            "iterations": iterations.tolist(),
            "lam": used,
            "value_term": value_term.tolist(),
        }
    )


def _check_functions(fns: dict[str, BenchmarkFunction]) -> None:
    if not fns or not all(isinstance(f, BenchmarkFunction) for f in fns.values()):
        raise ValueError(f"fns: expected a non-empty dict of name -> BenchmarkFunction, got {fns!r}")


def noise_curve(
    fns: dict[str, BenchmarkFunction],
    n_train: int,
    levels: list[float],
    lams: list[float],
    seeds: int,
    n_test: int = 2000,
    device: str = "cpu",
    progress: bool | TextIO = False,
) -> pd.DataFrame:
    """Test error of regular training and of Sobolev training at every noise level and ``lam``.

    Returns one row per (function, arm, level, lam, seed): ``arm`` is ``regular`` (level and lam
    NaN) or ``sobolev``, ``points`` is ``n_train``, ``test_nmse`` is the ensemble member's test
    MSE / Var f on ``n_test`` uniform points, ``iterations`` where L-BFGS stopped the model.
    """
    if seeds < 1 or n_train < 2:
        raise ValueError(f"seeds ≥ 1 and n_train ≥ 2 needed, got seeds={seeds}, n_train={n_train}")
    _check_functions(fns)
    if not levels or not lams:
        raise ValueError(f"levels and lams: expected at least one each, got levels={levels}, lams={lams}")
    rows = []
    for name, fn in fns.items():
        test = make_sample(fn, n_test, 0, "test")
        samples = [make_sample(fn, n_train, seed) for seed in range(seeds)]
        arms = [("regular", math.nan, math.nan)] + [("sobolev", e, lam) for e in levels for lam in lams]
        G = [
            s.g.double() if arm == "regular" else noisy_labels(
                s.g, level, torch.Generator().manual_seed(stable_seed(name, level, seed, "noise")))
            for arm, level, _ in arms for seed, s in enumerate(samples)
        ]  # fmt: skip
        scored = train_and_score(
            [s.x for _ in arms for s in samples], [s.y for _ in arms for s in samples], G,
            [0.0 if arm == "regular" else lam for arm, _, lam in arms for _ in samples],
            [seed for _ in arms for seed in range(seeds)], [test] * len(G), f"noise: {name} n={n_train}", device,
            progress,
        )  # fmt: skip
        for i, (arm, level, lam_) in enumerate(a for a in arms for _ in samples):
            rows.append({"function": name, "arm": arm, "level": level, "lam": lam_, "seed": i % seeds,
                         "points": n_train, "test_nmse": scored.test_nmse[i], "iterations": scored.iterations[i],
                         "value_term": scored.value_term[i]})  # fmt: skip
    return pd.DataFrame(rows)


def advantage(runs: pd.DataFrame) -> pd.DataFrame:
    """Per function, noise level and ``lam``: Sobolev / regular test error, paired by seed (geometric
    mean with its t interval) and the verdict (``win``: Sobolev decidedly more accurate)."""
    regular = runs[runs.arm == "regular"].set_index(["function", "seed"]).test_nmse
    rows = []
    for (fn, level, lam), g in runs[runs.arm == "sobolev"].groupby(["function", "level", "lam"]):
        g = g.sort_values("seed")
        r = paired_ratio(g.test_nmse.to_numpy(), regular.loc[fn].loc[g.seed].to_numpy())
        rows.append({"function": fn, "level": level, "lam": lam, "ratio": r.estimate, "low": r.low, "high": r.high,
                     "seeds": r.n, "verdict": r.verdict, "p_t": r.t_p_value})  # fmt: skip
    return pd.DataFrame(rows)


def crossing(table: pd.DataFrame) -> pd.DataFrame:
    """Where the advantage is lost, per function and ``lam`` from :func:`advantage`'s table, as interval statements
    (never "the first level without a decided win", which says as much about power as about the effect):
    ``exact_win`` (a decided win with exact labels, level 0), ``last_win`` (the highest noise level whose paired
    ratio is decidedly below 1; NaN when none) and ``first_loss`` (the lowest level decidedly above 1: noisier labels
    than this make Sobolev training worse than regular; NaN when none). Between them the data decide nothing."""
    rows = []
    for (fn, lam), g in table.sort_values("level").groupby(["function", "lam"]):
        won, lost = g[g.verdict == WIN], g[g.verdict == LOSS]
        rows.append({"function": fn, "lam": lam, "exact_win": bool((g[g.level == 0].verdict == WIN).any()),
                     "last_win": float(won.level.max()) if len(won) else math.nan,
                     "first_loss": float(lost.level.min()) if len(lost) else math.nan})  # fmt: skip
    return pd.DataFrame(rows)


def weights_compared(runs: pd.DataFrame, low: float, high: float) -> pd.DataFrame:
    """The two derivative weights compared directly, level by level: per function and noise level, the paired ratio
    of test error at λ = ``low`` over λ = ``high`` (the same points, labels and initial weights per seed) with its
    t interval (``win``: the lower weight decidedly more accurate)."""
    sob = runs[runs.arm == "sobolev"]
    rows = []
    for (fn, level), g in sob.groupby(["function", "level"]):
        wide = g.pivot_table(index="seed", columns="lam", values="test_nmse")
        if not {low, high} <= set(wide.columns):
            continue
        r = paired_ratio(wide[low].to_numpy(), wide[high].to_numpy())
        rows.append({"function": fn, "level": level, "ratio": r.estimate, "low": r.low, "high": r.high,
                     "seeds": r.n, "verdict": r.verdict, "p_t": r.t_p_value})  # fmt: skip
    return pd.DataFrame(rows)


#: The black box's uses of m evaluations: values only; forward differences at m/(1+d) points; gradients estimated
#: from the m samples by k nearest neighbours; exact gradients (what a user with an adjoint has); and, for each
#: estimated source, the same labels shuffled across the points (an information-free control: a win that the
#: shuffled labels match is no evidence that the labels' information helped).
METHODS: tuple[str, ...] = ("values", "finite_differences", "finite_differences_shuffled", "knn", "knn_shuffled",
                            "exact")  # fmt: skip
ESTIMATED = ("finite_differences", "knn")
MIN_FD_POINTS = 3  # fewer points than this cannot be standardised into a training set worth the name


def knn_neighbours(k: int, dim: int, n: int) -> int:
    """Neighbours for the k-NN estimate in ``dim`` inputs from ``n`` samples: ``k`` (Kissel &
    Diepold: 4 in 2-D), at least ``2 dim`` so the local fit is overdetermined in every dimension,
    at most the ``n - 1`` other samples."""
    return min(max(k, 2 * dim), n - 1)


def shuffled(G: Tensor, seed: int) -> Tensor:
    """``G (N, D)`` with its rows permuted: the same label values, none at its own point."""
    return G[torch.randperm(len(G), generator=torch.Generator().manual_seed(seed))]


def equal_budget(
    fns: dict[str, BenchmarkFunction],
    budgets: list[int],
    seeds: list[int],
    knn_k: int = 4,
    n_test: int = 2000,
    device: str = "cpu",
    progress: bool | TextIO = False,
) -> pd.DataFrame:
    """Test error of each use of a budget of ``m`` black-box evaluations (:data:`METHODS`), every fit made as
    :func:`sobolev.fit` makes it: its recipe for the number of points and, with derivative labels, its choice of the
    derivative weight by cross-validation (0, values only, among the candidates).

    Within a seed every method starts from the same m uniform points and the same initial weights;
    finite differences (forward, ``d + 1`` calls per point: value and gradient) use the first
    ``m // (d + 1)`` of them, and are left out where that is under :data:`MIN_FD_POINTS`; ``seeds[i]`` paired
    seeds at ``budgets[i]``.

    Every model of one size and dimension (all functions and seeds) trains in one batched run per kind of label
    (:func:`train_and_score`). Returns one row per (function, dim, budget, method, seed) with ``points`` (training
    points), ``calls`` (evaluations spent), ``test_nmse`` (test MSE / Var f on ``n_test`` uniform points),
    ``iterations``, ``lam`` (the weight chosen), ``value_term`` (:func:`train_and_score`'s) and ``gradient_error``
    (relative RMS error of the derivative labels; NaN for values only).
    """
    _check_functions(fns)
    if not budgets or not all(isinstance(m, int) and m >= MIN_FD_POINTS for m in budgets):
        raise ValueError(f"budgets: expected integers ≥ {MIN_FD_POINTS} (evaluations), got {budgets}")
    if len(seeds) != len(budgets) or min(seeds, default=0) < 1:
        raise ValueError(f"seeds: expected a count ≥ 1 per budget ({len(budgets)}), got {seeds}")
    tests = {name: make_sample(fn, n_test, 0, "test") for name, fn in fns.items()}
    jobs: dict[tuple[int, int, bool], list[dict]] = {}  # (points, dim, labels) -> one batched run's models
    for name, fn in fns.items():
        d = fn.dim
        for m, n_seeds in zip(budgets, seeds, strict=True):
            n_fd = m // (d + 1)
            for seed in range(n_seeds):
                s = make_sample(fn, m, seed, "budget")
                knn = knn_gradients(s.x.double(), s.y.double(), knn_neighbours(knn_k, d, m))
                cell = {"function": name, "dim": d, "budget": m, "seed": seed, "test": tests[name], "points": m,
                        "calls": m, "x": s.x, "y": s.y}  # fmt: skip
                noise = stable_seed(name, m, seed, "shuffle")
                jobs.setdefault((m, d, False), []).append(
                    cell | {"method": "values", "G": None, "gradient_error": math.nan}
                )
                for method, G in (("knn", knn), ("knn_shuffled", shuffled(knn, noise)), ("exact", s.g.double())):
                    jobs.setdefault((m, d, True), []).append(
                        cell | {"method": method, "G": G, "gradient_error": relative_error(s.g, G)})  # fmt: skip
                if n_fd >= MIN_FD_POINTS:
                    fd = finite_difference_gradients(fn, s.x[:n_fd].double(), "forward")
                    for method, G in (("finite_differences", fd.gradients),
                                      ("finite_differences_shuffled", shuffled(fd.gradients, noise))):  # fmt: skip
                        jobs.setdefault((n_fd, d, True), []).append(
                            cell | {"method": method, "points": n_fd, "calls": n_fd * fd.calls_per_point,
                                    "x": s.x[:n_fd], "y": fd.values, "G": G,
                                    "gradient_error": relative_error(s.g[:n_fd], G)})  # fmt: skip
    rows = []
    for (n, d, labels), models in jobs.items():
        scored = train_and_score(
            [j["x"] for j in models], [j["y"] for j in models], [j["G"] for j in models] if labels else None, None,
            [j["seed"] for j in models], [j["test"] for j in models],
            f"budget: d={d} n={n} {'derivatives' if labels else 'values'}", device, progress,
        )  # fmt: skip
        keys = ("function", "dim", "budget", "method", "seed", "points", "calls", "gradient_error")
        rows += [{k: j[k] for k in keys} | r for j, r in zip(models, scored.to_dict("records"), strict=True)]
    order = {name: i for i, name in enumerate(fns)}
    out = pd.DataFrame(rows)
    out = out.assign(_f=out.function.map(order), _m=out.method.map(METHODS.index))
    return out.sort_values(["_f", "budget", "_m", "seed"]).drop(columns=["_f", "_m"]).reset_index(drop=True)


def relative_error(exact: Tensor, estimate: Tensor) -> float:
    """Relative RMS error of gradient labels ``(N, D)``: ``√(mean ‖estimate − exact‖²) / √(mean ‖exact‖²)``.

    For :func:`noisy_labels` at level ``ε`` it is about ``ε``; unlike a mean of per-point ratios it
    is not dominated by the points where the exact gradient nearly vanishes."""
    return float((estimate - exact).pow(2).sum(1).mean().sqrt() / exact.pow(2).sum(1).mean().sqrt())


@dataclass(frozen=True)
class Result:
    """Everything the section computes at ``cfg``: the noise curve's runs (:func:`noise_curve`) and
    the equal-budget runs (:func:`equal_budget`), one row per trained model."""

    cfg: InexactConfig
    noise_runs: pd.DataFrame
    budget_runs: pd.DataFrame


def run(cfg: InexactConfig, progress: bool | TextIO = False) -> Result:
    """The section's computation at ``cfg``'s scale, on ``cfg.threads`` threads."""
    previous = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        noise = noise_curve({n: lookup(n) for n in cfg.noise_functions}, cfg.noise_points, cfg.noise_levels,
                            cfg.noise_lams, cfg.noise_seeds, cfg.n_test, cfg.device, progress)  # fmt: skip
        budget = equal_budget({n: lookup(n) for n in cfg.budget_functions}, cfg.budgets, cfg.budget_seeds,
                              cfg.knn_k, cfg.n_test, cfg.device, progress)  # fmt: skip
    finally:
        torch.set_num_threads(previous)
    return Result(cfg, noise, budget)


#: JENN's noisy-partials study (2-D Rastrigin, 100 points, one seed): above about this mean
#: relative error in the partials, the benefit of training on them disappears.
JENN_THRESHOLD = 0.05


LABELS = {"values": "values only (m points)", "finite_differences": "forward differences (m/(d+1) points)",
          "finite_differences_shuffled": "forward differences, shuffled (control)",
          "knn": "k-NN estimates (m points)", "knn_shuffled": "k-NN estimates, shuffled (control)",
          "exact": "exact gradients (m points)"}  # fmt: skip


def percent(level: float) -> str:
    """``0.05`` as ``"5%"``; NaN as ``"—"``."""
    return "—" if not np.isfinite(level) else f"{100 * level:g}%"
