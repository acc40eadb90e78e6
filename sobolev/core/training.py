"""The one training loop, used by every section, and the batched-ensemble trainer built on it.

:func:`train_loop` owns what every run needs: the progress bar, the logging interval, and a
check after every step that stops the run on a NaN/inf loss with a message naming the run, the
step and the likely parameter, before anything is written. Sections supply only the step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

import torch
from torch import Tensor

from sobolev.common.utils import progress_bar
from sobolev.core.models import BatchedAdam, BatchedMLP


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or infinite; the message says where and what to change."""


def train_loop(
    step: Callable[[int], Tensor | float],
    steps: int,
    *,
    desc: str,
    hint: str,
    log_every: int = 0,
    on_log: Callable[[int, Tensor], None] | None = None,
    progress: bool | TextIO = True,
    tolerate: bool = False,
    describe: Callable[[list[int]], str] | None = None,
) -> list[int]:
    """Call ``step(i)`` for ``i = 1 .. steps``; each call trains once and returns its loss.

    Args:
        step: one update; returns the loss, a scalar or one value per model ``(M,)``.
        steps: number of updates (a positive integer).
        desc: names the run (progress bar and error messages), e.g. ``"regression: sobolev n=20"``.
        hint: the likely cause of a non-finite loss, naming the parameter to change
            (e.g. ``"regression.lrs too large"``).
        log_every: call ``on_log(i, loss)`` every this many steps and at the last (0: never).
        progress: a tqdm bar; a stream (``sys.__stderr__``) keeps it out of papermill notebooks.
        tolerate: for ensembles of independent models: a model whose loss is non-finite is
            reported (its losses stay NaN, and model selection must let it lose); the run
            stops only when every model has diverged.
        describe: maps diverged model indices to words for the message (ensembles).

    Returns:
        The indices of the models that diverged (empty when none did, or for scalar losses).

    Raises:
        NonFiniteLossError: at the first non-finite loss (every model's, with ``tolerate``).
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    diverged: list[int] = []
    for i in progress_bar(range(1, steps + 1), desc, progress):
        loss = step(i)
        loss_t = loss.detach() if isinstance(loss, Tensor) else torch.tensor(float(loss))
        finite = torch.isfinite(loss_t)
        if not bool(finite.all()):
            bad = torch.nonzero(~finite.reshape(-1)).flatten().tolist()
            new = [b for b in bad if b not in diverged]
            if not tolerate or len(bad) == finite.numel():
                who = f" ({describe(bad)})" if describe and loss_t.ndim else ""
                raise NonFiniteLossError(
                    f"{desc}: the training loss became {loss_t.reshape(-1)[bad[0]].item()} at step {i} of "
                    f"{steps}{who}; likely cause: {hint}. Nothing was written."
                )
            diverged += new
        if on_log is not None and log_every and (i % log_every == 0 or i == steps):
            on_log(i, loss_t)
    return diverged


def train_ensemble(
    model: BatchedMLP,
    x: Tensor,
    t: Tensor,
    lr: Tensor,
    steps: int,
    batch_size: int,
    G: Tensor | None = None,
    weight: Tensor | None = None,
    generator: torch.Generator | None = None,
    log_every: int = 0,
    desc: str = "train",
    hint: str = "learning rate too large",
    describe: Callable[[list[int]], str] | None = None,
    progress: bool | TextIO = True,
) -> Tensor:
    """Train ``model`` in place with Adam on regular (``G is None``) or Sobolev loss.

    Args:
        model: ``M`` models.
        x: training inputs ``(M, N, D)``, one training set per model.
        t: training values ``(M, N)``.
        lr: learning rate per model ``(M,)``.
        steps: Adam steps.
        batch_size: minibatch size; ``N <= batch_size`` trains on the full set every step,
            otherwise each model draws its own minibatch (uniform, with replacement).
        G: training input gradients ``(M, N, D)`` for Sobolev training.
        weight: derivative weight per model ``(M,)`` (Sobolev only).
        log_every: record the per-model training loss every this many steps (0: never).
        desc, hint, describe, progress: as in :func:`train_loop`; a model that diverges
            keeps training on NaN (models are independent) and its losses are NaN.

    Returns:
        Logged training losses ``(n_logs, M)``: the value loss, plus ``weight`` × the
        gradient loss for Sobolev models.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    M, N, _ = x.shape
    if t.shape != (M, N):
        raise ValueError(f"t: expected shape {(M, N)}, got {tuple(t.shape)}")
    opt = BatchedAdam(model.params, lr)
    rows = torch.arange(M, device=x.device).unsqueeze(1)
    full = batch_size >= N
    history: list[Tensor] = []

    def step(_: int) -> Tensor:
        if full:
            xb, tb, Gb = x, t, G
        else:
            idx = torch.randint(N, (M, batch_size), generator=generator, device="cpu").to(x.device)
            xb, tb = x[rows, idx], t[rows, idx]
            Gb = None if G is None else G[rows, idx]
        res = model.loss_and_grads(xb, tb, Gb, weight)
        opt.step(res.grads)
        return res.value_loss if res.grad_loss is None else res.value_loss + weight * res.grad_loss

    train_loop(
        step, steps, desc=desc, hint=hint, log_every=log_every, on_log=lambda _, loss: history.append(loss.cpu()),
        progress=progress, tolerate=True, describe=describe,
    )  # fmt: skip
    return torch.stack(history) if history else torch.empty(0, M)
