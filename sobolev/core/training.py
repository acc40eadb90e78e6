"""The one training loop, used by every section, and the batched-ensemble trainer built on it.

:func:`train_loop` owns what every run needs: the progress bar, the logging interval, and a
check after every step that stops the run on a NaN/inf loss with a message naming the run, the
step and the likely parameter, before anything is written. Sections supply only the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

import torch
from torch import Tensor

from sobolev.common.utils import progress_bar
from sobolev.core.models import BatchedMLP
from sobolev.core.optimisers import batched_optimiser


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or infinite; the message says where and what to change."""


def train_loop(
    step: Callable[[int], Tensor | float],
    steps: int,
    *,
    desc: str,
    hint: str,
    log_every: int = 0,
    on_log: Callable[[int, Tensor], bool | None] | None = None,
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
        log_every: call ``on_log(i, loss)`` every this many steps and at the last (0: never);
            when it returns ``True`` training stops there (early stopping).
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
    bar = progress_bar(range(1, steps + 1), desc, progress)
    for i in bar:
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
        if on_log is not None and log_every and (i % log_every == 0 or i == steps) and on_log(i, loss_t):
            break
    bar.close()
    return diverged


SCHEDULES: tuple[str, ...] = ("constant", "cosine")


def lr_factor(step: int, steps: int, schedule: str = "constant", warmup: float = 0.0) -> float:
    """The learning rate of update ``step`` (1-based) of ``steps``, as a fraction of the peak.

    ``constant``: 1 after the warm-up. ``cosine``: half a cosine from 1 down to 0 at the last
    update, after the warm-up. The warm-up (the first ``warmup`` fraction of the updates) rises
    linearly from ``1/n_warmup`` to 1.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not 0.0 <= warmup < 1.0:
        raise ValueError(f"warmup must be a fraction in [0, 1), got {warmup!r}")
    n_warm = int(warmup * steps)
    if step <= n_warm:
        return step / n_warm
    if schedule == "constant":
        return 1.0
    progress = (step - n_warm - 1) / max(steps - n_warm - 1, 1)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def per_model(name: str, value: Tensor | float, M: int, like: Tensor) -> Tensor:
    """``value`` as a tensor with a leading model axis of ``M`` (a number is repeated), on
    ``like``'s device and dtype."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        return t.expand(M).clone()
    if t.shape[0] != M:
        raise ValueError(f"{name}: expected one number or {M} per-model values, got shape {tuple(t.shape)}")
    return t


@dataclass
class EnsembleHistory:
    """What :func:`train_ensemble` records.

    Attributes:
        steps: the logged update numbers.
        loss: the training loss at those updates ``(n_logs, M)`` (a minibatch's, or the whole
            set's when it fits in one batch), before the update.
        full_loss: update number → the objective on the whole training set ``(M,)`` after
            that update (at ``full_loss_at``).
    """

    steps: list[int]
    loss: Tensor
    full_loss: dict[int, Tensor]


def train_ensemble(
    model: BatchedMLP,
    x: Tensor,
    t: Tensor,
    lr: Tensor | float,
    steps: int,
    batch_size: int,
    G: Tensor | None = None,
    weight: Tensor | float | None = None,
    value_weight: Tensor | float | None = None,
    schedule: str = "constant",
    warmup: float = 0.0,
    full_loss_at: tuple[int, ...] = (),
    generator: torch.Generator | None = None,
    log_every: int = 0,
    optimiser: str = "adam",
    p_bound: float | None = None,
    inspect: Callable[[int], None] | None = None,
    weight_schedule: Callable[[int], float] | None = None,
    point_weight: Tensor | None = None,
    desc: str = "train",
    hint: str = "learning rate too large",
    describe: Callable[[list[int]], str] | None = None,
    progress: bool | TextIO = True,
) -> EnsembleHistory:
    """Train ``model`` in place with Adam (or another optimiser) on regular (``G is None``) or Sobolev loss.

    Args:
        model: ``M`` models.
        x: training inputs ``(M, N, D)``, one training set per model.
        t: training values ``(M, N)``.
        lr: peak learning rate per model ``(M,)``, or one number for all (likewise
            ``weight`` and ``value_weight``).
        steps: Adam steps.
        batch_size: minibatch size; ``N <= batch_size`` trains on the full set every step,
            otherwise each model draws its own minibatch (uniform, with replacement).
        G: training input gradients ``(M, N, D)`` for Sobolev training.
        weight: derivative weights ``(M,)``, ``(M, D)`` or per label ``(M, N, D)`` (Sobolev only),
            as in :meth:`BatchedMLP.loss_and_grads`.
        value_weight: weight of the value term per model ``(M,)`` (``None``: 1).
        schedule, warmup: the learning-rate schedule (:func:`lr_factor`), the same for every model.
        full_loss_at: update numbers after which to evaluate the objective on the whole set
            (e.g. at 90% and 100% of training, for a convergence check).
        log_every: record the per-model training loss every this many steps (0: never).
        optimiser: one of :data:`sobolev.core.optimisers.OPTIMISERS`; ``p_bound``: Fromage's
            norm cap (:func:`sobolev.core.optimisers.batched_optimiser`).
        inspect: called as ``inspect(step)`` after each logged update (e.g. to record weight norms).
        weight_schedule: the derivative weights of update ``i`` are ``weight × weight_schedule(i)``
            (e.g. a decay that trusts estimated derivatives less as training goes on).
        point_weight: how much each point counts, ``(M, N)`` (0: held out of that model; models that take it,
            :class:`~sobolev.core.tanh_mlp.BatchedTanhMLP`); minibatches carry their points' weights.
        desc, hint, describe, progress: as in :func:`train_loop`; a model that diverges
            keeps training on NaN (models are independent) and its losses are NaN.

    Returns:
        An :class:`EnsembleHistory`.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    M, N, _ = x.shape
    if t.shape != (M, N):
        raise ValueError(f"t: expected shape {(M, N)}, got {tuple(t.shape)}")
    lr_factor(1, steps, schedule, warmup)  # validates the schedule before any work
    lr = per_model("lr", lr, M, x)
    weight = None if weight is None else per_model("weight", weight, M, x)
    value_weight = None if value_weight is None else per_model("value_weight", value_weight, M, x)
    opt = batched_optimiser(optimiser, model.params, lr, p_bound)
    rows = torch.arange(M, device=x.device).unsqueeze(1)
    full = batch_size >= N
    logged: list[Tensor] = []
    full_loss: dict[int, Tensor] = {}
    evaluate_at = set(full_loss_at)

    def on_log(i: int, loss: Tensor) -> None:
        logged.append(loss.cpu())
        if inspect is not None:
            inspect(i)

    extra = {} if point_weight is None else {"point_weight": point_weight}

    def step(i: int) -> Tensor:
        if full:
            xb, tb, Gb, wb, pb = x, t, G, weight, extra
        else:
            idx = torch.randint(N, (M, batch_size), generator=generator, device="cpu").to(x.device)
            xb, tb = x[rows, idx], t[rows, idx]
            Gb = None if G is None else G[rows, idx]
            wb = weight[rows, idx] if weight is not None and weight.ndim == 3 else weight
            pb = {} if point_weight is None else {"point_weight": point_weight[rows, idx]}
        if weight_schedule is not None and wb is not None:
            wb = wb * weight_schedule(i)
        if schedule != "constant" or warmup:
            opt.scale_lr(lr_factor(i, steps, schedule, warmup))
        res = model.loss_and_grads(xb, tb, Gb, wb, value_weight, **pb)
        opt.step(res.grads)
        if i in evaluate_at:
            full_loss[i] = model.losses(x, t, G, weight, value_weight, **extra).cpu()
        value = res.value_loss if value_weight is None else value_weight * res.value_loss
        return value if res.grad_loss is None else value + res.grad_loss

    train_loop(
        step, steps, desc=desc, hint=hint, log_every=log_every, on_log=on_log,
        progress=progress, tolerate=True, describe=describe,
    )  # fmt: skip
    logged_steps = [i for i in range(1, steps + 1) if log_every and (i % log_every == 0 or i == steps)]
    return EnsembleHistory(logged_steps, torch.stack(logged) if logged else torch.empty(0, M), full_loss)
