"""Section 5.4's figures, each from a :class:`~sobolev.deviations.compute.Result`: deviations by
the teacher's confidence, exaggeration slopes, the switch experiment and the Atari students."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from sobolev.common.plotting import PALETTE, finish, style
from sobolev.common.stats import MIN_SEEDS
from sobolev.deviations.compute import METHOD_ORDER, Result, main_runs, switch_width


def deviation_figure(
    bins: pd.DataFrame, row: str = "width", title: str = "How students deviate from the teacher, by its confidence"
) -> plt.Figure:
    """Student − teacher logit (of the teacher's top-1 class) per teacher-confidence bin, per loss, on
    train and test inputs, one row of panels per value of ``row`` (the student width; ``students`` for
    Section 4.2's students: one row per game and fraction, never pooled): the median over seeds, with a
    95% interval when there are at least :data:`MIN_SEEDS` seeds. Below 0: the student is less confident
    than the teacher."""
    style()
    order = [m for m in METHOD_ORDER if m in set(bins.method)]
    seeds = bins.groupby([row, "method", "split", "bin"]).size().min()
    grid = sns.relplot(data=bins, x="teacher_logit", y="deviation", hue="method", hue_order=order, col="split",
                       row=row, kind="line", estimator="median", errorbar=("ci", 95) if seeds >= MIN_SEEDS else None,
                       palette={m: PALETTE[m] for m in order}, marker="o", height=2.8, aspect=1.3,
                       facet_kws={"sharex": False})  # fmt: skip
    for ax in grid.axes.flat:
        ax.axhline(0, color="0.5", lw=0.8)
    # "logit" here is the log-odds log p/(1−p) of the teacher's top-1 class, not a pre-softmax score: say so.
    grid.set(xlabel="teacher top-1 log-odds (bin mean)", ylabel="student − teacher log-odds")
    grid.set_titles("{row_name}, {col_name} inputs" if row == "students" else "{row_var} = {row_name}, {col_name} "
                    "inputs", size=9)  # fmt: skip
    rows = bins[row].nunique()
    grid.figure.subplots_adjust(hspace=0.5, top=1 - 0.9 / (2.8 * rows + 0.9))  # room for the two-line title
    grid.figure.suptitle(f"{title}\n(log-odds of the teacher's top-1 class: log p/(1−p))", y=0.995, va="top")
    return grid.figure


def atari_bins_by_students(bins: pd.DataFrame) -> pd.DataFrame:
    """Section 4.2's binned deviations with a ``students`` column naming the game and the training fraction, the
    figure's rows: each game's students are drawn on their own (the effect differs between games)."""
    return bins.assign(students=bins.game.str.replace("_", " ").str.title() + ", "
                       + (100 * bins.fraction).round().astype(int).astype(str) + "% of states")  # fmt: skip


def slope_figure(runs: pd.DataFrame) -> plt.Figure:
    """Exaggeration slopes per loss, width and split: every seed as a point, the median as a dash; 1
    (a faithful copy) as a line."""
    style()
    data = main_runs(runs).assign(student=lambda d: d.method + "\nwidth " + d.width.astype(str))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, split in zip(axes, ("train", "test"), strict=True):
        part = data[data.split == split]
        sns.stripplot(
            data=part,
            x="student",
            y="slope",
            hue="method",
            hue_order=[m for m in METHOD_ORDER if m in set(part.method)],
            palette=PALETTE,
            jitter=0.1,
            ax=ax,
            legend=False,
            size=4,
        )
        sns.pointplot(
            data=part,
            x="student",
            y="slope",
            estimator="median",
            errorbar=None,
            color="k",
            markers="_",
            markersize=20,
            linestyle="none",
            ax=ax,
        )
        ax.axhline(1, color="0.5", lw=0.8)
        ax.set(title=f"{split} inputs", xlabel="student (loss, width)", ylabel="slope: student on teacher log-odds")
    fig.suptitle("Exaggeration slope per student (points: seeds; dashes: medians)")
    fig.tight_layout()
    return fig


def switch_figure(runs: pd.DataFrame) -> plt.Figure:
    """Test accuracy against the share of training spent on the labels before distilling (0: distil
    from the start), per loss; the label-trained students as a band. Seeds as points, medians as lines."""
    style()
    test = runs[(runs.split == "test") & (runs.width == switch_width(runs))]
    dist = test[test.method != "labels"]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    palette = {m: PALETTE[m] for m in set(dist.method)}
    sns.lineplot(data=dist, x="switch_at", y="accuracy", hue="method", estimator="median", errorbar=None, marker="o",
                 palette=palette, ax=ax)  # fmt: skip
    sns.stripplot(data=dist, x="switch_at", y="accuracy", hue="method", native_scale=True, jitter=False, size=3,
                  alpha=0.5, legend=False, palette=palette, ax=ax)  # fmt: skip
    labels = test[test.method == "labels"].accuracy
    ax.axhspan(labels.min(), labels.max(), color=PALETTE["labels"], alpha=0.3, label="labels only (range over seeds)")
    ax.axhline(labels.median(), color=PALETTE["labels"], lw=1)
    ax.set(xlabel="share of training on labels before distilling", ylabel="test accuracy")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)  # beside the panel, never over the points
    ax.set_title(f"The switch experiment (students of width {switch_width(runs)})")
    fig.tight_layout()
    return fig


def figures(result: Result, names: list[str] | None = None) -> dict[str, plt.Figure]:
    """Section 5.4's figures by file name (``names``: only those): ``deviations_by_confidence``,
    ``slopes``, ``switch`` and, when Section 4.2's students were analysed, ``atari_deviations``."""
    makers = {
        "deviations_by_confidence": lambda: deviation_figure(result.bins),
        "slopes": lambda: slope_figure(result.runs),
        "switch": lambda: switch_figure(result.runs),
    }
    if len(result.atari_bins):
        makers["atari_deviations"] = lambda: deviation_figure(
            atari_bins_by_students(result.atari_bins),
            row="students",
            title="Section 4.2's Atari students against their teacher, per game",
        )
    return {name: finish(make()) for name, make in makers.items() if names is None or name in names}
