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
from typing import TextIO

import pandas as pd
import torch
from torch import Tensor

from sobolev.common.stats import paired_ratio
from sobolev.core.data import Normaliser, make_sample, stable_seed
from sobolev.core.fitting import balance, choose_recipe, train_members
from sobolev.core.functions import BenchmarkFunction


def noisy_labels(G: Tensor, level: float, generator: torch.Generator) -> Tensor:
    """``G (N, D)`` with relative noise ``level``: ``G + level ‖Gᵢ‖ ξᵢ / √D`` per point, float64."""
    if not (isinstance(level, (int, float)) and math.isfinite(level) and level >= 0):
        raise ValueError(f"level: expected a relative noise ≥ 0, got {level!r}")
    G = G.double()
    xi = torch.randn(G.shape, generator=generator, dtype=torch.float64)
    return G + level * G.norm(dim=1, keepdim=True) * xi / math.sqrt(G.shape[1])


def noise_curve(
    fns: dict[str, BenchmarkFunction],
    n_train: int,
    levels: list[float],
    lams: list[float],
    seeds: int,
    n_test: int = 2000,
    progress: bool | TextIO = False,
) -> pd.DataFrame:
    """Test error of regular training and of Sobolev training at every noise level and ``lam``.

    Returns one row per (function, arm, level, lam, seed): ``arm`` is ``regular`` (level and lam
    NaN) or ``sobolev``, ``test_nmse`` is the ensemble member's test MSE / Var f on ``n_test``
    uniform points, ``iterations`` the batched run's L-BFGS iterations.
    """
    if seeds < 1 or n_train < 2:
        raise ValueError(f"seeds ≥ 1 and n_train ≥ 2 needed, got seeds={seeds}, n_train={n_train}")
    recipe = choose_recipe(n_train, 2, True)
    rows = []
    for name, fn in fns.items():
        test = make_sample(fn, n_test, 0, "test")
        var = float(test.y.double().var())
        samples = [make_sample(fn, n_train, seed) for seed in range(seeds)]
        arms = [("regular", math.nan, math.nan)] + [("sobolev", e, lam) for e in levels for lam in lams]
        x = torch.stack([s.x.double() for _ in arms for s in samples])  # (M, N, D), arm-major
        y = torch.stack([s.y.double() for _ in arms for s in samples])
        G = torch.stack([
            s.g.double() if arm == "regular" else noisy_labels(
                s.g, level, torch.Generator().manual_seed(stable_seed(name, level, seed, "noise")))
            for arm, level, _ in arms for seed, s in enumerate(samples)
        ])  # fmt: skip
        nm = Normaliser.from_samples(x, y)  # each model's own training set
        Gn = nm.g(G)
        lam = torch.tensor([0.0 if arm == "regular" else lam for arm, _, lam in arms for _ in samples])
        weight = balance(Gn, lam)  # sobolev.fit's weights; lam = 0: the regular arm
        model, _, iterations = train_members(
            nm.x(x), nm.y(y), Gn, weight, recipe, [seed for _ in arms for seed in range(seeds)],
            desc=f"inexact: {name} n={n_train}", progress=progress,
        )  # fmt: skip
        xt = nm.x(test.x.double().expand(len(x), *test.x.shape)).to(model.params["W1"])
        pred = nm.y_back(model.predict(xt)[0].double())
        nmse = (pred - test.y.double()).pow(2).mean(1) / var
        for i, (arm, level, lam_) in enumerate(a for a in arms for _ in samples):
            rows.append({"function": name, "arm": arm, "level": level, "lam": lam_, "seed": i % seeds,
                         "test_nmse": float(nmse[i]), "iterations": iterations})  # fmt: skip
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
                     "seeds": r.n, "verdict": r.verdict})  # fmt: skip
    return pd.DataFrame(rows)


def crossing(table: pd.DataFrame) -> pd.DataFrame:
    """Per function and ``lam``: the lowest noise level at which Sobolev no longer decidedly wins
    (NaN when it wins at every level measured), from :func:`advantage`'s table."""
    rows = []
    for (fn, lam), g in table.sort_values("level").groupby(["function", "lam"]):
        lost = g[g.verdict != "win"]
        gone = float(lost.level.min()) if len(lost) else math.nan
        rows.append({"function": fn, "lam": lam, "advantage_gone_at": gone})
    return pd.DataFrame(rows)
