"""The inexact-derivatives noise curve: labels get the relative noise they claim, the arms are paired
by seed, and the advantage falls as the noise grows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from sobolev.core.functions import FUNCTIONS
from sobolev.inexact import compute


def test_noisy_labels_have_the_relative_error_they_claim():
    G = torch.randn(4000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 5
    for level in (0.01, 0.2, 1.0):
        noisy = compute.noisy_labels(G, level, torch.Generator().manual_seed(1))
        rel = ((noisy - G).norm(dim=1) / G.norm(dim=1)).pow(2).mean().sqrt()
        assert float(rel) == pytest.approx(level, rel=0.05)  # root-mean-square relative error = level
    assert torch.equal(compute.noisy_labels(G, 0.0, torch.Generator().manual_seed(1)), G)
    with pytest.raises(ValueError, match=r"level: expected a relative noise ≥ 0, got -0.1"):
        compute.noisy_labels(G, -0.1, torch.Generator())


def test_noise_curve_pairs_seeds_and_the_advantage_falls_with_noise():
    runs = compute.noise_curve({"rosenbrock": FUNCTIONS["rosenbrock"]}, 30, [0.0, 1.0], [1.0], 5, n_test=500)
    assert len(runs) == 5 * 3 and set(runs.arm) == {"regular", "sobolev"}
    assert np.isfinite(runs.test_nmse).all()
    table = compute.advantage(runs).set_index("level")
    assert table.loc[0.0, "verdict"] == "win"  # exact derivatives: decidedly more accurate
    assert table.loc[1.0, "ratio"] > 5 * table.loc[0.0, "ratio"]  # 100% noise: the advantage is gone
    assert (table.seeds == 5).all()


def test_crossing_is_the_first_level_without_a_decided_win():
    table = pd.DataFrame({"function": ["f"] * 4 + ["g"] * 2, "lam": [1.0] * 6,
                          "level": [0.0, 0.05, 0.2, 1.0, 0.0, 1.0],
                          "verdict": ["win", "win", "undecided", "win", "win", "win"]})  # fmt: skip
    out = compute.crossing(table).set_index("function")
    assert out.loc["f", "advantage_gone_at"] == 0.2
    assert math.isnan(out.loc["g", "advantage_gone_at"])  # wins at every level measured
