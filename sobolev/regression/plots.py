"""Section 4.1's figures, each from a :class:`~sobolev.regression.compute.Result`: Figure 2 (right) with
every seed, the paired ratios, Figure 3's surfaces (SM Figs. 5-11) and the derivative-weight sweep."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from matplotlib import colors, ticker
from matplotlib import pyplot as plt
from torch import Tensor

from sobolev.common.plotting import PALETTE, finish, style
from sobolev.common.stats import UNDECIDED
from sobolev.core.functions import BenchmarkFunction, get_function
from sobolev.regression.compute import GridResult, Result, core_runs
from sobolev.regression.config import ARM_LABELS, baseline_of

Predictor = Callable[[Tensor], tuple[Tensor, Tensor]]


# An arm's colour is its method's (regular, Sobolev, balanced: one palette for the repository); raw and
# standardised labels of one method differ by marker and line style instead.
ARM_COLORS = {arm: PALETTE[arm.split("-")[0]] for arm in ARM_LABELS}
ARM_MARKERS = {arm: "o" if arm.endswith("raw") else "s" for arm in ARM_LABELS}
ARM_LINES = {arm: "-" if arm.endswith("raw") else "--" for arm in ARM_LABELS}


def figure2(chosen: pd.DataFrame, title: str = "") -> plt.Figure:
    """Figure 2 (right), every seed shown: test MSE / Var(f) per function against training size,
    one column of points per arm (a bar marks the median), on one shared log axis (above 1: no
    better than predicting the mean). The paired ratios are :func:`paired_ratios`."""
    style()
    core = core_runs(chosen)
    functions = sorted(core.function.unique())
    sizes = sorted(core.n_train.unique())
    arms = [a for a in ARM_LABELS if a in set(core.arm)]
    n_panels = len(functions)
    ncol = 4
    nrow = int(np.ceil(n_panels / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.0 * nrow), squeeze=False)
    lo = max(float(core.test_nmse[core.test_nmse > 0].min()) / 2, 1e-12)
    hi = max(float(core.test_nmse.max()) * 2, 2.0)
    width = 0.8 / len(arms)
    for ax, fn in zip(axes.flat, functions, strict=False):
        sub = core[core.function == fn]
        for k, arm in enumerate(arms):
            for j, n in enumerate(sizes):
                v = sub[(sub.arm == arm) & (sub.n_train == n)].test_nmse.to_numpy(float)
                x0 = j - 0.4 + (k + 0.5) * width
                jitter = np.linspace(-width / 4, width / 4, len(v)) if len(v) > 1 else np.zeros(len(v))
                ax.scatter(x0 + jitter, v, s=10, color=ARM_COLORS[arm], marker=ARM_MARKERS[arm], alpha=0.75,
                           label=ARM_LABELS[arm] if j == 0 else None)  # fmt: skip
                if len(v):
                    ax.hlines(np.median(v), x0 - width / 2.2, x0 + width / 2.2, color="black", lw=1.2)
        ax.axhline(1.0, color="grey", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_ylim(lo, hi)
        ax.set_xticks(range(len(sizes)), [f"{s:,}" for s in sizes])
        ax.set_title(fn.replace("_", "-"))
        ax.set_xlabel("training points")
    for row in axes:
        row[0].set_ylabel("test MSE / Var(f)")
    for extra in axes.flat[n_panels:]:
        extra.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if n_panels < nrow * ncol:  # the legend in the empty slot, never over a panel's points
        axes.flat[-1].legend(handles, labels, loc="center", fontsize=9, title="arm")
    else:
        fig.legend(handles, labels, loc="lower center", ncol=len(arms), fontsize=9, frameon=False)
    fig.suptitle(title or "Test MSE relative to the function's variance: every seed (points), median (bar); "
                 "paired ratios: paired_ratios.png")  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / fig.get_figheight()))  # a quarter inch for the title
    return fig


def paired_ratios(cells: pd.DataFrame) -> plt.Figure:
    """Each cell's geometric-mean ratio arm / baseline of the test MSE with its 95% t interval over
    paired seeds: one panel per arm, one row per function, one marker per training size (open:
    undecided), on a log axis shared by the panels."""
    style()
    arms = sorted(cells.arm.unique())
    functions = sorted(cells.function.unique())
    sizes = sorted(cells.n_train.unique())
    markers = dict(zip(sizes, ["o", "s", "^", "D", "v"], strict=False))
    offsets = dict(zip(sizes, np.linspace(-0.25, 0.25, len(sizes)) if len(sizes) > 1 else [0.0], strict=True))
    fig, axes = plt.subplots(1, len(arms), figsize=(5.2 * len(arms), 0.6 * len(functions) + 1.6), squeeze=False,
                             sharex=True, sharey=True)  # fmt: skip
    for ax, arm in zip(axes[0], arms, strict=True):
        for r in cells[cells.arm == arm].itertuples():
            y = functions.index(r.function) + offsets[r.n_train]
            color = ARM_COLORS[r.arm]
            face = "white" if r.verdict == UNDECIDED else color
            ax.errorbar(r.ratio, y, xerr=[[r.ratio - r.low], [r.high - r.ratio]], fmt=markers[r.n_train],
                        color=color, ms=5, capsize=2, lw=1, mfc=face, label="_nolegend_")  # fmt: skip
        ax.axvline(1.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_yticks(range(len(functions)), [f.replace("_", "-") for f in functions])
        ax.set_xlabel(f"test MSE ratio, log scale\n{ARM_LABELS[arm]} / {ARM_LABELS[baseline_of(arm)]}")
        ax.set_title(ARM_LABELS[arm])
    axes[0, 0].invert_yaxis()
    axes[0, 0].set_ylabel("function")
    for n, mk in markers.items():
        axes[0, -1].scatter([], [], marker=mk, color="grey", s=20, label=f"{n:,} points")
    axes[0, -1].scatter([], [], marker="o", facecolor="white", edgecolor="grey", s=20, label="undecided (open)")
    axes[0, -1].legend(fontsize=8, loc="best")
    fig.suptitle("Paired ratio per function and size: geometric mean over seeds, 95% t interval (below 1: arm wins)")
    fig.tight_layout()
    return fig


FLAT_SHARE = 0.2  # a linear colour scale leaving more than this share of the grid in its lowest level is too flat


def colour_scale(truth: np.ndarray, levels: int = 20) -> bool:
    """Whether the truth's contours need a log scale in ``f − min f``: on a linear scale of ``levels`` levels over
    its range, more than :data:`FLAT_SHARE` of the grid would fall in the lowest level (Rosenbrock, Beale, Booth:
    their valleys would be one flat colour and panels of very different error would look alike)."""
    zmin, spread = float(truth.min()), float(truth.max() - truth.min())
    return bool(spread > 0 and np.mean(truth - zmin < spread / levels) > FLAT_SHARE)


def surfaces(
    fn: BenchmarkFunction,
    predictors: dict[str, Predictor],
    train_x: dict[str, Tensor] | None = None,
    resolution: int = 60,
    arrows: int = 14,
    title: str = "",
) -> plt.Figure:
    """Figure 3 / SM Figures 5-11: the function and each model as filled contours on one
    colour scale with a colour bar (top row), each model's own training points overlaid; each model's
    error |model − truth| on one log colour scale shared by the models (middle row: where a model is wrong,
    and by how much, side by side); the direction of each gradient field (bottom row; arrow colour: log₁₀
    of its norm, the truth's scale).

    The colour scale of the top row is the truth's range, logarithmic in ``f − min f`` where a linear
    one would be flat (:func:`colour_scale`).

    Args:
        predictors: label → function mapping raw points ``(B, 2)`` to values ``(B,)`` and
            gradients ``(B, 2)``; the truth is added first.
        train_x: label → that model's training points ``(N, 2)``, overlaid on its panel only.
    """
    style()
    panels = {"truth": lambda x: (fn(x), fn.grad(x)), **predictors}
    (x0, x1), (y0, y1) = fn.domain
    gx, gy = torch.meshgrid(torch.linspace(x0, x1, resolution), torch.linspace(y0, y1, resolution), indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    ax_, ay_ = torch.meshgrid(torch.linspace(x0, x1, arrows), torch.linspace(y0, y1, arrows), indexing="xy")
    coarse = torch.stack([ax_.reshape(-1), ay_.reshape(-1)], 1)
    values = {k: p(grid)[0].reshape(resolution, resolution).numpy() for k, p in panels.items()}
    truth = values["truth"]
    zmin, zmax = float(truth.min()), float(truth.max())  # the truth's range: a model's excursions saturate
    spread = zmax - zmin
    log_scale = colour_scale(truth)
    if log_scale:  # contours of f − min f on geometric levels over four decades
        floor = spread * 1e-4
        levels, norm, shown = np.geomspace(floor, spread, 21), colors.LogNorm(floor, spread), "f − min f (log scale)"
        clipped = {k: np.clip(v - zmin, levels[0], levels[-1]) for k, v in values.items()}  # inside the levels
    else:
        levels, norm, shown = np.linspace(zmin, zmax, 21), None, "f"
        clipped = {k: np.clip(v, levels[0], levels[-1]) for k, v in values.items()}
    errors = {k: np.abs(v - truth) for k, v in values.items() if k != "truth"}
    err_hi = max(spread, 1e-12)  # errors from 1e-4 of the truth's range to all of it, one scale for every model
    err_levels = np.geomspace(err_hi * 1e-4, err_hi, 17)
    fields = {k: p(coarse)[1].reshape(arrows, arrows, -1).numpy() for k, p in panels.items()}
    log_norms = {k: np.log10(np.linalg.norm(g, axis=-1) + 1e-12) for k, g in fields.items()}
    clim = (float(log_norms["truth"].min()), float(log_norms["truth"].max()))  # one colour scale: the truth's
    reds = colors.ListedColormap(plt.get_cmap("Reds")(np.linspace(0.3, 1.0, 256)))  # no near-white arrows
    n = len(panels)
    fig, axes = plt.subplots(3, n, figsize=(3.9 * n, 10.2), squeeze=False)
    for i, label in enumerate(panels):
        ax = axes[0, i]
        cs = ax.contourf(gx.numpy(), gy.numpy(), clipped[label], levels=levels, norm=norm, cmap="viridis")
        points = (train_x or {}).get(label)
        if points is not None:
            ax.scatter(points[:, 0], points[:, 1], s=10, c="white", edgecolors="black", linewidths=0.5)
        ax.set(title=label, xlabel="x₁", ylabel="x₂")
        locator = ticker.LogLocator(numticks=5) if log_scale else ticker.MaxNLocator(5)
        bar = fig.colorbar(cs, ax=ax, fraction=0.046, pad=0.02, ticks=locator)
        if i == n - 1:
            bar.set_label(shown)
        ax1 = axes[1, i]
        if label == "truth":
            ax1.axis("off")
            ax1.text(0.5, 0.5, "|model − truth|\n(each model below its\nsurface; one log scale)", ha="center",
                     va="center", transform=ax1.transAxes)  # fmt: skip
        else:
            err = np.clip(errors[label], err_levels[0], err_levels[-1])
            ce = ax1.contourf(gx.numpy(), gy.numpy(), err, levels=err_levels, norm=colors.LogNorm(*err_levels[[0, -1]]),
                              cmap="magma_r")  # fmt: skip
            ax1.set(title=f"|error|, median {np.median(errors[label]):.2g}", xlabel="x₁", ylabel="x₂")
            ebar = fig.colorbar(ce, ax=ax1, fraction=0.046, pad=0.02, ticks=ticker.LogLocator(numticks=5))
            if i == n - 1:
                ebar.set_label("|model − f| (log scale)")
        ax2 = axes[2, i]
        g = fields[label]
        length = np.linalg.norm(g, axis=-1, keepdims=True)
        unit = g / np.where(length > 0, length, 1)  # direction only: magnitudes span decades
        q = ax2.quiver(ax_.numpy(), ay_.numpy(), unit[..., 0], unit[..., 1], log_norms[label], cmap=reds,
                       clim=clim, scale=arrows * 1.6)  # fmt: skip
        fig.colorbar(q, ax=ax2, fraction=0.046, pad=0.02, label="log10 |∇|" if i == n - 1 else None)
        ax2.set(title="gradient direction (colour: size)", xlabel="x₁", ylabel="x₂")
    fig.suptitle(title or fn.name)
    fig.tight_layout()
    return fig


def median_seed(chosen: pd.DataFrame, function: str, n_train: int, arm: str) -> pd.Series:
    """The chosen run of ``arm`` whose test MSE is the median over seeds (the lower middle one)."""
    sub = chosen[(chosen.function == function) & (chosen.n_train == n_train) & (chosen.arm == arm)]
    sub = core_runs(sub).sort_values("test_mse")
    return sub.iloc[(len(sub) - 1) // 2]


def surfaces_at(
    fn: BenchmarkFunction, result: GridResult, chosen: pd.DataFrame, n_train: int, arms: tuple[str, ...]
) -> plt.Figure:
    """:func:`surfaces` of ``fn`` for each arm's median-seed run at ``n_train``, with that
    run's training points and test MSE in each title."""
    predictors, train_x = {}, {}
    for arm in arms:
        row = median_seed(chosen, fn.name, n_train, arm)
        label = f"{ARM_LABELS[arm]}, seed {int(row.seed)}\ntest MSE {row.test_mse:.3g} ({row.test_nmse:.2g} Var)"
        predictors[label] = lambda x, r=int(row.run): result.predict(r, x)
        train_x[label] = result.training_set(int(row.run)).x  # each arm's median seed has its own sample
    return surfaces(fn, predictors, train_x,
                    title=f"{fn.name}: truth and each arm's median-seed model, {n_train} training points "
                          "(white dots: that model's own training sample)")  # fmt: skip


def weight_sweep(chosen: pd.DataFrame, n_train: int) -> plt.Figure:
    """Test MSE / Var(f) of the swept arms against the derivative weight λ: every seed a point, the median
    a bar, with the baseline's median as a dashed line. No line joins the medians: the main grid's weight
    has the grid's seeds and the sweep's weights fewer (printed under each λ), so neighbouring medians are
    not equally precise; the sweep is shown, not decided."""
    style()
    sub = chosen[chosen.n_train == n_train]
    swept = sorted({a for a in sub.arm if (sub[sub.arm == a].weight.nunique() > 1)})
    functions = sorted(sub.function.unique())
    ncol = min(4, len(functions))
    nrow = int(np.ceil(len(functions) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.8 * ncol, 3.3 * nrow + 0.6), squeeze=False)
    counts: set[int] = set()
    offsets = dict(zip(swept, np.linspace(-0.08, 0.08, len(swept)) if len(swept) > 1 else [0.0], strict=True))
    for ax, fn in zip(axes.flat, functions, strict=False):
        for arm in swept:
            s = sub[(sub.function == fn) & (sub.arm == arm)]
            shift = 10 ** offsets[arm]  # arms side by side at each λ on the log axis
            ax.scatter(s.weight * shift, s.test_nmse, s=10, color=ARM_COLORS[arm], marker=ARM_MARKERS[arm], alpha=0.6,
                       label=ARM_LABELS[arm])  # fmt: skip
            med = s.groupby("weight").test_nmse.median()
            seeds = s.groupby("weight").seed.nunique()
            counts |= set(seeds.tolist())
            for w, m in med.items():
                ax.hlines(m, w * shift / 1.12, w * shift * 1.12, color="black", lw=1.4)
            ticks = seeds
            base_arm = f"regular-{arm.split('-')[1]}"
            base = sub[(sub.function == fn) & (sub.arm == base_arm)]
            if len(base):
                ax.axhline(float(base.test_nmse.median()), ls=ARM_LINES[base_arm], color=ARM_COLORS[base_arm],
                           label=f"{ARM_LABELS[base_arm]}: median of {base.seed.nunique()} seeds")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xticks(list(ticks.index), [f"{w:g}\n({k} seeds)" for w, k in ticks.items()])
        ax.minorticks_off()  # after the log scale, which would replace these ticks
        ax.set_yscale("log")
        ax.set_title(fn.replace("_", "-"))
        ax.set_xlabel("derivative weight λ (log)")
    for ax in axes.flat[len(functions) :]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel("test MSE / Var(f)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=9, frameon=False)
    mixed = "; medians over different seed counts (under each λ): not joined" if len(counts) > 1 else ""
    fig.suptitle(f"Derivative weight λ, {n_train} training points: every seed a point, the median a bar{mixed}")
    fig.tight_layout(rect=(0, 0.6 / fig.get_figheight(), 1, 1))
    return fig


def figures(result: Result, names: list[str] | None = None) -> dict[str, plt.Figure]:
    """Section 4.1's figures by file name (``names``: only those): ``fig2_right``,
    ``paired_ratios``, ``weight_sweep_n<n>`` per swept size, and ``surfaces_<function>`` at the
    smallest size for the raw regular and Sobolev arms and the balanced arm (those present)."""
    cfg, chosen = result.cfg, result.chosen
    makers = {
        "fig2_right": lambda: figure2(chosen),
        "paired_ratios": lambda: paired_ratios(result.cells),
        **{f"weight_sweep_n{n}": (lambda n=n: weight_sweep(chosen, n)) for n in cfg.sweep_sizes},
    }
    shown = tuple(a for a in ("regular-raw", "sobolev-raw", "balanced-standard") if a in cfg.arms)
    for name in cfg.functions:
        makers[f"surfaces_{name}"] = lambda name=name: surfaces_at(
            get_function(name), result.grid, chosen, min(cfg.sizes), shown
        )
    return {name: finish(make()) for name, make in makers.items() if names is None or name in names}
