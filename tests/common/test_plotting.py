"""The figure check (sobolev.common.plotting.figure_problems) catches what a reader would stumble on."""

import warnings

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
from matplotlib import pyplot as plt

from sobolev.common.plotting import PALETTE, FigureError, figure_problems, method_color, save


def good() -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax in axes:
        ax.plot([1, 2, 3], [1, 4, 9])
        ax.set_title("a panel")
        ax.set_xlabel("x")
    axes[0].set_ylabel("y")  # one label per row is enough
    fig.suptitle("a figure")
    fig.tight_layout()
    return fig


def test_a_labelled_figure_passes():
    assert figure_problems(good()) == []


def test_missing_axis_labels_are_caught():
    fig = good()
    fig.axes[1].set_xlabel("")
    fig.axes[0].set_ylabel("")
    found = figure_problems(fig)
    assert "'a panel': no x-axis label in its column" in found
    assert sum("no y-axis label in its row" in p for p in found) == 2


def test_colliding_titles_are_caught():
    fig, axes = plt.subplots(2, 1, figsize=(4, 3))  # no tight_layout: the lower title runs into the upper axes
    for ax in axes:
        ax.plot([0, 1], [0, 1])
        ax.set(xlabel="x", ylabel="y", title="a long title that collides with the axes above it")
    found = figure_problems(fig)
    assert any("overlaps" in p and "title" in p for p in found), found


def test_a_curve_without_any_finite_value_is_caught():
    fig = good()
    fig.axes[0].plot([1, 2], [np.nan, np.nan], label="diverged")
    fig.axes[1].scatter([np.nan], [np.inf], label="lost")
    found = figure_problems(fig)
    assert "'a panel': line 'diverged' has no finite value" in found
    assert "'a panel': collection 'lost' has no finite point" in found


def test_save_refuses_a_figure_with_problems(tmp_path):
    fig = good()
    fig.axes[1].set_xlabel("")
    with pytest.raises(FigureError, match=r"f.png: 'a panel': no x-axis label"):
        save(fig, tmp_path / "f.png")
    assert not (tmp_path / "f.png").exists()  # nothing half-good is installed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save(good(), tmp_path / "g.png")  # a good figure: saved, no warning
    assert (tmp_path / "g.png").stat().st_size > 0


def test_ticks_outside_the_view_are_not_texts_on_the_page():
    """A shared log axis keeps labelled ticks beyond its limits; they are not drawn, so not a collision."""
    fig, axes = plt.subplots(2, 1, figsize=(4, 4), sharey=True)
    for ax in axes:
        ax.plot([0, 1], [1, 20])
        ax.set(yscale="log", xlabel="x", ylabel="y")
    axes[1].set_title("a title as wide as the whole panel, more")
    fig.tight_layout()
    hidden = [t for t in axes[0].get_yticklabels() if t.get_text() == "$\\mathdefault{10^{-1}}$"]
    assert hidden and hidden[0].get_window_extent().overlaps(axes[1].title.get_window_extent())  # the trap
    assert figure_problems(fig) == []


def test_a_figure_legend_over_the_panels_is_caught():
    fig = good()
    fig.axes[0].plot([1, 3], [2, 8], label="a curve")
    fig.legend(loc="center")  # right on top of the panels
    assert any(p.startswith("the figure's legend covers") for p in figure_problems(fig))


# --- each detector on a deliberately broken figure ---------------------------------------------


def test_a_legend_over_the_curves_is_caught():
    fig, ax = plt.subplots(figsize=(4, 3))
    x = np.linspace(0, 1, 50)
    for k in range(4):
        ax.plot(x, np.full(50, 0.5) + 0.02 * k, label=f"curve {k}")
    ax.legend(loc="center")
    ax.set(xlabel="x", ylabel="y", title="crowded")
    assert any("its legend lies over" in p for p in figure_problems(fig))
    ax.legend(loc="upper right")  # moved off the curves (they sit in the middle)
    ax.set_ylim(0, 1.3)
    assert not any("legend lies over" in p for p in figure_problems(fig))


def test_text_on_the_data_is_caught():
    fig = good()
    fig.axes[0].text(2, 4, "a note right on the curve", ha="center", va="center")
    assert any("text 'a note right on the curve' lies over" in p for p in figure_problems(fig))


def test_tick_labels_piled_on_each_other_are_caught():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(range(30), range(30))
    ax.set_xticks(range(30), [f"label {i}" for i in range(30)])
    ax.set(xlabel="x", ylabel="y")
    assert any("tick" in p and "overlaps" in p for p in figure_problems(fig))


def test_text_off_the_canvas_is_caught():
    fig = good()
    fig.axes[0].set_title("a title pushed far to the left of the figure", x=-1.5)
    assert any("runs" in p and "off the canvas" in p for p in figure_problems(fig))


def test_tiny_text_is_caught():
    fig = good()
    fig.axes[0].text(1.5, 8, "3 pt", fontsize=3)
    assert any("is 3.0 pt, below 8 pt" in p for p in figure_problems(fig))


def test_a_linear_axis_over_many_decades_is_caught_and_a_log_axis_without_labels_too():
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    axes[0].plot([1, 2, 3], [1e-6, 1e-2, 1e5], "o-")  # 11 decades of measurements on a linear axis
    axes[0].set(xlabel="x", ylabel="error", title="linear")
    axes[1].plot([1, 2, 3], [2.0, 2.5, 3.0])
    axes[1].set(xlabel="x", yscale="log", title="log")  # no decade inside: no labelled major tick
    axes[1].yaxis.set_minor_formatter(plt.NullFormatter())
    fig.tight_layout()
    found = figure_problems(fig)
    assert any("'linear': linear y axis over 11.0 decades" in p for p in found), found
    assert any("'log': log y axis with fewer than two labelled ticks" in p for p in found), found


def test_a_method_in_another_colour_is_caught():
    fig = good()
    fig.axes[0].plot([1, 2, 3], [2, 3, 4], color=PALETTE["sobolev"], label="regular")
    fig.axes[1].plot([1, 2, 3], [2, 3, 4], color=PALETTE["sobolev"], label="sobolev")  # the right colour
    found = figure_problems(fig)
    assert any("'regular' drawn in" in p and PALETTE["regular"] in p for p in found), found
    assert not any("'sobolev' drawn in" in p for p in found)
    assert method_color("regular-standard") == PALETTE["regular"] and method_color("sobolev (λ = 0.1)") == \
        PALETTE["sobolev"] and method_color("a curve") is None  # fmt: skip
