"""Section 4.1's parameters (``params.yaml: regression``), validated before any training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sobolev.common.params import MAX_LR, SectionConfig, choice, device, integer, items, number, param, threads
from sobolev.core.functions import FUNCTIONS
from sobolev.core.training import SCHEDULES

MAX_POINTS = 10_000_000

#: Training arms: ``method-normalisation``. ``regular``: values only; ``sobolev``: the paper's
#: eq. (1), derivative weight λ on every input; ``balanced``: differential machine learning's
#: balanced loss (:func:`sobolev.core.losses.balanced_weights`), on standardised data only.
ARMS: tuple[str, ...] = ("regular-raw", "regular-standard", "sobolev-raw", "sobolev-standard", "balanced-standard")
DTYPES: tuple[str, ...] = ("float32", "float64")


def arm_parts(arm: str) -> tuple[str, str]:
    """``"sobolev-raw"`` → ``("sobolev", "raw")``."""
    method, normalisation = arm.split("-")
    return method, normalisation


def baseline_of(arm: str) -> str:
    """The regular arm a derivative-matching arm is compared with: the same data scale."""
    return f"regular-{arm_parts(arm)[1]}"


#: A grid built in code, for :meth:`RegressionConfig.in_code` (an installed wheel has no
#: ``params.yaml``): the committed default scale's method (arms, learning-rate grid, schedule,
#: steps, network) at one size and 5 seeds, without the weight sweep; ``threads = 0`` leaves
#: the caller's torch thread count alone.
IN_CODE_DEFAULTS: dict[str, object] = {
    "functions": ["rosenbrock"],
    "sizes": [100],
    "seeds": [5],
    "arms": ["regular-raw", "sobolev-raw", "regular-standard", "balanced-standard"],
    "lrs": [0.003, 0.03],
    "steps": 550,
    "schedule": "cosine",
    "warmup": 0.05,
    "batch_size": 100,
    "hidden": 256,
    "sweep_weights": [],
    "sweep_sizes": [],
    "sweep_arms": [],
    "sweep_seeds": 1,
    "converged_change": 0.05,
    "n_test": 10_000,
    "n_val": 1_000,
    "ensemble_size": 42,
    "dtype": "float32",
    "device": "auto",
    "threads": 0,
    "log_every": 50,
}


@dataclass(frozen=True)
class RegressionConfig(SectionConfig):
    """Section 4.1: regression of the seven 2-D functions (or a user's functions).

    The grid is ``functions × sizes × arms × lrs × seeds`` (``seeds[i]`` paired seeds at
    ``sizes[i]``), derivative weight λ = 1, plus, at ``sweep_sizes`` only, the arms of
    ``sweep_arms`` with each of ``sweep_weights`` on the first ``sweep_seeds`` seeds. Every
    arm shares the learning-rate grid, the schedule and the step count: the same tuning
    budget. Within a seed, every arm sees the same training points and initial weights.
    A run counts as converged when its whole-training-set loss changed by less than
    ``converged_change`` (relative) over the last tenth of training.
    """

    SECTION: ClassVar[str] = "regression"

    functions: list[str] = param(items(choice(tuple(sorted(FUNCTIONS)))))
    sizes: list[int] = param(items(integer(1, MAX_POINTS)))
    seeds: list[int] = param(items(integer(1, 10_000), repeats=True))
    arms: list[str] = param(items(choice(ARMS)))
    lrs: list[float] = param(items(number(0, MAX_LR, open_low=True)))
    steps: int = param(integer(10, 10_000_000))
    schedule: str = param(choice(SCHEDULES))
    warmup: float = param(number(0, 0.5))
    batch_size: int = param(integer(1, MAX_POINTS))
    hidden: int = param(integer(1, 16_384))
    sweep_weights: list[float] = param(items(number(0, 1e6, open_low=True), allow_empty=True))
    sweep_sizes: list[int] = param(items(integer(1, MAX_POINTS), allow_empty=True))
    sweep_arms: list[str] = param(items(choice(ARMS), allow_empty=True))
    sweep_seeds: int = param(integer(1, 10_000))
    converged_change: float = param(number(0, 1, open_low=True))
    n_test: int = param(integer(1, MAX_POINTS))
    n_val: int = param(integer(1, MAX_POINTS))
    ensemble_size: int = param(integer(1, 100_000))
    dtype: str = param(choice(DTYPES))
    device: str = param(device)
    threads: int = param(threads)
    log_every: int = param(integer(1, 10_000_000))

    def check(self) -> None:
        if len(self.seeds) != len(self.sizes):
            self.fail("seeds", f"must give one seed count per entry of sizes {self.sizes}")
        if len(set(self.arms)) != len(self.arms):
            self.fail("arms", "must not repeat an arm")
        for arm in self.arms:
            if not arm.startswith("regular") and baseline_of(arm) not in self.arms:
                self.fail("arms", f"{arm!r} needs its baseline {baseline_of(arm)!r} in the list")
        if 1.0 in self.sweep_weights:
            self.fail("sweep_weights", "must not contain 1.0 (λ = 1 always runs)")
        for s in self.sweep_sizes:
            if s not in self.sizes:
                self.fail("sweep_sizes", f"entry {s!r} must be one of sizes {self.sizes}")
        for arm in self.sweep_arms:
            if arm not in self.arms or arm.startswith("regular"):
                self.fail("sweep_arms", f"entry {arm!r} must be a derivative-matching arm of arms {self.arms}")
        for s in self.sweep_sizes:
            if self.sweep_seeds > self.seeds_at(s):
                self.fail("sweep_seeds", f"must be at most the {self.seeds_at(s)} seeds at size {s}")

    @classmethod
    def in_code(cls, **changes: object) -> RegressionConfig:
        """A grid without ``params.yaml``: :data:`IN_CODE_DEFAULTS` with ``changes``, checked
        like the file's values (e.g. ``RegressionConfig.in_code(sizes=[20, 100], seeds=[5, 5])``)."""
        return cls.from_values({**IN_CODE_DEFAULTS, **changes})

    def seeds_at(self, size: int) -> int:
        """The number of paired seeds at training size ``size``."""
        return self.seeds[self.sizes.index(size)]


# How the figures, tables and README name each arm.
ARM_LABELS = {
    "regular-raw": "regular (raw)",
    "sobolev-raw": "Sobolev (raw, paper)",
    "regular-standard": "regular (standardised)",
    "sobolev-standard": "Sobolev (standardised)",
    "balanced-standard": "balanced Sobolev (DML)",
}


# What the stage writes besides its executed notebook (declared once; the pipeline installs exactly these).
OUTPUTS = ("figures", "runs.csv", "cells.csv", "checkpoints.pt", "train_curves.csv", "metrics.json")
