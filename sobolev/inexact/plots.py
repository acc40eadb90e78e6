"""Section 5.5's figures, each from a :class:`~sobolev.inexact.compute.Result`: the advantage
against label noise, the error against the evaluation budget, and the derivative labels' error."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt

from sobolev.common.plotting import PALETTE, finish, style
from sobolev.inexact.compute import JENN_THRESHOLD, LABELS, METHODS, Result, advantage, percent

COLORS = {m: PALETTE[m.removesuffix("_shuffled")] for m in METHODS}  # a shuffled control in its source's colour
STYLES = {m: "--" if m.endswith("_shuffled") else "-" for m in METHODS}


LAM_COLORS = ("#DD8452", "#C44E52", "#937860", "#DA8BC3")


# --- figures -------------------------------------------------------------------------------------
def advantage_figure(noise_runs: pd.DataFrame) -> plt.Figure:
    """Sobolev / regular test error against the labels' relative noise, one panel per function: every
    seed's paired ratio (dots), the geometric mean and its 95% t interval (bars), one colour per λ."""
    style()
    functions = list(dict.fromkeys(noise_runs.function))
    adv = advantage(noise_runs)
    levels = sorted(adv.level.unique())
    pos = {v: i for i, v in enumerate(levels)}
    lams = sorted(adv.lam.unique(), reverse=True)
    cols = min(len(functions), 4)
    rows = math.ceil(len(functions) / cols)
    # at least 6 inches wide: the two-line title and the legend below must fit over a single panel too
    fig, axes = plt.subplots(rows, cols, figsize=(max(3.6 * cols, 6.0), 3.3 * rows), squeeze=False)
    regular = noise_runs[noise_runs.arm == "regular"].set_index(["function", "seed"]).test_nmse
    for ax, fn in zip(axes.flat, functions, strict=False):
        sob = noise_runs[(noise_runs.arm == "sobolev") & (noise_runs.function == fn)]
        for k, lam in enumerate(lams):
            shift = (k - (len(lams) - 1) / 2) * 0.22
            color = LAM_COLORS[k % len(LAM_COLORS)]
            s = sob[sob.lam == lam]
            ratio = s.test_nmse.to_numpy() / regular.loc[fn].loc[s.seed].to_numpy()
            x = np.array([pos[v] for v in s.level]) + shift
            ax.scatter(x, ratio, s=6, color=color, alpha=0.35, lw=0)
            a = adv[(adv.function == fn) & (adv.lam == lam)].sort_values("level")
            xa = np.array([pos[v] for v in a.level]) + shift
            ax.errorbar(xa, a.ratio, yerr=[a.ratio - a.low, a.high - a.ratio], fmt="o-", ms=3.5, lw=1, capsize=2,
                        color=color, label=f"Sobolev, λ = {lam:g}")  # fmt: skip
        ax.axhline(1, color="k", lw=0.8, ls="--")
        ax.axvline(pos.get(JENN_THRESHOLD, np.nan), color="grey", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_xticks(range(len(levels)), [percent(v) for v in levels], fontsize=8, rotation=45)
        ax.set_title(fn, fontsize=9)
    for ax in axes.flat[len(functions) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("test error: Sobolev / regular")
    for ax in axes[-1, :]:
        ax.set_xlabel("relative noise of the derivative labels")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    seeds = noise_runs.seed.nunique()
    fig.suptitle(f"Below 1: Sobolev more accurate than regular training\n{seeds} paired seeds (dots), geometric mean "
                 f"with 95% t interval; dotted: JENN's ~{percent(JENN_THRESHOLD)}", fontsize=9)  # fmt: skip
    fig.tight_layout(rect=(0, 0.4 / fig.get_figheight(), 1, 1))
    return fig


def budget_figure(budget_runs: pd.DataFrame) -> plt.Figure:
    """Test error against the evaluation budget m, one panel per function (columns: dimension): every
    seed (dots) and the median (line) of each use of the budget."""
    style()
    dims = sorted(budget_runs.dim.unique())
    # one row per family (Ackley, Rosenbrock, ...), one column per dimension: a row compares one function across d
    family = budget_runs.function.str.replace(r"_\d+d$", "", regex=True)
    families = list(dict.fromkeys(family))
    where = {(f, d): fn for f, d, fn in zip(family, budget_runs.dim, budget_runs.function, strict=True)}
    rows = len(families)
    fig, axes = plt.subplots(rows, len(dims), figsize=(3.7 * len(dims), 2.9 * rows), squeeze=False)
    for j, d in enumerate(dims):
        for i in range(rows):
            ax = axes[i, j]
            if (families[i], d) not in where:
                ax.set_visible(False)
                continue
            fn = where[(families[i], d)]
            sub = budget_runs[budget_runs.function == fn]
            for method in METHODS:
                s = sub[sub.method == method]
                if s.empty:
                    continue
                ax.scatter(s.budget * (1 + 0.06 * (METHODS.index(method) - 1.5)), s.test_nmse, s=6, alpha=0.35,
                           color=COLORS[method], lw=0)  # fmt: skip
                med = s.groupby("budget").test_nmse.median()
                ax.plot(med.index, med.values, marker="o", ls=STYLES[method], ms=3, lw=1.2, color=COLORS[method],
                        label=LABELS[method])  # fmt: skip
            ax.axhline(1, color="k", lw=0.8, ls="--", label="predicting the mean (test error = Var f)")
            _budget_axis(ax, sorted(sub.budget.unique()))
            ax.set_yscale("log")
            ax.set_title(f"{fn} (d = {d})", fontsize=9)
            ax.set_xlabel("black-box evaluations m")
    for ax in axes.flat:
        ax.set_ylabel("test MSE / Var f")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle("One budget of m evaluations, each use of it: every seed (dots), median (lines); rows: a function, "
                 "columns: its dimension")  # fmt: skip
    fig.tight_layout(rect=(0, (0.3 * -(-len(labels) // 3) + 0.1) / fig.get_figheight(), 1, 1))
    return fig


def label_error_figure(budget_runs: pd.DataFrame) -> plt.Figure:
    """Relative RMS error of the estimated derivative labels against m: k-NN estimates from the samples (left)
    and forward differences (right), one line per dimension (median over functions and seeds), each dimension
    with its own marker and a small offset, so lines that coincide stay visible."""
    style()
    methods = [m for m in ("knn", "finite_differences") if (budget_runs.method == m).any()]
    dims = sorted(budget_runs.dim.unique())
    fig, axes = plt.subplots(1, max(1, len(methods)), figsize=(5.0 * max(1, len(methods)), 3.8), squeeze=False,
                             sharey=True)  # fmt: skip
    markers = ("o", "s", "^", "D", "v")
    for ax, method in zip(axes[0], methods, strict=False):
        for k, d in enumerate(dims):
            s = budget_runs[(budget_runs.method == method) & (budget_runs.dim == d)]
            if s.empty:
                continue
            med = s.groupby("budget").gradient_error.median()
            shift = 1.06 ** (k - (len(dims) - 1) / 2)
            ax.plot(med.index * shift, med.values, "-", marker=markers[k % len(markers)], ms=5, mfc="none",
                    color=plt.cm.viridis(0.8 * k / max(1, len(dims) - 1)), label=f"d = {d}")  # fmt: skip
        _budget_axis(ax, sorted(budget_runs.budget.unique()))
        ax.set_yscale("log")
        ax.set(xlabel="black-box evaluations m", title=LABELS.get(method, method))
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), title="dimension")
    axes[0, 0].set_ylabel("relative RMS error of the labels")
    fig.suptitle("How wrong the estimated derivatives are (median over functions and seeds)")
    fig.tight_layout()
    return fig


def _budget_axis(ax: plt.Axes, budgets: list[int]) -> None:
    """A log x axis labelled at the budgets only (no minor labels to collide)."""
    ax.set_xscale("log")
    ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())


def figures(result: Result, names: list[str] | None = None) -> dict[str, plt.Figure]:
    """Section 5.5's figures by file name (``names``: only those): ``advantage_vs_noise``,
    ``error_vs_budget`` and ``label_error``."""
    makers = {
        "advantage_vs_noise": lambda: advantage_figure(result.noise_runs),
        "error_vs_budget": lambda: budget_figure(result.budget_runs),
        "label_error": lambda: label_error_figure(result.budget_runs),
    }
    return {name: finish(make()) for name, make in makers.items() if names is None or name in names}
