"""The differential-ML section's figures, each from a :class:`~sobolev.differential.compute.Result`:
error against training size (every seed) and one ensemble's predictions against the truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib import pyplot as plt

from sobolev.common.plotting import PALETTE, finish, style
from sobolev.differential.compute import REFERENCE, Result
from sobolev.differential.simulators import BachelierBasket, make_simulator
from sobolev.differential.training import Ensemble

COLORS = {m: PALETTE[m] for m in ("standard", "differential")}
SHIFT = {"standard": 1 / 1.07, "differential": 1.07}  # the methods side by side at each size (log axis)


def error_curves(runs: pd.DataFrame) -> plt.Figure:
    """RMSE × 100 against training size, every seed a point and the median a line, for both methods side by
    side; rows: value and first-asset delta; columns: problems (log-log). Collapsed runs (``collapsed``) are
    drawn as red diamonds, each its own, spread across its method's column: they stay in the medians, and the
    reader sees which and how many points they are."""
    style()
    problems = list(dict.fromkeys(runs.problem))
    fig, axes = plt.subplots(2, len(problems), figsize=(3.6 * len(problems), 6.4), squeeze=False)
    for j, name in enumerate(problems):
        sub = runs[runs.problem == name]
        for i, q in enumerate(("value", "delta")):
            ax = axes[i, j]
            for method, color in COLORS.items():
                m = sub[sub.method == method]
                good, bad = m[~m.collapsed], m[m.collapsed]
                ax.scatter(good.n_train * SHIFT[method], good[f"{q}_rmse"], s=10, color=color, alpha=0.6,
                           label=f"{method}, every seed")  # fmt: skip
                if len(bad):  # near-constant fits: kept in the medians, each drawn apart so the reader counts them
                    spread = bad.groupby("n_train").cumcount().to_numpy() - (len(bad) - 1) / 2
                    ax.scatter(bad.n_train * SHIFT[method] * 1.04**spread, bad[f"{q}_rmse"], s=28, marker="D",
                               color="firebrick", zorder=4, label="collapsed run")  # fmt: skip
                med = m.groupby("n_train")[f"{q}_rmse"].median()
                ax.plot(med.index * SHIFT[method], med.values, "-o", color=color, ms=3, label=f"{method}, median")
            if q == "value":
                ref = [(n, v) for (p, n), v in REFERENCE.items() if p == name]
                for k, method in enumerate(("standard", "differential")):
                    if ref:
                        ax.scatter([n * SHIFT[method] for n, _ in ref], [v[k] for _, v in ref], marker="x", s=40,
                                   color=COLORS[method], label=f"reference ({method}, 1 run)")  # fmt: skip
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{name}: {q}")
            ax.set_xlabel("training samples")
    axes[0, 0].set_ylabel("value RMSE × 100")
    axes[1, 0].set_ylabel("delta (asset 1) RMSE × 100")
    labels = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            labels.setdefault(label, handle)  # every entry once, from whichever panel has it
    fig.legend(list(labels.values()), list(labels), loc="lower center", ncol=4, fontsize=9, frameon=False)
    fig.suptitle("Test error against training size: every seed (points), median (line)")
    fig.tight_layout(rect=(0, (0.25 * -(-len(labels) // 4) + 0.15) / fig.get_figheight(), 1, 1))
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
            ax.scatter(basket, pred[m].numpy(), s=2, alpha=0.4, color=COLORS[method],
                       label=f"{method} (seed 0)" if k == 0 else None)  # fmt: skip
        ax.plot(basket[order], truth.numpy()[order], "k-", lw=1, label="truth" if k == 0 else None)
        # predictions that are all positive and span decades (far out of the money): a linear axis hides the small ones
        predicted = np.concatenate([pred[0].numpy().ravel(), pred[seeds].numpy().ravel()])
        if (predicted > 0).all() and np.log10(predicted.max() / predicted.min()) > 2:
            ax.set_yscale("log")
        ax.set_xlabel("basket value Σ aᵢ Sᵢ at T₁")
        ax.set_ylabel(["option price at T₁", "∂ price / ∂ S₁"][k])
        ax.set_title(["price", "delta of asset 1"][k])
    fig.legend(loc="lower center", ncol=3, fontsize=9, markerscale=4, frameon=False)
    fig.suptitle(f"Bachelier basket, d = {sim.dim}, {ens.model.n_models // 2} seeds per method; seed 0 shown")
    fig.tight_layout(rect=(0, 0.4 / fig.get_figheight(), 1, 1))
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
    return {name: finish(make()) for name, make in makers.items() if names is None or name in names}
