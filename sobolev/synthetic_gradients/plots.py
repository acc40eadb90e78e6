"""Section 4.3's figures, each from a :class:`~sobolev.synthetic_gradients.compute.Result`: Table 1's
accuracies per seed beside the paper's, the training loss, and the synthetic gradients' alignment."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from sobolev.common.plotting import PALETTE, finish, style
from sobolev.synthetic_gradients.compute import PAPER_CIFAR10, SG_VARIANTS, Result, present_variants, windowed_cosine


def cosine_figure(windowed: pd.DataFrame) -> plt.Figure | None:
    """Window-averaged cosine similarity of synthetic and true gradient over training, one panel
    per cut (cut 0 the lowest): median over seeds with a 95% interval, every seed's window means as
    points. ``None`` when no variant has SG modules."""
    if not len(windowed):
        return None
    style()
    order = [v for v in SG_VARIANTS if v in set(windowed.variant)]
    palette = {v: PALETTE[v] for v in order}  # a variant's colour is the same in every figure
    grid = sns.relplot(data=windowed, x="step", y="cosine", hue="variant", hue_order=order, col="cut", kind="line",
                       estimator="median", errorbar=("ci", 95), height=3, aspect=1.15, palette=palette)  # fmt: skip
    for ax, (_, g) in zip(grid.axes.flat, windowed.groupby("cut"), strict=True):
        sns.stripplot(data=g, x="step", y="cosine", hue="variant", hue_order=order, ax=ax, native_scale=True,
                      size=2, alpha=0.4, legend=False, jitter=False, palette=palette)  # fmt: skip
        ax.axhline(0, color="0.5", lw=0.8)
    grid.set(ylim=(-0.2, 1.0), ylabel="cosine (window mean)")
    grid.figure.subplots_adjust(top=0.82)
    grid.figure.suptitle("Synthetic vs true gradient, averaged over tenths of training (median, 95% CI)")
    return grid.figure


def accuracy_figure(results: pd.DataFrame, dataset: str) -> plt.Figure:
    """Test accuracy per variant on ``dataset`` (named in the title): every seed as a point (lines
    join a seed's variants: the pairing), the median as a black dash (no bars: the axis need not
    start at 0). The paper's CIFAR-10 means share the axis only when ``dataset`` is CIFAR-10; otherwise
    they get their own panel beside it, in the same order: the two datasets' accuracies are not
    comparable, only their orderings are."""
    style()
    order = present_variants(results)
    data = results.assign(accuracy=100 * results.test_accuracy)
    same = dataset.lower().replace("-", "") == "cifar10"
    fig, axes = plt.subplots(1, 1 if same else 2, figsize=(7.5 if same else 11.5, 3.9), squeeze=False,
                             gridspec_kw=None if same else {"width_ratios": [3, 2]})  # fmt: skip
    ax = axes[0, 0]
    sns.pointplot(data=data, x="variant", y="accuracy", order=order, estimator="median", errorbar=None,
                  color="k", markers="_", markersize=22, linestyle="none", ax=ax, zorder=5)  # fmt: skip
    for _, g in data.groupby("seed"):
        g = g.set_index("variant").reindex(order)
        ax.plot(range(len(order)), g.accuracy, color="0.7", lw=0.6, zorder=2)
    sns.stripplot(data=data, x="variant", y="accuracy", order=order, hue="variant", hue_order=order,
                  palette={v: PALETTE[v] for v in order}, size=4, jitter=False, legend=False, ax=ax,
                  zorder=3)  # fmt: skip
    paper = [PAPER_CIFAR10[v][0] for v in order]
    if same:
        ax.scatter(range(len(order)), paper, marker="x", color="black", zorder=4, label="paper (CIFAR-10)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    low = min(data.accuracy.min(), min(paper)) if same else data.accuracy.min()
    ax.set(ylim=(max(0, low - 5), 100), ylabel="test accuracy, %", xlabel="variant (how each module is trained)",
           title=f"ours on {dataset}: every seed (joined per seed), median (dash)")  # fmt: skip
    ax.set_xticks(range(len(order)), [v.replace("_", "\n") for v in order])
    if not same:
        ref = axes[0, 1]
        ref.scatter(range(len(order)), paper, marker="x", s=40, color=[PALETTE[v] for v in order], zorder=3)
        ref.set_xticks(range(len(order)), [v.replace("_", "\n") for v in order])
        ref.set(xlim=(-0.5, len(order) - 0.5), ylim=(max(0, min(paper) - 5), 100), ylabel="test accuracy, %",
                xlabel="variant", title="the paper's CIFAR-10 means (its Table 1)")  # fmt: skip
    fig.suptitle(f"Table 1 on {dataset}" + ("" if same else ": compare the orderings, not the values"))
    fig.tight_layout()
    return fig


def loss_figure(curves: pd.DataFrame) -> plt.Figure:
    """Training loss (mean over each logging interval) per variant over training, median over seeds:
    the convergence check, on a log axis. The caption names the variant with the lowest final
    training loss; when that is ``no_backprop`` it says why (by design, its lower blocks never
    move: the top block alone fits fixed random features, which a training loss cannot tell from
    learning; Table 1's test accuracy can)."""
    style()
    one = curves.drop_duplicates(["variant", "seed", "step"])
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    order = present_variants(one)
    sns.lineplot(data=one, x="step", y="loss", hue="variant", hue_order=order, estimator="median",
                 errorbar=("ci", 95), palette={v: PALETTE[v] for v in order}, ax=ax)  # fmt: skip
    ax.set(yscale="log", ylabel="training loss (interval mean)", xlabel="update")
    ax.set_title("Training loss over training (median over seeds, 95% CI)")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    last = one[one.step == one.step.max()].groupby("variant").loss.median()
    if len(last):
        lowest = str(last.idxmin())
        why = ""
        if lowest == "no_backprop":
            why = (
                ": its lower blocks stay at their random initialisation (no learning signal reaches them), so\n"
                "the top block alone fits fixed random features of the training set; a low training loss here is\n"
                "not learning, and Table 1's test accuracy tells the two apart"
            )
        fig.text(0.01, 0.01, f"Lowest final training loss: {lowest}{why}.", fontsize=8, va="bottom")
        fig.subplots_adjust(left=0.1, right=0.78, bottom=0.34 if why else 0.2)
    return fig


def figures(result: Result, names: list[str] | None = None) -> dict[str, plt.Figure]:
    """Section 4.3's figures by file name (``names``: only those): ``table1_accuracy``,
    ``training_loss`` and, when a variant has SG modules, ``cosine_similarity``."""
    makers = {
        "table1_accuracy": lambda: accuracy_figure(result.runs, result.cfg.dataset),
        "training_loss": lambda: loss_figure(result.curves),
        "cosine_similarity": lambda: cosine_figure(windowed_cosine(result.curves)),
    }
    made = {name: make() for name, make in makers.items() if names is None or name in names}
    return {name: finish(fig) for name, fig in made.items() if fig is not None}
