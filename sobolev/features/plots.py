"""The feature-update section's figures, each from a :class:`~sobolev.features.compute.Result`: error
and Sobolev / regular ratio against feature updates, the phase diagram and the digits students."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt

from sobolev.common.plotting import METHOD_COLORS, finish, style
from sobolev.common.stats import UNDECIDED
from sobolev.features.compute import METHODS, MIN_EFFECT, Result, final


def curves_figure(runs: pd.DataFrame) -> plt.Figure:
    """Test error at the full budget against the number of anchors (feature sets), per function: every
    seed a point, the median a line, both losses; log-log."""
    style()
    end = final(runs)
    functions = sorted(set(end.function))
    cols = min(4, len(functions))
    rows_ = -(-len(functions) // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(3.6 * cols, 3.1 * rows_), squeeze=False)
    for ax, fn in zip(axes.flat, functions, strict=False):
        sub = end[end.function == fn]
        for method in METHODS:
            m = sub[sub.method == method]
            ax.scatter(m.rounds, m.test_nmse, s=8, alpha=0.4, color=METHOD_COLORS[method])
            med = m.groupby("rounds").test_nmse.median()
            ax.plot(med.index, med.values, "-o", ms=3, color=METHOD_COLORS[method], label=method)
        ax.set(xscale="log", yscale="log", title=fn, xlabel="anchors (feature sets) in training",
               ylabel="test MSE / Var f")  # fmt: skip
    for ax in axes.flat[len(functions) :]:
        ax.axis("off")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(METHODS), fontsize=9, frameon=False)
    fig.suptitle("Left end: features frozen at initialisation (NTK); right end: ordinary training (K = 1)")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def ratio_figure(table: pd.DataFrame) -> plt.Figure:
    """Sobolev / regular test MSE against the number of anchors with 95% intervals, one panel per
    function (shared log axes); filled markers: the interval excludes 1, open: it does not. The claims
    count an effect only beyond :data:`~sobolev.features.compute.MIN_EFFECT` (dotted lines) and only where
    either arm fits better than the mean (crossed markers: neither does)."""
    style()
    functions = sorted(set(table.function))
    ncol = min(4, len(functions))
    nrow = int(np.ceil(len(functions) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.7 * nrow + 0.9), squeeze=False, sharex=True,
                             sharey=True)  # fmt: skip
    for ax, fn in zip(axes.flat, functions, strict=False):
        g = table[table.function == fn].sort_values("rounds")
        ax.plot(g.rounds, g.ratio, "-", color="0.3")
        ax.fill_between(g.rounds, g.low, g.high, color="0.3", alpha=0.15)
        excludes = (g.interval_verdict != UNDECIDED).to_numpy()
        fits = g.fits.to_numpy(bool)
        ax.scatter(g.rounds[excludes & fits], g.ratio[excludes & fits], color="0.1", zorder=3,
                   label="interval excludes 1")  # fmt: skip
        ax.scatter(g.rounds[~excludes & fits], g.ratio[~excludes & fits], facecolor="white", edgecolor="0.1",
                   zorder=3, label="interval includes 1")  # fmt: skip
        ax.scatter(g.rounds[~fits], g.ratio[~fits], marker="x", color="0.1", zorder=3,
                   label="neither arm beats the mean")  # fmt: skip
        ax.axhline(1, color="black", lw=0.8)
        for level in (1 - MIN_EFFECT, 1 / (1 - MIN_EFFECT)):
            ax.axhline(level, color="black", lw=0.8, ls=":")
        ax.set(xscale="log", yscale="log", title=fn.replace("_", "-"), xlabel="anchors (log)")
    for ax in axes.flat[len(functions) :]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel("test MSE ratio,\nSobolev / regular")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle(
        f"Sobolev / regular against feature sets seen: paired ratio with its 95% t interval (below 1: "
        f"Sobolev better;\ndotted: ±{MIN_EFFECT:.0%}, the smallest difference the claims count as an effect)"
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def phase_figure(phase: pd.DataFrame, function: str) -> plt.Figure:
    """Heat maps of the median test error over training time (rows) and K (columns), per loss, and
    their ratio Sobolev / regular (log10)."""
    style()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    grids = {m: phase[phase.method == m].pivot(index="step", columns="every", values="test_nmse") for m in METHODS}
    vmin = np.log10(min(g.min().min() for g in grids.values()))
    vmax = np.log10(max(g.max().max() for g in grids.values()))
    for ax, method in zip(axes[:2], METHODS, strict=True):
        sns.heatmap(np.log10(grids[method]), ax=ax, vmin=vmin, vmax=vmax, cmap="viridis", annot=True, fmt=".1f",
                    cbar_kws={"label": "log10 test MSE / Var f"})  # fmt: skip
        ax.set(title=f"{function}, {method}", xlabel="K (updates between feature updates)", ylabel="update")
    ratio = np.log10(grids["sobolev"] / grids["regular"])
    lim = float(np.nanmax(np.abs(ratio.to_numpy())))
    shown = ratio.round(2) + 0.0  # + 0.0 turns a rounded -0.0 into 0.0: no "-0.00" in the cells
    sns.heatmap(ratio, ax=axes[2], cmap="coolwarm", center=0, vmin=-lim, vmax=lim, annot=shown, fmt=".2f",
                cbar_kws={"label": "log10 Sobolev / regular"})  # fmt: skip
    axes[2].set(title="Sobolev / regular (blue: Sobolev better)", xlabel="K", ylabel="update")
    fig.tight_layout()
    return fig


def digits_figure(runs: pd.DataFrame, teacher_accuracy: float) -> plt.Figure:
    """Digits students at the full budget against the number of anchors: test KL to the teacher and
    test accuracy (every seed a point, the median a line), both distillation losses."""
    style()
    end = final(runs)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, column, label in ((axes[0], "test_kl", "test KL(teacher ‖ student)"),
                              (axes[1], "test_accuracy", "test accuracy (labels)")):  # fmt: skip
        for method in METHODS:
            m = end[end.method == method]
            ax.scatter(m.rounds, m[column], s=10, alpha=0.5, color=METHOD_COLORS[method])
            med = m.groupby("rounds")[column].median()
            ax.plot(med.index, med.values, "-o", ms=3, color=METHOD_COLORS[method], label=f"{method} distillation")
        ax.set(xscale="log", xlabel="anchors (feature sets) in training", ylabel=label)
    axes[0].set_yscale("log")
    axes[1].axhline(teacher_accuracy, ls="--", color="grey", label="teacher")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def figures(result: Result, names: list[str] | None = None) -> dict[str, plt.Figure]:
    """The section's figures by file name (``names``: only those): ``error_by_feature_updates``,
    ``sobolev_ratio_by_feature_updates``, ``digits_students`` and ``phase_diagram``."""
    cfg = result.cfg
    makers = {
        "error_by_feature_updates": lambda: curves_figure(result.runs),
        "sobolev_ratio_by_feature_updates": lambda: ratio_figure(result.table),
        "digits_students": lambda: digits_figure(result.digit_runs, result.teacher["teacher_test_accuracy"]),
        "phase_diagram": lambda: phase_figure(result.phase, cfg.phase_function),
    }
    return {name: finish(make()) for name, make in makers.items() if names is None or name in names}
