"""Teacher and students on MNIST-1D: labels, regular distillation and Sobolev distillation, and the
switch from labels to distillation part-way through training.

Every network is an MLP ``40 -> width -> width -> 10`` (ReLU) trained with Adam on minibatches.
Within a seed, every student of one width starts from the same weights and sees the same batches,
whatever its loss (paired comparisons); the teacher is trained once, on the labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sobolev.core.datasets import load_mnist1d_split
from sobolev.core.losses import stochastic_sobolev_loss
from sobolev.core.models import MLP
from sobolev.core.training import train_loop
from sobolev.deviations.measure import confidence_bins, deviation_summary, top1_confidences

METHODS = ("labels", "regular", "sobolev")
DISTILLATION = ("regular", "sobolev")


@dataclass(frozen=True)
class Task:
    """MNIST-1D signals as vectors ``x (N, 40)`` with labels ``y (N,)``, train and test."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def load_task(samples: int, train_fraction: float) -> Task:
    data = load_mnist1d_split(samples, train_fraction)
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    return Task(xtr.flatten(1), ytr, xte.flatten(1), yte)


def network(width: int, seed: int, n_in: int = 40) -> nn.Module:
    """The MLP ``n_in -> width -> width -> 10``, initialised from ``seed``, returning log-probabilities."""
    torch.manual_seed(seed)
    return nn.Sequential(MLP(n_in, (width, width), 10), nn.LogSoftmax(1))


def kl_to_teacher(student_log_probs: Tensor, teacher_log_probs: Tensor) -> Tensor:
    """Mean over the batch of KL(teacher ‖ student), from log-probabilities ``(B, 10)``: the soft-target
    cross-entropy of distillation at T = 1, less the teacher's entropy (a constant)."""
    return (teacher_log_probs.exp() * (teacher_log_probs - student_log_probs)).sum(1).mean()


def _fit(net: nn.Module, loss_at, steps: int, lr: float, desc: str, progress: bool | TextIO) -> None:
    """Adam on ``loss_at(step) -> scalar`` for ``steps`` updates (the one training loop's checks)."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)

    def step(i: int) -> Tensor:
        opt.zero_grad(set_to_none=True)
        loss = loss_at(i)
        loss.backward()
        opt.step()
        return loss.detach()

    train_loop(step, steps, desc=desc, hint=f"deviations.lr = {lr:g} too large", progress=progress)
    net.eval()


def train_teacher(
    task: Task, width: int, steps: int, batch_size: int, lr: float, seed: int = 0, progress: bool | TextIO = False
) -> nn.Module:
    """The teacher: the labels' cross-entropy on minibatches of the training signals."""
    net = network(width, 10_000 + seed, task.x_train.shape[1])
    gen = torch.Generator().manual_seed(seed)

    def loss_at(_: int) -> Tensor:
        idx = torch.randint(len(task.y_train), (batch_size,), generator=gen)
        return F.nll_loss(net(task.x_train[idx]), task.y_train[idx])

    _fit(net, loss_at, steps, lr, "deviations: teacher", progress)
    return net


def train_student(
    task: Task,
    teacher: nn.Module,
    width: int,
    method: str,
    seed: int,
    steps: int,
    batch_size: int,
    lr: float,
    weight: float,
    switch_at: float = 0.0,
    progress: bool | TextIO = False,
) -> nn.Module:
    """One student. ``method``: ``labels`` (cross-entropy with the labels), ``regular`` (KL to the
    teacher's probabilities) or ``sobolev`` (that KL plus ``weight`` × eq. (2)'s projection term: the
    squared difference of the input gradients of ``⟨log p, v⟩`` for a random unit ``v`` in class space,
    teacher against student). With ``switch_at`` > 0 the first ``round(switch_at · steps)`` updates use
    the labels, the rest ``method``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not 0 <= switch_at < 1:
        raise ValueError(f"switch_at must be in [0, 1), got {switch_at}")
    net = network(width, seed, task.x_train.shape[1])
    batches = torch.Generator().manual_seed(20_000 + seed)  # the same batches for every method
    projections = torch.Generator().manual_seed(30_000 + seed)
    on_labels = round(switch_at * steps) if method != "labels" else steps
    with torch.no_grad():
        teacher_train = teacher(task.x_train)

    def loss_at(i: int) -> Tensor:
        idx = torch.randint(len(task.y_train), (batch_size,), generator=batches)
        x = task.x_train[idx]
        if i <= on_labels:
            return F.nll_loss(net(x), task.y_train[idx])
        if method == "regular":
            return kl_to_teacher(net(x), teacher_train[idx])
        return stochastic_sobolev_loss(
            net,
            x,
            teacher_train[idx],
            target_fn=teacher,
            weight=weight,
            direction="output",
            value_loss=kl_to_teacher,
            generator=projections,
        )

    desc = f"deviations: {method} w{width} seed {seed}" + (f" switch {switch_at:g}" if switch_at else "")
    _fit(net, loss_at, steps, lr, desc, progress)
    return net


@torch.no_grad()
def evaluate(teacher: nn.Module, student: nn.Module, task: Task, bins: int) -> tuple[list[dict], pd.DataFrame]:
    """Per split (train, test): the student's accuracy against the labels, its KL to the teacher and
    :func:`~sobolev.deviations.measure.deviation_summary`; and the confidence-binned table per split."""
    rows, tables = [], []
    for split, x, y in (("train", task.x_train, task.y_train), ("test", task.x_test, task.y_test)):
        t, s = teacher(x), student(x)
        rows.append(
            {
                "split": split,
                "accuracy": float((s.argmax(1) == y).double().mean()),
                "kl": float(kl_to_teacher(s, t)),
                **deviation_summary(t, s, bins),
            }
        )
        tables.append(confidence_bins(*top1_confidences(t, s), bins).assign(split=split))
    return rows, pd.concat(tables, ignore_index=True)
