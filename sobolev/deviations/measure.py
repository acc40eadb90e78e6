"""How a student's confidence deviates from its teacher's (Nagarajan et al. 2023, Section 3).

For each input, the teacher's top-1 class ``c``, the teacher's probability ``p_t`` of ``c`` and
the student's probability ``p_s`` of the same class ``c``, both on the logit scale
``log(p / (1 - p))``. Binned by the teacher's confidence, the student's mean logit against the
teacher's shows where the student is more (above the diagonal) or less (below) confident; the
least-squares slope of the student's logit on the teacher's summarises it: above 1 the student
*exaggerates* the teacher's confidence levels (lower where the teacher is unsure, higher where
it is sure), 1 is a faithful copy.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import Tensor

EPS = 1e-9  # probabilities are clipped to [EPS, 1 - EPS] before the logit: finite at 0 and 1


def logit(p: Tensor) -> Tensor:
    """``log(p / (1 - p))`` of probabilities ``p`` (any shape), in float64, clipped to ``[EPS, 1 - EPS]``."""
    p = p.double().clamp(EPS, 1 - EPS)
    return torch.log(p) - torch.log1p(-p)


def top1_confidences(teacher_log_probs: Tensor, student_log_probs: Tensor) -> tuple[Tensor, Tensor]:
    """The teacher's probability of its top-1 class and the student's probability of that class.

    Args:
        teacher_log_probs, student_log_probs: ``(N, C)`` log-probabilities on the same inputs.

    Returns:
        ``(p_teacher, p_student)``, each ``(N,)`` float64.
    """
    if teacher_log_probs.shape != student_log_probs.shape or teacher_log_probs.ndim != 2:
        raise ValueError(
            "teacher and student log-probabilities must both be (N, C) on the same inputs, got "
            f"{tuple(teacher_log_probs.shape)} and {tuple(student_log_probs.shape)}"
        )
    top = teacher_log_probs.argmax(1, keepdim=True)
    # exp in float64: a top-1 probability within 1e-7 of 1 keeps its distance from 1 (the logit needs it)
    return tuple(lp.gather(1, top).squeeze(1).double().exp() for lp in (teacher_log_probs, student_log_probs))


def exaggeration_slope(p_teacher: Tensor, p_student: Tensor) -> float:
    """Least-squares slope of ``logit(p_student)`` on ``logit(p_teacher)`` over all inputs ``(N,)``:
    1 for a faithful copy, above 1 where the student exaggerates the teacher's confidence levels.
    NaN when the teacher's confidences do not vary (the slope is undefined)."""
    x, y = logit(p_teacher).double(), logit(p_student).double()
    dx = x - x.mean()
    var = float((dx * dx).sum())
    if var <= 1e-12 * max(1, len(x)):
        return float("nan")
    return float((dx * (y - y.mean())).sum() / var)


def confidence_bins(p_teacher: Tensor, p_student: Tensor, bins: int = 10) -> pd.DataFrame:
    """Inputs binned by the teacher's confidence into ``bins`` equal-count bins (sorted by ``p_teacher``;
    ties broken by input order), per bin: ``n``, the mean teacher and student logits and probabilities,
    ``deviation`` (student logit − teacher logit, mean) and ``lower`` (the share of inputs where the
    student is less confident than the teacher). Bin 0 holds the least confident inputs."""
    n = len(p_teacher)
    if not 1 <= bins <= n:
        raise ValueError(f"bins must be in 1..{n} (the number of inputs), got {bins}")
    order = torch.argsort(p_teacher, stable=True)
    which = torch.empty(n, dtype=torch.long)
    which[order] = torch.arange(n) * bins // n
    lt, ls = logit(p_teacher), logit(p_student)
    frame = pd.DataFrame(
        {
            "bin": which.numpy(),
            "teacher_logit": lt.double().numpy(),
            "student_logit": ls.double().numpy(),
            "teacher_p": p_teacher.double().numpy(),
            "student_p": p_student.double().numpy(),
        }
    )
    frame["deviation"] = frame.student_logit - frame.teacher_logit
    frame["lower"] = (frame.student_p < frame.teacher_p).astype(float)
    out = frame.groupby("bin").agg(
        n=("teacher_p", "size"),
        teacher_logit=("teacher_logit", "mean"),
        student_logit=("student_logit", "mean"),
        teacher_p=("teacher_p", "mean"),
        student_p=("student_p", "mean"),
        deviation=("deviation", "mean"),
        lower=("lower", "mean"),
    )
    return out.reset_index()


def deviation_summary(teacher_log_probs: Tensor, student_log_probs: Tensor, bins: int = 10) -> dict[str, float]:
    """The numbers a comparison needs, for one student on one set of inputs: ``slope``,
    ``low_deviation`` (mean student − teacher logit in the least confident bin), ``low_lower`` (the
    share of that bin where the student is less confident) and ``agreement`` (top-1 classes agree)."""
    p_t, p_s = top1_confidences(teacher_log_probs, student_log_probs)
    table = confidence_bins(p_t, p_s, bins)
    agree = float((teacher_log_probs.argmax(1) == student_log_probs.argmax(1)).double().mean())
    return {
        "slope": exaggeration_slope(p_t, p_s),
        "low_deviation": float(table.deviation.iloc[0]),
        "low_lower": float(table.lower.iloc[0]),
        "agreement": agree,
    }
