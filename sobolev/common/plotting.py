"""Figures shared by the sections: seaborn styling, saving, and error against training size."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

METHOD_COLORS = {"regular": "#4C72B0", "sobolev": "#DD8452", "rescaled": "#55A868"}


def style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)


def save(fig: plt.Figure, path: str | Path | None) -> None:
    """Save ``fig`` as PNG (``None``: do nothing, e.g. in nbval runs)."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")


def error_by_size(runs: pd.DataFrame, value: str = "test_mse", title: str = "") -> plt.Figure:
    """Error against training-set size, one panel per function (Figure 2 right's layout): every
    seed of ``runs`` (one row per run: ``function``, ``n_train``, ``method``, ``value``) as a
    point, a bar at the median; each panel has its own log scale."""
    style()
    functions = sorted(runs.function.unique())
    sizes = sorted(runs.n_train.unique())
    methods = [m for m in METHOD_COLORS if m in set(runs.method)]
    ncol = min(4, len(functions))
    nrow = int(np.ceil(len(functions) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.8 * nrow), squeeze=False)
    width = 0.8 / len(methods)
    for ax, fn in zip(axes.flat, functions, strict=False):
        for k, method in enumerate(methods):
            for j, n in enumerate(sizes):
                x0 = j - 0.4 + (k + 0.5) * width
                v = runs[(runs.function == fn) & (runs.method == method) & (runs.n_train == n)][value].to_numpy(float)
                ax.scatter(np.full(len(v), x0), v, s=9, color=METHOD_COLORS[method], alpha=0.75,
                           label=method if j == 0 else None)  # fmt: skip
                if len(v) > 1:
                    ax.hlines(np.median(v), x0 - width / 2.2, x0 + width / 2.2, color="black", lw=1.2)
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
