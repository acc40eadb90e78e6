"""The figure check (sobolev.common.plotting.figure_problems) catches what a reader would stumble on."""

import warnings

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
from matplotlib import pyplot as plt

from sobolev.common.plotting import FigureWarning, figure_problems, save


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


def test_save_warns_and_still_writes(tmp_path):
    fig = good()
    fig.axes[1].set_xlabel("")
    with pytest.warns(FigureWarning, match=r"f.png: 'a panel': no x-axis label"):
        save(fig, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save(good(), None)  # a good figure: no warning


def test_ticks_outside_the_view_are_not_texts_on_the_page():
    """A shared log axis keeps labelled ticks beyond its limits; they are not drawn, so not a collision."""
    fig, axes = plt.subplots(2, 1, figsize=(4, 4), sharey=True)
    for ax in axes:
        ax.plot([0, 1], [1, 20])
        ax.set(yscale="log", xlabel="x", ylabel="y")
    axes[1].set_title("a title as wide as the whole panel and then some more")
    fig.tight_layout()
    hidden = [t for t in axes[0].get_yticklabels() if t.get_text() == "$\\mathdefault{10^{-1}}$"]
    assert hidden and hidden[0].get_window_extent().overlaps(axes[1].title.get_window_extent())  # the trap
    assert figure_problems(fig) == []


def test_a_figure_legend_over_the_panels_is_caught():
    fig = good()
    fig.axes[0].plot([1, 3], [2, 8], label="a curve")
    fig.legend(loc="center")  # right on top of the panels
    assert any(p.startswith("the figure's legend covers") for p in figure_problems(fig))
