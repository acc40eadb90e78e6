"""Section 4.1's parameters (``params.yaml: regression``), validated before any training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sobolev.common.params import MAX_LR, SectionConfig, choice, device, integer, items, number, param, threads
from sobolev.core.data import NORMALISATIONS
from sobolev.core.functions import FUNCTIONS

MAX_POINTS = 10_000_000


@dataclass(frozen=True)
class RegressionConfig(SectionConfig):
    """Section 4.1: regression of the seven 2-D functions.

    The grid is ``functions × sizes × {regular, sobolev} × normalisations × lrs × seeds``
    with derivative weight 1 (the paper's equal weights), plus, at ``sweep_sizes`` only,
    Sobolev runs with each of ``sweep_weights``. Regular and Sobolev share the learning-rate
    grid, the step count and the normalisations: the same tuning budget. Models train in
    batched ensembles of at most ``ensemble_size``. ``long_steps > 0`` adds a second, longer
    run of the faithful setting at the largest size only.
    """

    SECTION: ClassVar[str] = "regression"

    functions: list[str] = param(items(choice(tuple(sorted(FUNCTIONS)))))
    sizes: list[int] = param(items(integer(1, MAX_POINTS)))
    seeds: int = param(integer(1, 10_000))
    lrs: list[float] = param(items(number(0, MAX_LR, open_low=True)))
    steps: int = param(integer(1, 10_000_000))
    batch_size: int = param(integer(1, MAX_POINTS))
    hidden: int = param(integer(1, 16_384))
    normalisations: list[str] = param(items(choice(NORMALISATIONS)))
    sweep_weights: list[float] = param(items(number(0, 1e6, open_low=True), allow_empty=True))
    sweep_sizes: list[int] = param(items(integer(1, MAX_POINTS), allow_empty=True))
    n_test: int = param(integer(1, MAX_POINTS))
    n_val: int = param(integer(1, MAX_POINTS))
    ensemble_size: int = param(integer(1, 100_000))
    long_steps: int = param(integer(0, 10_000_000))
    device: str = param(device)
    threads: int = param(threads)
    log_every: int = param(integer(1, 10_000_000))

    def check(self) -> None:
        if 1.0 in self.sweep_weights:
            self.fail("sweep_weights", "must not contain 1.0 (λ = 1 always runs)")
        for s in self.sweep_sizes:
            if s not in self.sizes:
                self.fail("sweep_sizes", f"entry {s!r} must be one of sizes {self.sizes}")
        if self.long_steps and self.long_steps <= self.steps:
            self.fail("long_steps", f"must be 0 (skip) or more than steps ({self.steps})")
