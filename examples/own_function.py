"""Sobolev training on your own function: 5 inputs, through the public API.

Run: ``python examples/own_function.py`` (about 10 s on 2 cores at the ci scale it uses).
"""

import torch

from sobolev.core.functions import BenchmarkFunction, check_gradient
from sobolev.regression.compute import chosen_runs, paired_cells, run_grid
from sobolev.regression.config import RegressionConfig


def f(x: torch.Tensor) -> torch.Tensor:
    """Σᵢ sin(xᵢ) + x₀x₁ for points ``(..., 5)``."""
    return torch.sin(x).sum(-1) + x[..., 0] * x[..., 1]


def grad(x: torch.Tensor) -> torch.Tensor:
    g = torch.cos(x)
    return g + torch.stack([x[..., 1], x[..., 0], *([torch.zeros_like(x[..., 0])] * 3)], -1)


fn = BenchmarkFunction("sines5", f, grad, domain=((-2.0, 2.0),) * 5)
print(check_gradient(fn))  # autograd and central differences; raises, naming the point, on a mismatch

# A grid built in code (no params.yaml: this works from an installed wheel), short as the ci scale;
# every arm (regular, the paper's Sobolev, the balanced loss) gets the same learning rates,
# schedule and seeds.
cfg = RegressionConfig.in_code(sizes=[50], seeds=[5], steps=150, n_test=2000, n_val=500)
result = run_grid(cfg, functions=[fn], progress=False)
cells = paired_cells(chosen_runs(result.runs))
print(cells[["arm", "baseline", "n_train", "median", "baseline_median", "ratio", "low", "high", "verdict"]].to_string())
