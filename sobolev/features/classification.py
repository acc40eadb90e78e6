"""Iterative linearisation on a classification task: students distilled from a teacher on scikit-learn's
digits (offline), by regular distillation (soft targets: the KL to the teacher's probabilities) and by
Sobolev distillation (soft targets plus eq. (2)'s stochastic match of input-derivative projections of the
log-probabilities), each trained as f_lin around an anchor that moves every K updates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.nn import functional as F

from sobolev.core.linearisation import linearised_module
from sobolev.core.losses import stochastic_sobolev_loss
from sobolev.core.models import MLP
from sobolev.core.training import train_loop
from sobolev.features.config import METHODS, FeaturesConfig, rounds


@dataclass(frozen=True)
class Digits:
    """Standardised 8×8 digit images ``x (N, 64)`` and labels ``y (N,)``: the teacher's training set,
    the students' (a subset of it) and the test set."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def load_digits_split(n_test: int = 597, seed: int = 0) -> Digits:
    """scikit-learn's digits (bundled with the package: no download), shuffled once by ``seed``,
    the last ``n_test`` images held out; pixels standardised with the training set's statistics."""
    from sklearn.datasets import load_digits  # the pipeline extra's, imported only when used

    data = load_digits()
    order = np.random.default_rng(seed).permutation(len(data.target))
    x = torch.tensor(data.data[order], dtype=torch.float32)
    y = torch.tensor(data.target[order], dtype=torch.long)
    mean, std = x[:-n_test].mean(0), x[:-n_test].std(0).clamp_min(1e-3)
    x = (x - mean) / std
    return Digits(x[:-n_test], y[:-n_test], x[-n_test:], y[-n_test:])


def train_teacher(data: Digits, hidden: int, steps: int, lr: float, seed: int = 0) -> MLP:
    """A ReLU MLP ``64 -> hidden -> hidden -> 10`` trained on the labels (full batch, Adam)."""
    torch.manual_seed(seed)
    net = MLP(data.x_train.shape[1], (hidden, hidden), 10)
    opt = torch.optim.Adam(net.parameters(), lr=lr)

    def step(_: int) -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(net(data.x_train), data.y_train)
        loss.backward()
        opt.step()
        return loss.detach()

    train_loop(step, steps, desc="features: teacher", hint="features.class_lr too large", progress=False)
    return net.eval()


def _kl(log_student: Tensor, log_teacher: Tensor) -> Tensor:
    """Mean over the batch of KL(teacher ‖ student) from log-probabilities ``(B, 10)``."""
    return (log_teacher.exp() * (log_teacher - log_student)).sum(1).mean()


def distil(
    teacher: MLP,
    data: Digits,
    cfg: FeaturesConfig,
    method: str,
    every: int,
    seed: int,
    progress: bool | TextIO = False,
) -> list[dict]:
    """Train one student of ``method`` (regular or Sobolev distillation) as f_lin with the anchor moving
    every ``every`` updates, on the first ``class_train`` training images; returns one row per checkpoint:
    ``test_accuracy`` (labels), ``test_agreement`` (teacher's top-1), ``test_kl`` (to the teacher)."""
    x = data.x_train[: cfg.class_train]
    with torch.no_grad():
        log_teacher = F.log_softmax(teacher(x), 1)
        log_teacher_test = F.log_softmax(teacher(data.x_test), 1)

    def teacher_log_probs(z: Tensor) -> Tensor:
        return F.log_softmax(teacher(z), 1)

    torch.manual_seed(seed)  # the same initial student for every K and both losses
    net = MLP(x.shape[1], (cfg.class_hidden, cfg.class_hidden), 10)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in net.named_parameters()}
    opt = torch.optim.Adam(list(params.values()), lr=cfg.class_lr)
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, dict[str, Tensor]] = {}
    rows: list[dict] = []
    checkpoints = set(cfg.checkpoints)

    def student(z: Tensor) -> Tensor:
        return F.log_softmax(linearised_module(net, params, state["anchor"], z), 1)

    def step(i: int) -> Tensor:
        if (i - 1) % every == 0:
            state["anchor"] = {k: v.detach().clone() for k, v in params.items()}
        opt.zero_grad()
        if method == "sobolev":
            loss = stochastic_sobolev_loss(student, x, log_teacher, target_fn=teacher_log_probs,
                                           weight=cfg.class_weight, value_loss=_kl, generator=gen)  # fmt: skip
        else:
            loss = _kl(student(x), log_teacher)
        loss.backward()
        opt.step()
        if i in checkpoints:
            with torch.no_grad():
                out = student(data.x_test)
            rows.append({"seed": seed, "method": method, "every": every, "step": i, "rounds": rounds(i, every),
                         "test_accuracy": float((out.argmax(1) == data.y_test).float().mean()),
                         "test_agreement": float((out.argmax(1) == log_teacher_test.argmax(1)).float().mean()),
                         "test_kl": float(_kl(out, log_teacher_test))})  # fmt: skip
        return loss.detach()

    train_loop(step, cfg.steps, desc=f"features: digits {method} K={every} seed {seed}",
               hint=f"features.class_lr = {cfg.class_lr} too large", progress=progress)  # fmt: skip
    return rows


def run_classification(cfg: FeaturesConfig, progress: bool | TextIO = False) -> tuple[pd.DataFrame, dict]:
    """Every (seed, loss, K) student at every checkpoint, and the teacher's test accuracy."""
    data = load_digits_split()
    teacher = train_teacher(data, cfg.class_hidden, cfg.class_teacher_steps, cfg.class_lr)
    with torch.no_grad():
        teacher_acc = float((teacher(data.x_test).argmax(1) == data.y_test).float().mean())
    rows = []
    for method in METHODS:
        for every in cfg.every:
            for seed in range(cfg.class_seeds):
                rows += distil(teacher, data, cfg, method, every, seed, progress)
    runs = pd.DataFrame(rows)
    return runs, {"teacher_test_accuracy": teacher_acc, "students_train_images": cfg.class_train}
