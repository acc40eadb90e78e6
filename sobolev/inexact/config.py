"""The inexact-derivatives section's parameters (``params.yaml: inexact``), validated before any training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sobolev.common.params import SectionConfig, device, fail, integer, items, number, param, threads
from sobolev.core.families import FAMILIES, is_known


def function_name(name: str, v: object) -> str:
    """A name :func:`sobolev.core.families.lookup` resolves."""
    if not is_known(v):
        families = ", ".join(sorted(FAMILIES))
        fail(name, v, "must be one of Section 4.1's seven, six_hump_camel, three_hump_camel, or "
                      f"'<family>_<d>d' with family in {families} (e.g. 'rosenbrock_10d')")  # fmt: skip
    return v  # type: ignore[return-value]


@dataclass(frozen=True)
class InexactConfig(SectionConfig):
    """Sobolev training with derivatives you do not have exactly: the noise curve (relative noise on the
    derivative labels against the advantage over regular training) and the black box at an equal
    evaluation budget (values only, forward differences, k-NN estimates, exact gradients). Every fit
    uses :func:`sobolev.fit`'s recipe for its number of points; paired seeds throughout."""

    SECTION: ClassVar[str] = "inexact"

    noise_functions: list[str] = param(items(function_name))
    noise_points: int = param(integer(3, 512), "training points (full-batch L-BFGS: at most 512)")
    noise_levels: list[float] = param(items(number(0, 100), increasing=True), "relative noise of the labels")
    noise_lams: list[float] = param(items(number(0, 1e6, open_low=True)), "derivative weights λ")
    noise_seeds: int = param(integer(1, 10_000))
    budget_functions: list[str] = param(items(function_name))
    budgets: list[int] = param(items(integer(3, 1_000_000), increasing=True), "evaluations of the black box")
    budget_seeds: list[int] = param(items(integer(1, 10_000), repeats=True), "paired seeds per budget")
    knn_k: int = param(integer(1, 1000), "neighbours of the k-NN estimate (at least 2d in d inputs)")
    n_test: int = param(integer(10, 10_000_000), "uniform test points per function")
    device: str = param(device)
    threads: int = param(threads)

    def check(self) -> None:
        if len(self.budget_seeds) != len(self.budgets):
            self.fail("budget_seeds", f"needs one seed count per budget ({len(self.budgets)})")
        if self.noise_levels[0] != 0:
            self.fail("noise_levels", "must start at 0 (exact labels: the advantage there is what noise erodes)")


# What the stage writes besides its executed notebook (declared once; the pipeline installs exactly these).
OUTPUTS = ("figures", "noise_runs.csv", "budget_runs.csv", "metrics.json")
