"""Section 4.2's figures, each from a :class:`~sobolev.distillation.chain.Result`: Figure 4 (KL and
action error over training), its summary against the training-set fraction, and the paired seeds."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sobolev.common.plotting import METHOD_COLORS, finish, style
from sobolev.distillation.chain import Result, at_lr, chosen_curves


def _panel(df: pd.DataFrame) -> pd.Series:
    return df.game + ", " + (100 * df.fraction).round().astype(int).astype(str) + "% train"


def figure4(curves: pd.DataFrame, runs: pd.DataFrame) -> plt.Figure:
    """Figure 4: KL to the teacher (top) and action error (bottom) against iterations, both on log axes (the
    differences sit far below the starting values), one column per game and fraction, final runs: the test
    median over seeds as a thick line with the range of seeds shaded, the training median as a thin dashed
    line (no band); crosses: each seed's selected checkpoint (test KL and test action error). Early stopping
    ends seeds at different iterations: where fewer seeds than the run's full count remain, the median is drawn
    thin and faint, with the count printed at its end."""
    style()
    df = chosen_curves(curves, runs)
    df = df[df.set.isin(["train", "test"])].copy()
    df["panel"] = _panel(df)
    sel = runs[runs.chosen].copy()
    sel["panel"] = _panel(sel)
    panels = list(dict.fromkeys(df.sort_values(["game", "fraction"]).panel))
    metrics = {"kl": ("KL(π ‖ π*), log scale", "test_kl"),
               "action_error": ("action-prediction error, log scale", "test_action_error")}  # fmt: skip
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 7.2), squeeze=False, sharex="col")
    left: dict[str, list[str]] = {p: [] for p in panels}  # seeds left at the end of each faint tail, per panel
    for j, panel in enumerate(panels):
        for i, (metric, (label, selected)) in enumerate(metrics.items()):
            ax = axes[i, j]
            for (method, split), g in df[df.panel == panel].groupby(["method", "set"]):
                stats = g.groupby("iteration")[metric].agg(["median", "min", "max", "count"])
                stats = stats[stats["median"] > 0]  # a log axis: an exact 0 (no action wrong) is not drawn
                full = stats["count"] == stats["count"].max()
                color, test = METHOD_COLORS[method], split == "test"
                whole = stats[full.cummin()]  # up to the first iteration some seed no longer reaches
                tail = stats.loc[whole.index[-1] :] if len(whole) < len(stats) else stats.iloc[:0]
                ax.plot(whole.index, whole["median"], "-" if test else "--", color=color, lw=1.8 if test else 0.8,
                        label=f"{method}, {split}")  # fmt: skip
                if test:
                    ax.fill_between(whole.index, whole["min"], whole["max"], color=color, alpha=0.15, lw=0)
                if len(tail) > 1 and test:
                    ax.plot(tail.index, tail["median"], "-", color=color, lw=0.7, alpha=0.5)
                    left[panel].append(f"{method} {int(tail['count'].iloc[-1])}/{int(stats['count'].max())}")
            for method, pts in sel[sel.panel == panel].groupby("method"):
                ax.scatter(pts.best_iteration, pts[selected], marker="x", color=METHOD_COLORS[method], zorder=5,
                           label=f"{method}, selected checkpoint")  # fmt: skip
            ax.set_yscale("log")
            tails = sorted(set(left[panel]))
            ax.set_xlabel(("iteration" + "".join(f"\n{t} seeds at the end" for t in tails)) if i == 1 else "")
            ax.set_title(panel if i == 0 else "")
            ax.set_ylabel(label if j == 0 else "")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle("Figure 4: distilling Atari policies (test: median and range over seeds; train: dashed median; "
                 "×: selected checkpoints;\nfaint: fewer seeds remain, how many under each column)")  # fmt: skip
    rows = -(-len(labels) // 3)
    fig.tight_layout(rect=(0, (0.3 * rows + 0.1) / fig.get_figheight(), 1, 1))
    return fig


def fraction_summary(runs: pd.DataFrame) -> plt.Figure:
    """What the paper's Figure 4 is about, against the training-set fraction: each seed's test KL (top, log) and
    test action error (bottom) at its selected checkpoint, per game, the methods side by side (a line joins
    a seed's methods), with the medians as dashes."""
    style()
    final = runs[runs.chosen]
    games = sorted(final.game.unique())
    fractions = sorted(final.fraction.unique())
    fig, axes = plt.subplots(2, len(games), figsize=(4.2 * len(games), 6.0), squeeze=False)
    methods = [m for m in METHOD_COLORS if m in set(final.method)]
    offset = dict(zip(methods, np.linspace(-0.12, 0.12, len(methods)) * (len(methods) > 1), strict=True))
    for j, game in enumerate(games):
        for i, (col, label) in enumerate((("test_kl", "test KL(π ‖ π*), log scale"),
                                          ("test_action_error", "test action-prediction error"))):  # fmt: skip
            ax = axes[i, j]
            for k, fraction in enumerate(fractions):
                cell = final[(final.game == game) & (final.fraction == fraction)]
                for _, pair in cell.groupby("seed"):
                    pair = pair.set_index("method").reindex(methods)
                    ax.plot([k + offset[m] for m in methods], pair[col], color="0.7", lw=0.7)
                for method, m in cell.groupby("method"):
                    x = k + offset[method]
                    ax.scatter(np.full(len(m), x), m[col], color=METHOD_COLORS[method], s=14, zorder=3,
                               label=method if (i, j, k) == (0, 0, 0) else None)  # fmt: skip
                    ax.hlines(m[col].median(), x - 0.06, x + 0.06, color="black", lw=1.5, zorder=4)
            ax.set_xticks(range(len(fractions)), [f"{100 * f:.0f}%" for f in fractions])
            ax.set_xlabel("training-set fraction of the recording")
            ax.set_ylabel(label if j == 0 else "")
            if col == "test_kl":
                ax.set_yscale("log")
                ax.set_title(f"{game} ({final[final.game == game].seed.nunique()} seeds)")
            else:
                ax.set_ylim(bottom=0)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Figure 4 summarised: selected checkpoints against training-set fraction (dashes: medians)")
    fig.tight_layout()
    return fig


def paired_figure(runs: pd.DataFrame, summaries: dict) -> plt.Figure:
    """Each seed's test KL at the selected checkpoint, its methods joined by a line (same seed): per game and
    fraction at each method's chosen point, then the paper arm's control (regular and Sobolev at each lr either
    chose, tuning fraction); log scale."""
    style()
    panels = []
    for (game, fraction), cell in runs[runs.chosen].groupby(["game", "fraction"]):
        panels.append((f"{game}, {100 * fraction:.0f}% train", cell))
    for game, s in summaries.items():
        grid = runs[(runs.game == game) & (runs.role == "grid")]
        lrs = {s["chosen"][m]["lr"] for m in ("regular", "sobolev")}
        if len(lrs) == 1:
            continue  # both chose one lr: the control is the comparison at the tuning fraction, already drawn
        for lr in sorted(lrs):
            cell = at_lr(grid, lr, s["chosen"]["sobolev"]["alpha"])
            if set(cell.method) >= {"regular", "sobolev"}:
                panels.append((f"{game}, both at lr {lr:g}", cell))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.7 * len(panels), 3.8), squeeze=False, sharey=True)
    for ax, (title, cell) in zip(axes[0], panels, strict=True):
        methods = [m for m in METHOD_COLORS if m in set(cell.method)]
        for _, pair in cell.groupby("seed"):
            pair = pair.set_index("method").reindex(methods)
            ax.plot(range(len(methods)), pair.test_kl, color="grey", lw=0.8)
            ax.scatter(range(len(methods)), pair.test_kl, c=[METHOD_COLORS[m] for m in methods], zorder=3)
        ax.set_xticks(range(len(methods)), [m.replace("_", "\n") for m in methods])
        ax.set_xlim(-0.4, len(methods) - 0.6)
        ax.set_yscale("log")
        ax.set_title(title.replace(", ", "\n", 1), fontsize=9)
        ax.set_xlabel("method")
    axes[0, 0].set_ylabel("test KL at the selected checkpoint (log)")
    fig.suptitle("Paired seeds: each line is one seed (same initial student, same batches)")
    fig.tight_layout()
    return fig


def figures(result: Result, names: list[str] | None = None) -> dict[str, plt.Figure]:
    """Section 4.2's figures by file name (``names``: only those): ``figure4``, ``figure4_summary``
    and ``paired_seeds``."""
    makers = {
        "figure4": lambda: figure4(result.curves, result.runs),
        "figure4_summary": lambda: fraction_summary(result.runs),
        "paired_seeds": lambda: paired_figure(result.runs, result.summaries),
    }
    return {name: finish(make()) for name, make in makers.items() if names is None or name in names}
