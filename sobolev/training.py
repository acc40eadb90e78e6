"""Training loops for batched ensembles (all models advance one Adam step together)."""

from __future__ import annotations

from typing import TextIO

import torch
from torch import Tensor

from sobolev.models import BatchedAdam, BatchedMLP
from sobolev.utils import progress_bar


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
        progress: show a tqdm bar; a stream (e.g. ``sys.__stderr__``) sends it there, which
            keeps bars out of notebooks executed by papermill while the terminal shows them.

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
    history = []
    for step in progress_bar(range(1, steps + 1), desc, progress):
        if full:
            xb, tb, Gb = x, t, G
        else:
            idx = torch.randint(N, (M, batch_size), generator=generator, device="cpu").to(x.device)
            xb, tb = x[rows, idx], t[rows, idx]
            Gb = None if G is None else G[rows, idx]
        res = model.loss_and_grads(xb, tb, Gb, weight)
        opt.step(res.grads)
        if log_every and (step % log_every == 0 or step == steps):
            loss = res.value_loss if res.grad_loss is None else res.value_loss + weight * res.grad_loss
            history.append(loss.detach().cpu())
    return torch.stack(history) if history else torch.empty(0, M)
