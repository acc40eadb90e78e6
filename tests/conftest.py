"""Shared test settings: pinned threads (CPU results depend on them), seeds, and no figure left open."""

import matplotlib

matplotlib.use("Agg")  # tests draw figures off screen
import pytest
import torch
from matplotlib import pyplot as plt

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")  # the figure tests build dozens; pyplot keeps each until closed
