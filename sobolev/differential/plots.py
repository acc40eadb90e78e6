"""The differential-ML section's figures, each from a :class:`~sobolev.differential.compute.Result`:
error against training size (every seed) and one ensemble's predictions against the truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib import pyplot as plt

from sobolev.common.plotting import style
from sobolev.differential.compute import REFERENCE, Result
from sobolev.differential.simulators import BachelierBasket, make_simulator
from sobolev.differential.training import Ensemble

COLORS = {"standard": "#4C72B0", "differential": "#DD8452"}


def error_curves(runs: pd.DataFrame) -> plt.Figure:
    """RMSE × 100 against training size, every seed a point and the median a line, for both methods;
    rows: value and first-asset delta; columns: problems (log-log). Collapsed runs (``collapsed``) are
    ringed in red: they stay in the medians, and the reader sees which points they are."""
    style()
    problems = list(dict.fromkeys(runs.problem))
    fig, axes = plt.subplots(2, len(problems), figsize=(3.3 * len(problems), 5.6), squeeze=False)
    for j, name in enumerate(problems):
        sub = runs[runs.problem == name]
        for i, q in enumerate(("value", "delta")):
            ax = axes[i, j]
            ringed = False
            for method, color in COLORS.items():
                m = sub[sub.method == method]
                ax.scatter(m.n_train, m[f"{q}_rmse"], s=10, color=color, alpha=0.6)
                bad = m[m.collapsed]  # near-constant fits: kept in the medians, ringed so the reader sees them
                ax.scatter(bad.n_train, bad[f"{q}_rmse"], s=45, facecolor="none", edgecolor="firebrick", lw=1,
                           zorder=4, label="collapsed run" if len(bad) and not ringed else None)  # fmt: skip
                ringed |= len(bad) > 0
                med = m.groupby("n_train")[f"{q}_rmse"].median()
                ax.plot(med.index, med.values, "-o", color=color, ms=3, label=method)
            if q == "value":
                ref = [(n, v) for (p, n), v in REFERENCE.items() if p == name]
                for k, method in enumerate(("standard", "differential")):
                    if ref:
                        ax.scatter([n for n, _ in ref], [v[k] for _, v in ref], marker="x", color=COLORS[method],
                                   label=f"reference ({method}, 1 run)")  # fmt: skip
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{name}: {q}", fontsize=9)
            ax.set_xlabel("training samples")
        axes[0, j].legend(fontsize=6)
    axes[0, 0].set_ylabel("value RMSE × 100")
    axes[1, 0].set_ylabel("delta (asset 1) RMSE × 100")
    fig.suptitle("Test error against training size: every seed (points), median (line)")
    fig.tight_layout()
    return fig


def predicted_vs_true(sim: BachelierBasket, shown: tuple[Ensemble, torch.Tensor], seeds: int) -> plt.Figure:
    """Price and first-asset delta against the basket value, truth and seed 0 of each method."""
    style()
    ens, test = shown
    value, deriv = ens.predict(test)
    basket = (test @ sim.weights).numpy()
    order = np.argsort(basket)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for k, (ax, truth, pred) in enumerate(((axes[0], sim.price(test), value), (axes[1], sim.delta(test)[:, 0],
                                                                               deriv[:, :, 0]))):  # fmt: skip
        for method, m in (("standard", 0), ("differential", seeds)):
            ax.scatter(basket, pred[m].numpy(), s=2, alpha=0.4, color=COLORS[method], label=f"{method} (seed 0)")
        ax.plot(basket[order], truth.numpy()[order], "k-", lw=1, label="truth")
        ax.set_xlabel("basket value Σ aᵢ Sᵢ at T₁")
        ax.set_ylabel(["option price at T₁", "∂ price / ∂ S₁"][k])
        ax.set_title(["price", "delta of asset 1"][k])
        ax.legend(fontsize=7, markerscale=4)
    fig.suptitle(f"Bachelier basket, d = {sim.dim}, {ens.model.n_models // 2} seeds per method; seed 0 shown")
    fig.tight_layout()
    return fig


def figures(result: Result, names: list[str] | None = None) -> dict[str, plt.Figure]:
    """The section's figures by file name (``names``: only those): ``error_by_size`` and, when an
    ensemble was kept for it, ``predictions_<problem>``."""
    cfg = result.cfg
    makers = {"error_by_size": lambda: error_curves(result.runs)}
    if result.shown is not None:
        makers[f"predictions_{cfg.shown}"] = lambda: predicted_vs_true(
            make_simulator(cfg.shown, cfg.market_seed), result.shown, cfg.seeds
        )
    return {name: make() for name, make in makers.items() if names is None or name in names}
