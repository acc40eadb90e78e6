"""Section 5.4's computation: the teacher, every student, their deviation measurements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

import pandas as pd
import torch

from sobolev.common.utils import progress_bar, set_threads
from sobolev.deviations.atari import atari_deviations
from sobolev.deviations.classification import (
    DISTILLATION,
    METHODS,
    evaluate,
    load_task,
    train_student,
    train_teacher,
)
from sobolev.deviations.config import DeviationsConfig


def jobs(cfg: DeviationsConfig) -> list[tuple[int, str, float, int]]:
    """Every student as ``(width, method, switch_at, seed)``: each width × loss from the start, then the
    switch experiment at ``switch_width`` (labels first, then each distillation loss)."""
    main = [(w, m, 0.0, s) for w in cfg.student_widths for m in METHODS for s in range(cfg.seeds)]
    switch = [(cfg.switch_width, m, a, s) for m in DISTILLATION for a in cfg.switch_at for s in range(cfg.seeds)]
    return main + switch


def run_atari(cfg: DeviationsConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Section 4.2's students of every game in ``cfg.atari_games`` (empty frames when there are none)."""
    parts = [atari_deviations(game, cfg.bins) for game in cfg.atari_games]
    if not parts:
        return pd.DataFrame(), pd.DataFrame()
    return pd.concat([p[0] for p in parts], ignore_index=True), pd.concat([p[1] for p in parts], ignore_index=True)


def run_all(cfg: DeviationsConfig, progress: bool | TextIO = False) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Train the teacher and every student of :func:`jobs`.

    Returns:
        ``runs``: one row per student and split (train, test): width, method, switch_at, seed, split,
        accuracy, kl, slope, low_deviation, low_lower, agreement; ``bins``: the confidence-binned
        table of every student from the start (switch_at = 0) per split; ``teacher``: its accuracies.
    """
    set_threads(cfg.threads)
    task = load_task(cfg.samples, cfg.train_fraction)
    teacher = train_teacher(task, cfg.teacher_width, cfg.teacher_steps, cfg.batch_size, cfg.lr, progress=progress)
    with torch.no_grad():
        info = {
            f"{split}_accuracy": float((teacher(x).argmax(1) == y).double().mean())
            for split, x, y in (("train", task.x_train, task.y_train), ("test", task.x_test, task.y_test))
        }
        info["train_signals"], info["test_signals"] = len(task.y_train), len(task.y_test)
    rows, tables = [], []
    todo = jobs(cfg)
    for width, method, switch_at, seed in progress_bar(todo, f"deviations: {len(todo)} students", progress):
        student = train_student(
            task, teacher, width, method, seed, cfg.steps, cfg.batch_size, cfg.lr, cfg.sobolev_weight, switch_at
        )
        key = {"width": width, "method": method, "switch_at": switch_at, "seed": seed}
        measured, table = evaluate(teacher, student, task, cfg.bins)
        rows += [{**key, **r} for r in measured]
        if switch_at == 0:
            tables.append(table.assign(**key))
    return pd.DataFrame(rows), pd.concat(tables, ignore_index=True), info


METHOD_ORDER = ("labels", "regular", "sobolev", "balanced")  # balanced: Section 4.2's tuned-weight arm


def main_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The students trained one way from the start (no switch)."""
    return runs[runs.switch_at == 0]


def switch_width(runs: pd.DataFrame) -> int:
    """The student width the switch experiment ran at (the smallest width if it did not run)."""
    switched = runs[runs.switch_at > 0]
    return int(switched.width.iloc[0]) if len(switched) else int(runs.width.min())


@dataclass
class Result:
    """Everything the section computes (:func:`run`).

    Attributes:
        cfg: the section's config.
        runs, bins, teacher: every MNIST-1D student's measurements, the confidence-binned table and
            the teacher's accuracies (:func:`run_all`).
        atari_runs, atari_bins: the same for Section 4.2's Atari students (:func:`run_atari`; empty
            when ``cfg.atari_games`` is).
    """

    cfg: DeviationsConfig
    runs: pd.DataFrame
    bins: pd.DataFrame
    teacher: dict
    atari_runs: pd.DataFrame
    atari_bins: pd.DataFrame


def run(cfg: DeviationsConfig, progress: bool | TextIO = False) -> Result:
    """The teacher and every student (:func:`run_all`), then Section 4.2's students (:func:`run_atari`)."""
    runs, bins, teacher = run_all(cfg, progress=progress)
    return Result(cfg, runs, bins, teacher, *run_atari(cfg))
