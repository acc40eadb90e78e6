"""Section 4.2's Atari students against their teacher: the deviation measurement on the log-probabilities
that the distillation stage keeps (``results/distillation/games/<game>/students.pt``), read as plain
tensors, so that this section needs none of Section 4.2's code."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from sobolev.common.install import settled
from sobolev.common.paths import ROOT
from sobolev.deviations.classification import kl_to_teacher
from sobolev.deviations.measure import confidence_bins, deviation_summary, top1_confidences

STUDENTS = "results/distillation/games/{game}/students.pt"


def students_path(game: str) -> Path:
    return ROOT / STUDENTS.format(game=game)


def load_students(game: str) -> dict:
    """The distillation stage's ``students.pt`` for ``game``; a clear error says how to make it."""
    path = students_path(game)
    settled(path.parent)  # an install the distillation stage left unfinished is finished first
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: Section 4.2's distillation stage writes it; run `dvc repro s42-distill@{game}` "
            "(or set deviations.atari_games to [] to skip the Atari students)"
        )
    data = torch.load(path, weights_only=True)
    missing = {"teacher_log_probs", "students"} - set(data)
    if missing:
        raise ValueError(f"{path} lacks {sorted(missing)}: re-run `dvc repro s42-distill@{game}`")
    return data


def atari_deviations(game: str, bins: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per Atari student (fraction of states trained on, method, seed) and split (its training and test
    states): KL(teacher ‖ student), the top-1 action agreement and the deviation summary; and the
    confidence-binned tables. The teacher is the recorded policy the students were distilled from."""
    data = load_students(game)
    teacher = data["teacher_log_probs"]
    rows, tables = [], []
    for s in data["students"]:
        key = {"game": game, "fraction": float(s["fraction"]), "method": s["method"], "seed": int(s["seed"])}
        for split in ("train", "test"):
            t, st = teacher[s[f"{split}_idx"]], s[split]
            rows.append({**key, "split": split, "kl": float(kl_to_teacher(st, t)), **deviation_summary(t, st, bins)})
            tables.append(confidence_bins(*top1_confidences(t, st), bins).assign(**key, split=split))
    return pd.DataFrame(rows), pd.concat(tables, ignore_index=True)
