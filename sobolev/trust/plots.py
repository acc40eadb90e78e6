"""The relative-trust section's figures, each from a :class:`~sobolev.trust.compute.Result`: the
Sobolev / regular ratio per optimiser, the learning-rate sweep, weight norms and relative trust."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt

from sobolev.common.plotting import PALETTE, finish, style
from sobolev.common.stats import UNDECIDED
from sobolev.trust.compute import ADAM, FROMAGE, NOTHING_LEARNS, WEIGHTS, Result, run_norms

ARM_COLORS = {ADAM: PALETTE["adam"], FROMAGE: PALETTE["fromage"]}
OPTIMISER_COLORS = {name: PALETTE[name] for name in ("adam", "fromage", "lars", "lars-momentum")}
OPTIMISER_LINES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D")]


def ratio_figure(cells: pd.DataFrame) -> plt.Figure:
    """Sobolev / regular test MSE per function (geometric mean over paired seeds, 95% t
    interval), under tuned Adam and default Fromage, one panel per data scale and size; open = undecided."""
    style()
    panels = sorted(set(zip(cells.normalisation, cells.n_train, strict=True)))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.6), squeeze=False, sharey=True)
    functions = sorted(set(cells.function))
    for ax, (norm, n) in zip(axes[0], panels, strict=True):
        for k, (arm, color) in enumerate(ARM_COLORS.items()):
            sub = cells[(cells.normalisation == norm) & (cells.n_train == n) & (cells.arm == arm)]
            sub = sub.set_index("function").reindex(functions)
            xs = np.arange(len(functions)) + (k - 0.5) * 0.3
            ax.errorbar(xs, sub.ratio, yerr=[sub.ratio - sub.low, sub.high - sub.ratio], fmt="none", ecolor=color)
            decided = (sub.verdict != UNDECIDED).to_numpy()
            ax.scatter(xs[decided], sub.ratio[decided], color=color, label=arm, zorder=3)
            ax.scatter(xs[~decided], sub.ratio[~decided], facecolor="white", edgecolor=color, zorder=3)
        ax.axhline(1, color="black", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(functions)), functions, rotation=30)
        ax.set_xlabel("function")
        ax.set_title(f"{norm} data, n = {n}")
        ax.set_ylabel("test MSE, Sobolev / regular (log)")
    axes[0, 0].legend(title="optimiser", fontsize=8)
    fig.suptitle("Below 1: Sobolev better (filled: the interval excludes 1)")
    fig.tight_layout()
    return fig


def sweep_figure(runs: pd.DataFrame, errors: pd.DataFrame, factor: float, default_lr: float) -> plt.Figure:
    """Normalised test MSE against learning rate, per optimiser (median line, every seed a point);
    rows: data scale and loss; columns: sweep functions; dashed: the good threshold (``factor`` × best)."""
    style()
    sweep = runs[runs.sweep & ~runs.diverged]
    functions = sorted(set(sweep.function))
    rows = sorted(set(zip(sweep.normalisation, sweep.method, strict=True)))
    fig, axes = plt.subplots(len(rows), len(functions), figsize=(4 * len(functions), 3 * len(rows)), squeeze=False,
                             sharex=True)  # fmt: skip
    for i, (norm, method) in enumerate(rows):
        for j, fn in enumerate(functions):
            ax = axes[i, j]
            pick = (sweep.normalisation == norm) & (sweep.method == method) & (sweep.function == fn)
            mine = sweep[pick]
            med = errors[(errors.normalisation == norm) & (errors.method == method) & (errors.function == fn)]
            for k, (opt, color) in enumerate(OPTIMISER_COLORS.items()):
                m, e = mine[mine.optimiser == opt], med[(med.optimiser == opt) & np.isfinite(med.median_nmse)]
                style_ = OPTIMISER_LINES[k % len(OPTIMISER_LINES)]  # optimisers that coincide stay visible
                ax.scatter(m.lr, m.test_nmse, s=8, color=color, alpha=0.5, marker=style_[1])
                ax.plot(e.lr, e.median_nmse, linestyle=style_[0], marker=style_[1], ms=4 + k, mfc="none",
                        lw=1 + 0.4 * k, color=color, label=opt, zorder=2 + k)  # fmt: skip
            best = med.median_nmse.min()
            ax.axhline(factor * best, ls="--", color="grey", lw=0.8)
            ax.axvline(default_lr, ls=":", color="black", lw=0.8)
            # nothing learns, so no rate is "good" (and the claims leave it out): said in the title, off the curves
            nothing = f"\nnothing learns (best median {best:.2f} Var f)" if best >= NOTHING_LEARNS else ""
            ax.set(xscale="log", yscale="log", title=f"{fn}, {norm}, {method}{nothing}", xlabel="learning rate",
                   ylabel="test MSE / Var f")  # fmt: skip
            if nothing:
                ax.title.set_color("firebrick")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    seeds = int(sweep.groupby(["function", "normalisation", "method", "optimiser", "lr"]).seed.nunique().min())
    fig.suptitle(f"Below the dashed line: within {factor:g}x of the best any optimiser reached (dotted: η = "
                 f"{default_lr:g}); lines: medians of {seeds} seeds, points: every seed")  # fmt: skip
    fig.tight_layout(rect=(0, 0.5 / fig.get_figheight(), 1, 1))
    return fig


def norm_figure(runs: pd.DataFrame, norms: pd.DataFrame) -> plt.Figure:
    """Each weight matrix's norm relative to its initial norm over training (median over runs,
    thin lines: every run), per data scale (rows) and optimiser variant (columns); constant rate."""
    style()
    table = norms.merge(run_norms(runs, norms)[["variant", "normalisation"]], left_on="run", right_index=True)
    variants, scales = sorted(set(table.variant)), sorted(set(table.normalisation))
    fig, axes = plt.subplots(len(scales), len(variants), figsize=(4.2 * len(variants), 3.2 * len(scales)),
                             squeeze=False, sharey=True)  # fmt: skip
    palette = dict(zip(WEIGHTS, sns.color_palette("colorblind", len(WEIGHTS)), strict=True))
    for i, norm in enumerate(scales):
        for ax, variant in zip(axes[i], variants, strict=True):
            sub = table[(table.variant == variant) & (table.normalisation == norm)]
            for (_, tensor), g in sub.groupby(["run", "tensor"]):
                ax.plot(g.step, g.relative_norm, color=palette[tensor], lw=0.4, alpha=0.3)
            med = sub.groupby(["tensor", "step"]).relative_norm.median().reset_index()
            for tensor, g in med.groupby("tensor"):
                ax.plot(g.step, g.relative_norm, color=palette[tensor], lw=2, label=tensor)
            ax.axhline(1, color="black", lw=0.8)
            ax.set(yscale="log", title=f"{variant}, {norm} data", xlabel="update", ylabel="‖W‖ / ‖W at start‖")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def trust_figure(table: pd.DataFrame) -> plt.Figure:
    """Relative change of the output and of the input gradient against the relative perturbation ε
    of every layer (every network a point, median line), with the bound ∏(1+ε) − 1; one panel per
    direction (random, and the training loss's gradient: a Fromage step of size ε)."""
    style()
    directions = sorted(set(table.direction))
    fig, axes = plt.subplots(1, len(directions), figsize=(5 * len(directions), 3.8), squeeze=False, sharey=True)
    colors = {"output": "#0173B2", "input_gradient": "#D55E00"}  # quantities, not methods
    for ax, d in zip(axes[0], directions, strict=True):
        sub = table[table.direction == d]
        for q, color in colors.items():
            jitter = np.exp(np.random.default_rng(0).uniform(-0.08, 0.08, len(sub)))
            ax.scatter(sub.eps * jitter, sub[q], s=5, alpha=0.3, color=color)
            med = sub.groupby("eps")[q].median()
            ax.plot(med.index, med.values, "-o", ms=3, color=color, label=q.replace("_", " "))
        b = sub.groupby("eps").bound.first()
        ax.plot(b.index, b.values, "k--", label="bound ∏(1+ε) − 1")
        ax.set(xscale="log", yscale="log", title=f"{d} direction", xlabel="relative perturbation ε per layer",
               ylabel="relative change")  # fmt: skip
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def figures(result: Result, names: list[str] | None = None) -> dict[str, plt.Figure]:
    """The section's figures by file name (``names``: only those): ``sobolev_ratio_by_optimiser``,
    ``learning_rate_sweep``, ``weight_norms`` and ``relative_trust``."""
    cfg, runs = result.cfg, result.trained.runs
    makers = {
        "sobolev_ratio_by_optimiser": lambda: ratio_figure(result.cells),
        "learning_rate_sweep": lambda: sweep_figure(runs, result.errors, cfg.good_factor, cfg.fromage_lr),
        "weight_norms": lambda: norm_figure(runs, result.trained.norms),
        "relative_trust": lambda: trust_figure(result.trust_table),
    }
    return {name: finish(make()) for name, make in makers.items() if names is None or name in names}
