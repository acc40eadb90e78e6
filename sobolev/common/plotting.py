"""Figures shared by the sections: seaborn styling, saving, and error against training size."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

METHOD_COLORS = {"regular": "#4C72B0", "sobolev": "#DD8452"}


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
