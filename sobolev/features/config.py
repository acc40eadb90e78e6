"""The feature-update section's parameters (``params.yaml: features``), validated before any training."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from sobolev.common.params import MAX_LR, SectionConfig, choice, device, integer, items, number, param, threads
from sobolev.core.functions import FUNCTIONS

MAX_POINTS = 10_000_000
FUNCTION = choice(tuple(sorted(FUNCTIONS)))


@dataclass(frozen=True)
class FeaturesConfig(SectionConfig):
    """Iterative linearisation of Section 4.1's regression: regular and Sobolev training of f_lin whose
    anchor (the features) moves every K updates, K over ``every``, at a fixed budget of ``steps``
    updates (Adam at the constant rate ``lr``, full batch, raw targets, λ = 1); paired seeds (same
    training points and initial weights for every K and both losses). Test error is recorded at
    ``checkpoints`` (the phase diagram: training time × K). The classification task: students of a
    digits teacher (``class_*``) distilled as f_lin, by regular and by Sobolev distillation."""

    SECTION: ClassVar[str] = "features"

    functions: list[str] = param(items(FUNCTION))
    n_train: int = param(integer(1, MAX_POINTS))
    seeds: int = param(integer(1, 10_000))
    steps: int = param(integer(1, 10_000_000))
    every: list[int] = param(items(integer(1, 10_000_000), increasing=True))
    checkpoints: list[int] = param(items(integer(1, 10_000_000), increasing=True))
    lr: float = param(number(0, MAX_LR, open_low=True))
    hidden: int = param(integer(1, 16_384))
    phase_function: str = param(FUNCTION)
    within: float = param(number(0, 10, open_low=True))
    class_train: int = param(integer(10, 1200))  # digits images the students are distilled on
    class_seeds: int = param(integer(1, 10_000))  # paired seeds of the digits students (their own budget)
    class_hidden: int = param(integer(1, 16_384))
    class_lr: float = param(number(0, MAX_LR, open_low=True))
    class_teacher_steps: int = param(integer(1, 10_000_000))
    class_weight: float = param(number(0, 1e6, open_low=True))  # λ of the projection term
    n_test: int = param(integer(1, MAX_POINTS))
    ensemble_size: int = param(integer(1, 100_000))
    device: str = param(device)
    threads: int = param(threads)
    log_every: int = param(integer(1, 10_000_000))

    def check(self) -> None:
        if self.every[0] != 1 or self.every[-1] < self.steps:
            self.fail("every", f"must start at 1 (ordinary training) and reach steps ({self.steps}: fixed features)")
        if self.checkpoints[-1] != self.steps:
            self.fail("checkpoints", f"must end at steps ({self.steps})")
        if self.phase_function not in self.functions:
            self.fail("phase_function", f"must be one of functions {self.functions}")


# What the stage writes besides its executed notebook (declared once; the pipeline installs exactly these).
OUTPUTS = ("figures", "runs.csv", "curve.csv", "digits.csv", "metrics.json")


METHODS = ("regular", "sobolev")  # the two losses every run is trained with, paired per seed


def rounds(steps: int, every: int) -> int:
    """The number of anchors (feature sets) a run of ``steps`` updates uses: ⌈steps / K⌉; its
    feature updates are one fewer (K = steps: 1 anchor, no feature update, the fixed-feature model)."""
    return math.ceil(steps / every)
