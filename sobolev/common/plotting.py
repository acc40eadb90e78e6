"""Figures shared by the sections: seaborn styling, saving, and error against training size."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

# One colour per method across the whole repository (seaborn's "colorblind" palette), read from here by every
# section's figures. Qualified names ("regular-standard", "sobolev (balanced)") take their method's colour.
PALETTE = {
    "regular": "#0173B2", "sobolev": "#DE8F05", "balanced": "#029E73", "labels": "#949494",
    "values": "#0173B2", "exact": "#DE8F05", "finite_differences": "#CC78BC", "knn": "#CA9161",
    "shuffled": "#949494", "standard": "#0173B2", "differential": "#DE8F05",
    "no_backprop": "#949494", "direct": "#CC78BC", "small_model": "#CA9161", "critic": "#56B4E9",
    "backprop": "#0173B2", "adam": "#0173B2", "fromage": "#D55E00", "lars": "#029E73", "lars-momentum": "#56B4E9",
}  # fmt: skip
METHOD_COLORS = {m: PALETTE[m] for m in ("regular", "sobolev", "balanced")}


def style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)


def _data_axes(fig: plt.Figure) -> list[plt.Axes]:
    """The axes that show data: visible, not a colour bar, with at least one artist."""
    out = []
    for ax in fig.axes:
        if not ax.get_visible() or not ax.axison or ax.get_label() == "<colorbar>" or hasattr(ax, "_colorbar"):
            continue
        if ax.lines or ax.collections or ax.patches or ax.images:
            out.append(ax)
    return out


def _all_nan(values: Any) -> bool:
    a = np.asarray(values, dtype=float) if len(values) else np.zeros(0)
    return a.size > 0 and not np.isfinite(a).any()


def _shown_tick_labels(axis: Any) -> list[Any]:
    """The tick labels matplotlib draws: with text, visible, and at a tick inside the view (a log
    axis keeps labelled ticks outside it, which are never drawn)."""
    lo, hi = sorted(axis.get_view_interval())
    span = (hi - lo) * 1e-9
    return [
        t.label1
        for t in axis.get_major_ticks()
        if t.label1.get_visible() and t.label1.get_text() and lo - span <= t.get_loc() <= hi + span
    ]


def figure_problems(fig: plt.Figure) -> list[str]:
    """What a reader of ``fig`` would stumble on, as sentences (empty: none found).

    * a data axes whose x (or y) quantity is named nowhere: neither its own label nor that of
      another axes in its column (row) of the grid, where shared labels usually sit;
    * texts that overlap at the saved size: titles, the figure's title, axis labels and the
      tick labels of every data axes, each pair tested by bounding box;
    * an artist whose every value is NaN or infinite (a curve that draws nothing);
    * a figure-level legend drawn over a data axes.
    """
    problems = []
    fig.canvas.draw()  # lay out text so that bounding boxes are real
    renderer = fig.canvas.get_renderer()
    axes = _data_axes(fig)
    column = lambda a: round(a.get_position().x0, 2)  # noqa: E731
    row = lambda a: round(a.get_position().y0, 2)  # noqa: E731
    for ax in axes:
        x0, y0 = ax.get_position().bounds[:2]
        name = ax.get_title() or f"axes at ({x0:.2f}, {y0:.2f})"
        if not any(b.get_xlabel() for b in axes if column(b) == column(ax)):
            problems.append(f"{name!r}: no x-axis label in its column")
        if not any(b.get_ylabel() for b in axes if row(b) == row(ax)):
            problems.append(f"{name!r}: no y-axis label in its row")
        for line in ax.lines:
            if _all_nan(line.get_ydata()) or _all_nan(line.get_xdata()):
                problems.append(f"{name!r}: line {line.get_label()!r} has no finite value")
        for coll in ax.collections:
            offsets = coll.get_offsets()
            if len(offsets) and not np.isfinite(np.asarray(offsets, float)).any():
                problems.append(f"{name!r}: collection {coll.get_label()!r} has no finite point")
    for legend in fig.legends:  # a figure-level legend must sit beside the panels, not on them
        box = legend.get_window_extent(renderer)
        hit = [ax.get_title() or "untitled axes" for ax in axes if box.overlaps(ax.get_window_extent(renderer))]
        if hit:
            problems.append(f"the figure's legend covers {hit}")
    texts = []
    if fig._suptitle is not None and fig._suptitle.get_text():
        texts.append(("figure title", fig._suptitle))
    for ax in axes:
        label = ax.get_title() or "untitled axes"
        for kind, t in (("title", ax.title), ("x label", ax.xaxis.label), ("y label", ax.yaxis.label)):
            if t.get_text() and t.get_visible():
                texts.append((f"{label!r} {kind}", t))
        for kind, axis in (("x tick", ax.xaxis), ("y tick", ax.yaxis)):
            texts += [(f"{label!r} {kind} {t.get_text()!r}", t) for t in _shown_tick_labels(axis)]
    boxes = [(name, t.get_window_extent(renderer)) for name, t in texts]
    for i, (name_a, a) in enumerate(boxes):
        for name_b, b in boxes[i + 1 :]:
            if "tick" in name_a and "tick" in name_b:
                continue  # neighbouring ticks of one axis may touch; matplotlib thins those itself
            if a.overlaps(b) and a.width > 0 and b.width > 0:
                inter = min(a.x1, b.x1) - max(a.x0, b.x0), min(a.y1, b.y1) - max(a.y0, b.y0)
                if min(inter) > 1.0:  # more than a pixel each way: a real collision, not a touch
                    problems.append(f"{name_a} overlaps {name_b}")
    return problems


class FigureWarning(UserWarning):
    """A figure has problems a reader would stumble on (:func:`figure_problems`)."""


def save(fig: plt.Figure, path: str | Path | None) -> None:
    """Check ``fig`` (:func:`figure_problems`; each problem is a :class:`FigureWarning`, shown in
    the executed notebook) and save it as PNG (``None``: check only, e.g. in nbval runs)."""
    problems = figure_problems(fig)
    if problems:
        title = fig._suptitle.get_text()[:60] if fig._suptitle else "a figure"
        where = Path(path).name if path is not None else title
        warnings.warn(FigureWarning(f"{where}: " + "; ".join(problems)), stacklevel=2)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")


def save_all(figures: dict[str, plt.Figure], output_dir: str | Path | None) -> None:
    """Check every figure of ``figures`` (name -> figure, what a section's ``figures`` returns) and
    save it as ``output_dir/figures/<name>.png`` (``None``: check only), then close it: a section's
    ``save`` makes its figures afresh, and a notebook has already shown them where they were drawn."""
    for name, fig in figures.items():
        save(fig, None if output_dir is None else Path(output_dir) / "figures" / f"{name}.png")
        plt.close(fig)


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
