"""Figures shared by the sections: seaborn styling, saving, and error against training size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

# One colour per method across the whole repository (seaborn's "colorblind" palette), read from here by every
# section's figures; figure_problems flags an artist or legend entry named after a method in another colour.
# Qualified names ("regular-standard", "sobolev (balanced)") take their method's colour and differ by line style.
PALETTE = {
    "regular": "#0173B2", "sobolev": "#DE8F05", "balanced": "#029E73", "labels": "#949494",
    "values": "#0173B2", "exact": "#DE8F05", "finite_differences": "#CC78BC", "knn": "#CA9161",
    "shuffled": "#949494", "standard": "#0173B2", "differential": "#DE8F05",
    "no_backprop": "#949494", "direct": "#CC78BC", "small_model": "#CA9161", "critic": "#56B4E9",
    "backprop": "#0173B2", "adam": "#0173B2", "fromage": "#D55E00", "lars": "#029E73", "lars-momentum": "#56B4E9",
}  # fmt: skip
METHOD_COLORS = {m: PALETTE[m] for m in ("regular", "sobolev", "balanced")}
MIN_FONT_PT = 8  # smallest text a reader can read at the saved size
MAX_LINEAR_DECADES = 2  # positive data spanning more than this many decades needs a log axis


def method_color(name: str) -> str | None:
    """The palette colour of a method named ``name`` (or of the method a qualified name starts with: "regular-raw",
    "sobolev (λ = 0.1)", "sobolev distillation"); ``None`` for a name that is no method."""
    key = name.strip().lower().replace(" ", "_")
    if key in PALETTE:
        return PALETTE[key]
    for method in sorted(PALETTE, key=len, reverse=True):
        rest = key[len(method) :]
        if key.startswith(method) and rest[:1] in ("-", "_", "(") and not rest.startswith(("_+", "_and_")):
            return PALETTE[method]  # a qualified method; "values + gradients" combines two, so is neither
    return None


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


def _shown_tick_labels(axis: Any, minor: bool = False) -> list[Any]:
    """The tick labels matplotlib draws: with text, visible, and at a tick inside the view (a log
    axis keeps labelled ticks outside it, which are never drawn); ``minor``: the minor ticks' too."""
    lo, hi = sorted(axis.get_view_interval())
    span = (hi - lo) * 1e-9
    ticks = axis.get_major_ticks() + (axis.get_minor_ticks() if minor else [])
    return [
        t.label1
        for t in ticks
        if t.label1.get_visible() and t.label1.get_text() and lo - span <= t.get_loc() <= hi + span
    ]


def finish(fig: plt.Figure) -> plt.Figure:
    """``fig`` made readable where matplotlib's defaults are not: a log axis whose view holds fewer than two
    labelled powers of ten also labels its minor ticks (2×, 5×), so every log axis has a scale to read. Every
    section's ``figures`` returns its figures through this; :func:`save` applies it again (idempotent)."""
    from matplotlib.ticker import LogFormatterSciNotation

    fig.canvas.draw()  # tick labels exist only once drawn
    renderer = fig.canvas.get_renderer()
    _fit_title(fig, renderer)
    _fit_legends(fig, renderer)
    relabelled = False
    for ax in fig.axes:
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log" and len(_shown_tick_labels(axis)) < 2 and _labels_on(axis):
                axis.set_minor_formatter(LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(2.5, 1)))
                relabelled = True
    if relabelled:  # longer tick labels may push an axis label off the canvas: move the panels in by as much
        fig.canvas.draw()
        _keep_on_canvas(fig, fig.canvas.get_renderer())
    return fig


def _keep_on_canvas(fig: plt.Figure, renderer: Any) -> None:
    """Move the panels (``subplotpars``) in by however far axis labels and tick labels run off the left or
    bottom edge of the canvas."""
    if fig.get_constrained_layout():
        return
    left = bottom = 0.0
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        ticks = [*_shown_tick_labels(ax.yaxis, minor=True), *_shown_tick_labels(ax.xaxis, minor=True)]
        for t in [ax.yaxis.label, ax.xaxis.label, *ticks]:
            if t.get_visible() and t.get_text():
                box = t.get_window_extent(renderer)
                left, bottom = max(left, fig.bbox.x0 - box.x0), max(bottom, fig.bbox.y0 - box.y0)
    pars = fig.subplotpars
    if 0 < left < fig.bbox.width / 4:
        fig.subplots_adjust(left=pars.left + (left + 2) / fig.bbox.width)
    if 0 < bottom < fig.bbox.height / 4:
        fig.subplots_adjust(bottom=pars.bottom + (bottom + 2) / fig.bbox.height)


def _fit_title(fig: plt.Figure, renderer: Any) -> None:
    """A figure title wider than the canvas (a figure drawn with fewer panels than its title was written for),
    wrapped to the canvas's width; the panels move down by the lines it gained."""
    import textwrap

    title = fig._suptitle
    if title is None or not title.get_text():
        return
    box, room = title.get_window_extent(renderer), 0.96 * fig.bbox.width
    if box.width <= room:
        return
    lines = title.get_text().split("\n")
    per_line = max(20, int(max(map(len, lines)) * room / box.width))
    title.set_text("\n".join(textwrap.fill(line, per_line) for line in lines))
    grown = title.get_window_extent(renderer).height - box.height
    if not fig.get_constrained_layout() and grown > 0:
        fig.subplots_adjust(top=fig.subplotpars.top - grown / fig.bbox.height)


def _fit_legends(fig: plt.Figure, renderer: Any) -> None:
    """A figure legend under the panels that is wider than the canvas gets fewer columns; the panels move up by
    the rows it gained."""
    for legend in list(fig.legends):
        box = legend.get_window_extent(renderer)
        ncols = getattr(legend, "_ncols", 1)
        while box.width > 0.98 * fig.bbox.width and ncols > 1:
            ncols -= 1  # a legend lays its entries out once: a new one with fewer columns replaces it
            handles, labels = legend.legend_handles, [t.get_text() for t in legend.get_texts()]
            options = dict(loc=legend._loc, ncol=ncols, fontsize=legend.get_texts()[0].get_fontsize(),
                           frameon=legend.get_frame_on(), title=legend.get_title().get_text() or None)  # fmt: skip
            legend.remove()
            legend = fig.legend(handles, labels, **options)
            box = legend.get_window_extent(renderer)
        top = box.y1 / fig.bbox.height
        under = legend._loc == 8  # "lower center": a legend under the panels (seaborn's sits at the right)
        if not fig.get_constrained_layout() and under and top > fig.subplotpars.bottom - 0.02:
            fig.subplots_adjust(bottom=min(0.6, top + 0.06))  # room for the legend and the x labels above it


def _labels_on(axis: Any) -> bool:
    """Whether ``axis`` draws tick labels at all (a shared axis may hide them; its sibling's carry the scale)."""
    ticks = axis.get_major_ticks()
    return bool(ticks) and ticks[0].label1.get_visible()


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
    boxes = [(name, t, t.get_window_extent(renderer)) for name, t in texts]
    for i, (name_a, text_a, a) in enumerate(boxes):
        for name_b, text_b, b in boxes[i + 1 :]:
            tick_a, tick_b = "tick" in name_a, "tick" in name_b
            if tick_a and tick_b and name_a.split(" tick ")[0] != name_b.split(" tick ")[0]:
                continue  # ticks of two different axes may meet at a corner
            if _collide(a, b) and _rotated_collide(text_a, text_b, renderer):
                problems.append(f"{name_a} overlaps {name_b}")
    problems += _covering_data(fig, axes, renderer)
    problems += _off_canvas(fig, renderer)
    problems += _small_text(fig)
    problems += _scales(axes)
    problems += _palette(axes)
    return problems


def _rotated_collide(a: Any, b: Any, renderer: Any) -> bool:
    """Whether two texts drawn at the same slanted angle really overlap: their bounding boxes are the rotated
    rectangles' axis-aligned hulls, which overlap for neighbouring slanted tick labels that do not touch. The
    rectangles are compared in the text's own frame (along and across the writing); other texts: ``True``
    (their boxes are the rectangles)."""
    angle = a.get_rotation()
    if angle % 90 == 0 or b.get_rotation() != angle:
        return True
    size = []
    for t in (a, b):
        t.set_rotation(0)
        box = t.get_window_extent(renderer)
        size.append((box.width, box.height))
        t.set_rotation(angle)
    ca = a.get_window_extent(renderer)
    cb = b.get_window_extent(renderer)
    delta = np.array([(cb.x0 + cb.x1 - ca.x0 - ca.x1) / 2, (cb.y0 + cb.y1 - ca.y0 - ca.y1) / 2])
    theta = np.deg2rad(angle)
    along = abs(delta @ np.array([np.cos(theta), np.sin(theta)]))
    across = abs(delta @ np.array([-np.sin(theta), np.cos(theta)]))
    return along < (size[0][0] + size[1][0]) / 2 - 1.0 and across < (size[0][1] + size[1][1]) / 2 - 1.0


def _collide(a: Any, b: Any) -> bool:
    """Two boxes overlap by more than a pixel each way (a real collision, not a touch)."""
    if not (a.overlaps(b) and a.width > 0 and b.width > 0):
        return False
    return min(min(a.x1, b.x1) - max(a.x0, b.x0), min(a.y1, b.y1) - max(a.y0, b.y0)) > 1.0


def _data_points(ax: plt.Axes) -> np.ndarray:
    """Every drawn data point of ``ax`` in display coordinates ``(P, 2)``: line vertices (and their segments'
    midpoints), scatter offsets and bar tops."""
    parts = []
    for line in ax.lines:
        xy = np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
        if len(xy) > 1 and line.get_linestyle() not in ("None", "", " "):
            xy = np.vstack([xy, (xy[1:] + xy[:-1]) / 2])
        parts.append(line.get_transform().transform(xy) if len(xy) else np.zeros((0, 2)))
    for coll in ax.collections:
        offsets = np.asarray(coll.get_offsets(), float)
        if len(offsets) and offsets.ndim == 2:
            parts.append(coll.get_offset_transform().transform(offsets))
    for patch in ax.patches:
        box = patch.get_window_extent()
        if box.width > 0 and box.height > 0:
            parts.append(np.array([[box.x0 + box.width / 2, box.y1]]))
    points = np.vstack(parts) if parts else np.zeros((0, 2))
    return points[np.isfinite(points).all(1)] if len(points) else points


def _covering_data(fig: plt.Figure, axes: list[plt.Axes], renderer: Any) -> list[str]:
    """A legend or a text inside a data axes that lies over its data points."""
    out = []
    for ax in axes:
        points = _data_points(ax)
        if not len(points):
            continue
        name = ax.get_title() or "untitled axes"
        covers = [("legend", ax.get_legend())] + [(f"text {t.get_text()[:30]!r}", t) for t in ax.texts]
        for kind, artist in covers:
            if artist is None or not artist.get_visible():
                continue
            box = artist.get_window_extent(renderer)
            inside = (
                (points[:, 0] > box.x0) & (points[:, 0] < box.x1) & (points[:, 1] > box.y0) & (points[:, 1] < box.y1)
            )
            if inside.any():
                out.append(f"{name!r}: its {kind} lies over {int(inside.sum())} data point(s)")
    return out


def _all_texts(fig: plt.Figure) -> list[tuple[str, Any]]:
    """Every visible, non-empty text of the figure with a name: titles, labels, tick labels, legends, annotations."""
    texts = [("figure title", fig._suptitle)] if fig._suptitle is not None else []
    texts += [(f"figure text {t.get_text()[:30]!r}", t) for t in fig.texts]
    for legend in fig.legends:
        texts += [(f"figure legend {t.get_text()[:30]!r}", t) for t in legend.get_texts()]
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        label = ax.get_title() or "untitled axes"
        texts += [(f"{label!r} {kind}", t) for kind, t in (("title", ax.title), ("x label", ax.xaxis.label),
                                                             ("y label", ax.yaxis.label))]  # fmt: skip
        if ax.axison:
            texts += [(f"{label!r} tick {t.get_text()!r}", t) for axis in (ax.xaxis, ax.yaxis)
                      for t in _shown_tick_labels(axis, minor=True)]  # fmt: skip
        texts += [(f"{label!r} text {t.get_text()[:30]!r}", t) for t in ax.texts]
        if ax.get_legend() is not None:
            texts += [(f"{label!r} legend {t.get_text()[:30]!r}", t) for t in ax.get_legend().get_texts()]
    return [(n, t) for n, t in texts if t.get_visible() and t.get_text().strip()]


def _off_canvas(fig: plt.Figure, renderer: Any) -> list[str]:
    """Text that runs off the figure's canvas (cut off when saved)."""
    canvas = fig.bbox
    out = []
    for name, t in _all_texts(fig):
        box = t.get_window_extent(renderer)
        beyond = max(canvas.x0 - box.x0, box.x1 - canvas.x1, canvas.y0 - box.y0, box.y1 - canvas.y1)
        if beyond > 1.0:
            out.append(f"{name} runs {beyond:.0f} px off the canvas")
    return out


def _small_text(fig: plt.Figure) -> list[str]:
    """Text smaller than :data:`MIN_FONT_PT` points (the figure is saved at its own size)."""
    return [f"{name} is {t.get_fontsize():.1f} pt, below {MIN_FONT_PT} pt"
            for name, t in _all_texts(fig) if t.get_fontsize() < MIN_FONT_PT - 1e-6]  # fmt: skip


def _scales(axes: list[plt.Axes]) -> list[str]:
    """A linear axis over more than :data:`MAX_LINEAR_DECADES` decades of positive data (its small values vanish), and
    a log axis with fewer than two labelled ticks (no scale to read)."""
    out = []
    for ax in axes:
        name = ax.get_title() or "untitled axes"
        for which, axis, scale in (("y", ax.yaxis, ax.get_yscale()), ("x", ax.xaxis, ax.get_xscale())):
            values = _axis_data(ax, which)
            if (
                scale == "linear"
                and len(values)
                and (values > 0).all()
                and axis.get_major_formatter().__class__.__name__ != "FixedFormatter"
            ):
                span = np.log10(values.max() / values.min())
                if span > MAX_LINEAR_DECADES:
                    out.append(
                        f"{name!r}: linear {which} axis over {span:.1f} decades of positive data (use a log axis)"
                    )
            shown = [t for t in _shown_tick_labels(axis, minor=True) if t.get_text().strip()]
            if scale == "log" and len(shown) < 2 and _labels_on(axis):
                out.append(f"{name!r}: log {which} axis with fewer than two labelled ticks")
    return out


def _axis_data(ax: plt.Axes, which: str) -> np.ndarray:
    """The finite data values of ``ax`` along ``which`` (``"x"`` or ``"y"``) that are measurements: scatter offsets
    and lines drawn with markers. A plain line is a curve (a density, a function over a grid), whose tails may
    approach 0 on a linear axis by design."""
    k = 0 if which == "x" else 1
    parts = [np.asarray(line.get_xdata() if k == 0 else line.get_ydata(), float) for line in ax.lines
             if line.get_marker() not in (None, "None", "", " ")]  # fmt: skip
    for coll in ax.collections:
        offsets = np.asarray(coll.get_offsets(), float)
        if len(offsets) and offsets.ndim == 2:
            parts.append(offsets[:, k])
    values = np.concatenate(parts) if parts else np.zeros(0)
    return values[np.isfinite(values)]


def _palette(axes: list[plt.Axes]) -> list[str]:
    """A line, collection or legend entry named after a method (:data:`PALETTE`) in another colour."""
    from matplotlib.colors import to_hex

    out = []
    for ax in axes:
        name = ax.get_title() or "untitled axes"
        named = [(a.get_label(), a.get_color()) for a in ax.lines]
        named += [(c.get_label(), c.get_facecolor()[0] if len(c.get_facecolor()) else None) for c in ax.collections]
        legend = ax.get_legend()
        if legend is not None:
            handles = getattr(legend, "legend_handles", None) or getattr(legend, "legendHandles", [])
            for text, handle in zip(legend.get_texts(), handles, strict=False):
                color = handle.get_color() if hasattr(handle, "get_color") else None
                if color is None or (isinstance(color, np.ndarray) and color.ndim > 1):
                    face = getattr(handle, "get_facecolor", lambda: None)()
                    color = face[0] if face is not None and len(np.shape(face)) > 1 else face
                named.append((text.get_text(), color))
        for label, color in named:
            want = method_color(str(label)) if label and not str(label).startswith("_") else None
            if want is None or color is None:
                continue
            try:
                got = to_hex(color)
            except (ValueError, TypeError):
                continue
            if got.lower() != want.lower():
                out.append(f"{name!r}: {label!r} drawn in {got}, not its palette colour {want}")
    return out


class FigureError(ValueError):
    """A figure has problems a reader would stumble on (:func:`figure_problems`): it is not saved."""


def save(fig: plt.Figure, path: str | Path | None) -> None:
    """Check ``fig`` (:func:`figure_problems`) and save it as PNG (``None``: check only, e.g. in nbval runs). A
    figure with problems raises :class:`FigureError` naming them and is not saved: a stage never installs it."""
    problems = figure_problems(finish(fig))
    if problems:
        title = fig._suptitle.get_text()[:60] if fig._suptitle else "a figure"
        where = Path(path).name if path is not None else title
        raise FigureError(f"{where}: " + "; ".join(problems))
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


def error_by_size(runs: pd.DataFrame, value: str = "test_mse", title: str = "", ylabel: str = "test MSE") -> plt.Figure:
    """Error against training-set size, one panel per function (Figure 2 right's layout): every
    seed of ``runs`` (one row per run: ``function``, ``n_train``, ``method``, ``value``) as a
    point, spread across its method's column so equal values stay visible, a bar at the median; each panel
    has its own log scale; the legend under the panels, never over a point."""
    style()
    functions = sorted(runs.function.unique())
    sizes = sorted(runs.n_train.unique())
    methods = [m for m in METHOD_COLORS if m in set(runs.method)]
    ncol = min(4, len(functions))
    nrow = int(np.ceil(len(functions) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 3.0 * nrow + 0.5), squeeze=False)
    width = 0.8 / len(methods)
    for ax, fn in zip(axes.flat, functions, strict=False):
        for k, method in enumerate(methods):
            for j, n in enumerate(sizes):
                x0 = j - 0.4 + (k + 0.5) * width
                v = runs[(runs.function == fn) & (runs.method == method) & (runs.n_train == n)][value].to_numpy(float)
                jitter = np.linspace(-width / 4, width / 4, len(v)) if len(v) > 1 else np.zeros(len(v))
                ax.scatter(x0 + jitter, v, s=10, color=METHOD_COLORS[method], alpha=0.75,
                           label=method if j == 0 else None)  # fmt: skip
                if len(v) > 1:
                    ax.hlines(np.median(v), x0 - width / 2.2, x0 + width / 2.2, color="black", lw=1.2)
        ax.set_yscale("log")
        ax.set_xticks(range(len(sizes)), [f"{s:,}" for s in sizes])
        ax.set_title(fn.replace("_", "-"))
        ax.set_xlabel("training points")
    for ax in axes.flat[len(functions) :]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel(ylabel)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.45 / fig.get_figheight(), 1, 1))
    return fig
