"""Figures for the notebooks (seaborn styling, honest log axes, mean ± std over seeds)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from torch import Tensor

from sobolev.functions import BenchmarkFunction

METHOD_COLORS = {"regular": "#4C72B0", "sobolev": "#DD8452"}
Predictor = Callable[[Tensor], tuple[Tensor, Tensor]]


def style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)


def save(fig: plt.Figure, path: str | Path | None) -> None:
    """Save ``fig`` as PNG (``None``: do nothing, e.g. in nbval runs)."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")


def error_by_size(summary: pd.DataFrame, value: str = "test_mse", title: str = "") -> plt.Figure:
    """Figure 2 (right): one panel per function, test error against training-set size.

    Points are means over seeds, bars ± one standard deviation (clipped at the panel's
    floor, since a log axis cannot show negative values); each panel has its own log
    scale because the functions' ranges differ by many orders of magnitude.
    """
    style()
    functions = sorted(summary.function.unique())
    sizes = sorted(summary.n_train.unique())
    ncol = min(4, len(functions))
    nrow = int(np.ceil(len(functions) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.8 * nrow), squeeze=False)
    for ax, fn in zip(axes.flat, functions, strict=False):
        sub = summary[summary.function == fn]
        for k, method in enumerate(("regular", "sobolev")):
            m = sub[sub.method == method].set_index("n_train").reindex(sizes)
            xs = np.arange(len(sizes)) + (k - 0.5) * 0.18
            mean, std = m[value].to_numpy(float), np.nan_to_num(m[value + "_std"].to_numpy(float))
            lower = np.minimum(std, mean * 0.999)  # keep the lower bar above zero on a log axis
            ax.errorbar(
                xs, mean, yerr=[lower, std], fmt="o", ms=5, capsize=3, color=METHOD_COLORS[method], label=method
            )
        ax.set_yscale("log")
        ax.set_xticks(range(len(sizes)), [f"{s:,}" for s in sizes])
        ax.set_title(fn.replace("_", "-"))
        ax.set_xlabel("training points")
    for ax in axes.flat[len(functions) :]:
        ax.axis("off")
    axes[0, 0].set_ylabel(value.replace("_", " "))
    axes[0, 0].legend(loc="best", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def surfaces(
    fn: BenchmarkFunction, predictors: dict[str, Predictor], resolution: int = 60, arrows: int = 14, title: str = ""
) -> plt.Figure:
    """Figure 3 / SM Figures 5-11: the function and each model as a surface (top row) with
    the gradient field of each underneath (bottom row, arrows over filled contours).

    Args:
        predictors: label → function mapping raw points ``(B, 2)`` to values ``(B,)`` and
            gradients ``(B, 2)``; the truth is added first.
    """
    style()
    panels = {"truth": lambda x: (fn(x), fn.grad(x)), **predictors}
    (x0, x1), (y0, y1) = fn.domain
    gx, gy = torch.meshgrid(torch.linspace(x0, x1, resolution), torch.linspace(y0, y1, resolution), indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    ax_, ay_ = torch.meshgrid(torch.linspace(x0, x1, arrows), torch.linspace(y0, y1, arrows), indexing="xy")
    coarse = torch.stack([ax_.reshape(-1), ay_.reshape(-1)], 1)
    values = {k: p(grid)[0].reshape(resolution, resolution).numpy() for k, p in panels.items()}
    zmin = min(v.min() for v in values.values())
    zmax = max(v.max() for v in values.values())
    n = len(panels)
    fig = plt.figure(figsize=(4.0 * n, 7.2))
    for i, (label, pred) in enumerate(panels.items()):
        ax = fig.add_subplot(2, n, i + 1, projection="3d")
        ax.plot_surface(
            gx.numpy(), gy.numpy(), values[label], cmap="viridis", vmin=zmin, vmax=zmax, linewidth=0, antialiased=True
        )
        ax.set_zlim(zmin, zmax)
        ax.set_title(label)
        ax.tick_params(labelsize=7)
        ax2 = fig.add_subplot(2, n, n + i + 1)
        ax2.contourf(gx.numpy(), gy.numpy(), values[label], levels=20, cmap="viridis", vmin=zmin, vmax=zmax)
        g = pred(coarse)[1].reshape(arrows, arrows, 2).numpy()
        norm = np.linalg.norm(g, axis=-1, keepdims=True)
        unit = g / np.where(norm > 0, norm, 1)  # direction only: magnitudes span decades
        ax2.quiver(
            ax_.numpy(),
            ay_.numpy(),
            unit[..., 0],
            unit[..., 1],
            np.log10(norm[..., 0] + 1e-12),
            cmap="Reds",
            scale=arrows * 1.6,
        )
        ax2.set_aspect("auto")
        ax2.set_title(f"{label}: ∇ direction (colour: log10 |∇|)", fontsize=8)
        ax2.tick_params(labelsize=7)
    fig.suptitle(title or fn.name)
    fig.tight_layout()
    return fig


def weight_sweep(summary: pd.DataFrame, baseline: pd.DataFrame, n_train: int) -> plt.Figure:
    """Test MSE of Sobolev training against the derivative weight λ, per function and
    normalisation, with the equally-tuned regular baseline as a dashed line."""
    style()
    functions = sorted(summary.function.unique())
    ncol = min(4, len(functions))
    nrow = int(np.ceil(len(functions) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.8 * nrow), squeeze=False)
    palette = dict(zip(sorted(summary.normalisation.unique()), sns.color_palette("colorblind"), strict=False))
    for ax, fn in zip(axes.flat, functions, strict=False):
        for norm, color in palette.items():
            sub = summary[
                (summary.function == fn) & (summary.normalisation == norm) & (summary.n_train == n_train)
            ].sort_values("weight")
            ax.errorbar(
                sub.weight,
                sub.test_mse,
                yerr=np.nan_to_num(sub.test_mse_std.to_numpy(float)),
                fmt="o-",
                capsize=3,
                color=color,
                label=f"Sobolev, {norm}",
            )
            base = baseline[
                (baseline.function == fn) & (baseline.normalisation == norm) & (baseline.n_train == n_train)
            ]
            if len(base):
                ax.axhline(float(base.test_mse.iloc[0]), ls="--", color=color, label=f"regular, {norm}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(fn.replace("_", "-"))
        ax.set_xlabel("derivative weight λ")
    for ax in axes.flat[len(functions) :]:
        ax.axis("off")
    axes[0, 0].set_ylabel("test MSE")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"Derivative weight and normalisation, {n_train} training points (mean ± std over seeds)")
    fig.tight_layout()
    return fig
