"""The student-teacher deviation section's parameters (``params.yaml: deviations``), validated before any training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sobolev.common.params import MAX_LR, SectionConfig, device, integer, items, number, param, text, threads
from sobolev.core.datasets import require_mnist1d
from sobolev.deviations.atari import load_students


@dataclass(frozen=True)
class DeviationsConfig(SectionConfig):
    """How students deviate from their teacher (Nagarajan et al. 2023), under regular and Sobolev
    distillation, on MNIST-1D: a teacher MLP trained on the labels, students of ``student_widths``
    trained on the same training signals by the labels, by regular distillation (KL to the teacher's
    probabilities) or by Sobolev distillation (plus eq. (2)'s stochastic match of the input gradients
    of the log-probabilities, weight ``sobolev_weight``); paired seeds (same initial student and
    batches for every loss). The switch experiment trains on the labels for a share ``switch_at``
    of the steps, then distils (students of ``switch_width``)."""

    SECTION: ClassVar[str] = "deviations"

    samples: int = param(integer(20, 10_000_000), "MNIST-1D signals generated")
    train_fraction: float = param(number(0, 1, open_low=True), "the first share trains, the rest tests")
    teacher_width: int = param(integer(1, 16_384), "hidden width of the teacher's two layers")
    teacher_steps: int = param(integer(1, 10_000_000))
    student_widths: list[int] = param(items(integer(1, 16_384)), "the first is the teacher's size")
    steps: int = param(integer(1, 10_000_000), "student updates")
    batch_size: int = param(integer(1, 1_000_000))
    lr: float = param(number(0, MAX_LR, open_low=True), "Adam, teacher and students")
    sobolev_weight: float = param(number(0, 1e6, open_low=True), "λ of the projection term")
    seeds: int = param(integer(1, 10_000))
    switch_width: int = param(integer(1, 16_384), "the student width of the switch experiment")
    switch_at: list[float] = param(items(number(0, 1, open_low=True), increasing=True), "shares of steps on labels")
    bins: int = param(integer(1, 1000), "teacher-confidence bins (equal count)")
    atari_games: list[str] = param(items(text, allow_empty=True), "Section 4.2's games whose students to analyse")
    device: str = param(device)
    threads: int = param(threads)

    def check(self) -> None:
        if self.train_fraction >= 1:
            self.fail("train_fraction", "must be below 1 (the rest is the test set)")
        if self.samples % 10:
            self.fail("samples", "must be a multiple of 10 (MNIST-1D generates one share per class)")
        if any(s >= 1 for s in self.switch_at):
            self.fail("switch_at", "must be shares of the steps below 1 (1 would never distil)")
        if self.switch_width not in self.student_widths:
            self.fail("switch_width", f"must be one of student_widths {self.student_widths}")
        if self.student_widths[0] != self.teacher_width:
            self.fail("student_widths", f"must start with the teacher's width ({self.teacher_width})")

    def check_inputs(self) -> None:
        """MNIST-1D's package, and each Atari game's students from Section 4.2's distillation stage."""
        require_mnist1d()
        for game in self.atari_games:
            load_students(game)


# What the stage writes besides its executed notebook (declared once; the pipeline installs exactly these).
OUTPUTS = ("figures", "runs.csv", "atari_runs.csv", "bins.csv", "atari_bins.csv", "metrics.json")
