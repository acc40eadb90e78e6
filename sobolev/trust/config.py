"""The relative-trust section's parameters (``params.yaml: trust``), validated before any training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sobolev.common.params import MAX_LR, SectionConfig, choice, device, integer, items, number, param, threads
from sobolev.core.functions import FUNCTIONS
from sobolev.core.optimisers import OPTIMISERS
from sobolev.core.samples import NORMALISATIONS

MAX_POINTS = 10_000_000
LR = number(0, MAX_LR, open_low=True)


@dataclass(frozen=True)
class TrustConfig(SectionConfig):
    """Sobolev against regular training without tuning (Fromage at its default rate), the
    learning-rate sensitivity of Adam, Fromage and LARS, Fromage's weight norms with and
    without ``p_bound``, and deep relative trust measured on outputs and input gradients.

    Every run is a Section 4.1 regression run: raw targets (the paper's setting) or standardised
    data (``standard``), derivative weight λ = 1, two hidden ReLU layers of ``hidden`` units,
    ``steps`` updates with the same warm-up and cosine schedule for every optimiser; within a
    seed, both losses and every optimiser see the same training points and initial weights.
    """

    SECTION: ClassVar[str] = "trust"

    functions: list[str] = param(items(choice(tuple(sorted(FUNCTIONS)))))
    grid_normalisations: list[str] = param(items(choice(NORMALISATIONS)))
    sizes: list[int] = param(items(integer(1, MAX_POINTS)))
    seeds: list[int] = param(items(integer(1, 10_000), repeats=True))
    adam_lrs: list[float] = param(items(LR))  # tuned on validation, per function, size and loss
    fromage_lr: float = param(LR)  # Fromage's published default, untuned
    steps: int = param(integer(10, 10_000_000))
    warmup: float = param(number(0, 0.5))
    batch_size: int = param(integer(1, MAX_POINTS))
    hidden: int = param(integer(1, 16_384))
    sweep_functions: list[str] = param(items(choice(tuple(sorted(FUNCTIONS)))))
    sweep_normalisations: list[str] = param(items(choice(NORMALISATIONS)))
    sweep_size: int = param(integer(1, MAX_POINTS))
    sweep_seeds: int = param(integer(1, 10_000))
    sweep_lrs: list[float] = param(items(LR, increasing=True))
    sweep_optimisers: list[str] = param(items(choice(OPTIMISERS)))
    good_factor: float = param(number(1, 1e6, open_low=True))
    norm_steps: int = param(integer(10, 10_000_000))
    norm_seeds: int = param(integer(1, 10_000), "paired seeds of the weight-norm runs (Fromage, LARS)")
    norm_lr: float = param(LR)
    p_bound: float = param(number(0, 1e6, open_low=True))
    trust_eps: list[float] = param(items(number(0, 10, open_low=True), increasing=True))
    trust_seeds: int = param(integer(1, 10_000))
    trust_draws: int = param(integer(1, 1000))
    trust_points: int = param(integer(1, MAX_POINTS))
    converged_change: float = param(number(0, 1, open_low=True))
    n_test: int = param(integer(1, MAX_POINTS))
    n_val: int = param(integer(1, MAX_POINTS))
    ensemble_size: int = param(integer(1, 100_000))
    device: str = param(device)
    threads: int = param(threads)
    log_every: int = param(integer(1, 10_000_000))

    def check(self) -> None:
        if len(self.seeds) != len(self.sizes):
            self.fail("seeds", f"must give one seed count per size in sizes {self.sizes}")
        if self.trust_seeds > self.seeds[-1]:
            self.fail("trust_seeds", f"must be at most the seeds at the largest size ({self.seeds[-1]})")
        if self.n_test < self.trust_points:
            self.fail("trust_points", f"must be at most n_test ({self.n_test})")
        if self.log_every > self.norm_steps:
            self.fail("log_every", f"must be at most norm_steps ({self.norm_steps})")


# What the stage writes besides its executed notebook (declared once; the pipeline installs exactly these).
OUTPUTS = ("figures", "runs.csv", "cells.csv", "trust.csv", "metrics.json")
