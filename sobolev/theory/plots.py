"""Section 3's figures, each drawn from the data its part computed (:mod:`sobolev.theory.report`
keeps them as makers, so computing a part draws nothing): Figure 2 (left), Proposition 3's
Gaussians, Theorem 2's fits, the identification rank curves and the ReLU networks' errors."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch import Tensor

from sobolev.common.plotting import PALETTE, error_by_size, finish, style
from sobolev.theory import compute as T


def figure2_left(
    knots: Tensor, target: Tensor, x_train: Tensor, y_train: Tensor, dy_train: Tensor, values_only: T.Family,
    with_slopes: T.Family,
) -> plt.Figure:  # fmt: skip
    """Figure 2 (left): the target, two PL functions consistent with its 3 values, and the unique
    fit of values + slopes (the training slopes in red)."""
    style()
    fig, axes = plt.subplots(3, 1, figsize=(5, 6), sharex=True)
    axes[0].plot(knots, target, "k-", label="target")
    for z, line in ((-1.5, "C0--"), (1.5, "C1--")):
        axes[1].plot(knots, values_only.member([z]), line, label=f"consistent member z={z}")
    axes[2].plot(knots, with_slopes.particular, "C2-", label="unique fit (values + slopes)")
    for ax in axes:
        ax.plot(x_train, y_train, "ko", label="training points")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the panel, never on a point
    for x0, y0, s0 in zip(x_train, y_train, dy_train, strict=True):
        axes[2].plot([x0 - 0.25, x0 + 0.25], [y0 - 0.25 * s0, y0 + 0.25 * s0], "r-", lw=3)
    for ax in axes:
        ax.set_ylabel("f(x)")
    axes[2].set_xlabel("x (PL knots at 0, 1, 2, 3; red: the training slopes)")
    axes[0].set_title("Figure 2 (left), computed")
    fig.set_size_inches(7.5, 6)
    fig.tight_layout()
    return fig


def prop3_gaussians(mu2: float, var2: float) -> plt.Figure:
    """N(2, 1) and the second Gaussian N(``mu2``, ``var2``) with its values at x = 0 and 3."""
    style()
    grid = torch.linspace(-2, 7, 400, dtype=torch.float64)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(grid, T.gaussian_pdf(grid, 2.0, 1.0), label="N(2, 1)")
    ax.plot(grid, T.gaussian_pdf(grid, mu2, var2), label=f"N({mu2:.3f}, {var2:.3f})")
    ends = torch.tensor([0.0, 3.0], dtype=torch.float64)
    ax.plot([0, 3], T.gaussian_pdf(ends, 2.0, 1.0), "ko", label="equal values")
    ax.set_xlabel("x")
    ax.set_ylabel("density p(x)")
    ax.set_title("Equal values at x = 0 and 3: values alone do not identify a Gaussian", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


def theorem2(curves: dict[str, tuple[Tensor, Tensor, Tensor, Tensor]]) -> plt.Figure:
    """One panel per (f, g) pair: ``curves[label] = (x, f(x), best h(x), network(x))``."""
    style()
    fig, ax = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.5), squeeze=False)
    for a, (label, (xs, f, h_best, net)) in zip(ax[0], curves.items(), strict=True):
        # The best h drawn wide and pale underneath, the network thin on top: both stay visible.
        a.plot(xs, f, "k-", lw=1, label="f")
        a.plot(xs, h_best, "-", color="C2", lw=5, alpha=0.35, label="best h (least squares)")
        a.plot(xs, net, "--", color="C1", lw=1.5, label="trained network", zorder=3)
        a.set_title(label)
        a.set_xlabel("x")
        a.set_ylabel("value")
    handles, labels = ax[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.35 / fig.get_figheight(), 1, 1))
    return fig


def identification_rank(rank_curves: dict[tuple[int, str], tuple[list[int], Tensor, int]]) -> plt.Figure:
    """The fraction of a continuous PL function identified against the number of random points, one
    panel per dimension d: ``rank_curves[d, label] = (point counts, mean rank / parameters, parameters)``."""
    style()
    dims = list(dict.fromkeys(d for d, _ in rank_curves))
    fig, axes = plt.subplots(1, len(dims), figsize=(4.4 * len(dims), 3.6), squeeze=False)
    for ax, d in zip(axes[0], dims, strict=True):
        mine = {label: curve for (dim, label), curve in rank_curves.items() if dim == d}
        for label, (counts, fraction, _) in mine.items():
            color = PALETTE["values"] if label == "values" else PALETTE["exact"]  # values + gradients: exact labels
            ax.plot(counts, fraction, "o-", color=color, label=label)
        ax.set_xscale("log")
        ax.set_title(f"continuous PL, d={d} ({next(iter(mine.values()))[2]} parameters)")
        ax.set_xlabel("random points")
    axes[0, 0].set_ylabel("fraction identified\n(rank / parameters)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def pl_networks(chosen: pd.DataFrame) -> plt.Figure:
    """The ReLU networks' test MSE on random PL targets, every seed (:func:`~sobolev.common.plotting.error_by_size`)."""
    return error_by_size(chosen, "test_mse", "ReLU networks on random PL targets: test MSE, every seed (median bar)")


def figures(result: T.Result, names: list[str] | None = None) -> dict[str, plt.Figure]:
    """Section 3's figures by file name (``names``: only those), drawn from the parts' data:
    ``fig2_left``, ``prop3_gaussians``, ``theorem2``, ``identification_rank`` and ``pl_networks``."""
    makers = {name: make for part in result.parts.values() for name, make in part.figures.items()}
    return {name: finish(make()) for name, make in makers.items() if names is None or name in names}
