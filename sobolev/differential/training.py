"""Differential and standard training of batched softplus ensembles, as the reference does it.

Each model standardises its own training set (:meth:`sobolev.core.samples.Normaliser.from_samples`:
inputs and values by their sample mean and standard deviation, derivative labels by ``σx/σy``),
trains 4 × 20 softplus layers with Adam under the reference's one-cycle learning-rate schedule
for ``epochs`` epochs of minibatches of ``max(256, N/16)``, on the balanced loss
(:func:`sobolev.core.losses.balanced_weights`, :func:`sobolev.core.losses.weighted_sobolev_loss`)
or, for standard training, on the values alone; then predicts values and derivatives back on the original scale.

:func:`fit` is the user-facing entry for your own ``(x, y, dy/dx)`` samples, any dimension: the
noisy-label recipe of :func:`sobolev.fit`, the package's one fitting engine.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, TextIO

import torch
from torch import Tensor

from sobolev.core.fitting import FittedModel
from sobolev.core.fitting import fit as sobolev_fit
from sobolev.core.losses import balanced_weights, weighted_sobolev_loss
from sobolev.core.models import BatchedSmoothMLP
from sobolev.core.samples import Normaliser
from sobolev.core.training import train_loop

#: The reference's schedule: (fraction of training, learning rate), interpolated linearly.
ONE_CYCLE: tuple[tuple[float, float], ...] = ((0.0, 1e-8), (0.2, 0.1), (0.6, 0.01), (0.9, 1e-6), (1.0, 1e-8))


def one_cycle(progress: float, points: tuple[tuple[float, float], ...] = ONE_CYCLE) -> float:
    """The learning rate at ``progress`` ∈ [0, 1] of training (piecewise linear through ``points``)."""
    for (a, la), (b, lb) in itertools.pairwise(points):
        if progress <= b:
            return la + (lb - la) * (progress - a) / (b - a)
    return points[-1][1]


def batch_size_for(n: int, min_batch: int = 256, batches_per_epoch: int = 16) -> int:
    """The reference's minibatch: ``max(min_batch, n // batches_per_epoch)``, at most ``n``."""
    return min(n, max(min_batch, n // batches_per_epoch))


@dataclass
class Ensemble:
    """Trained models with their standardisation; :meth:`predict` works on raw inputs."""

    model: BatchedSmoothMLP
    scale: Normaliser  # a batch: one per model
    losses: Tensor  # (n_logs, M) training loss in standardised units

    @torch.no_grad()
    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Values ``(M, N)`` and derivatives ``(M, N, D)`` at raw inputs ``x (N, D)`` (shared) or ``(M, N, D)``."""
        if x.ndim == 2:
            x = x.unsqueeze(0).expand(self.model.n_models, -1, -1)
        dtype = self.model.weights[0].dtype
        with torch.enable_grad():
            y, g = self.model(self.scale.x(x.to(self.scale.x_center)).to(dtype))
        y, g = self.scale.y_back(y.detach().double()), self.scale.g_back(g.detach().double())
        return y.cpu().to(x.dtype), g.cpu().to(x.dtype)


def train(
    x: Tensor,
    y: Tensor,
    dydx: Tensor | None,
    seeds: list[int],
    differential: list[bool],
    lam: float = 1.0,
    epochs: int = 100,
    hidden: int = 20,
    layers: int = 4,
    log_every: int = 50,
    desc: str = "differential ML",
    progress: bool | TextIO = False,
    device: torch.device | str = "cpu",
) -> Ensemble:
    """Train one model per seed on its own training set.

    Args:
        x: inputs ``(M, N, D)``; y: values ``(M, N)``; dydx: derivative labels ``(M, N, D)``
            (needed when any model is differential).
        seeds: initial weights and minibatch order per model.
        differential: per model, the balanced loss on values and derivatives (True) or values
            only (False). Standard models share the network, schedule and epochs.
        lam: the balance λ (derivative terms weigh ``λd`` times the value term).
        device: where to train (the models are tiny: a CPU is usually as fast).
    """
    M, N, D = x.shape
    if len(seeds) != M or len(differential) != M:
        raise ValueError(f"seeds and differential: expected {M} entries each, got {len(seeds)} and {len(differential)}")
    if any(differential) and (dydx is None or dydx.shape != x.shape):
        raise ValueError(f"dydx: expected derivative labels of shape {tuple(x.shape)} for differential training")
    for name, v in (("epochs", epochs), ("hidden", hidden), ("layers", layers)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    scale = Normaliser.from_samples(x, y)  # each model's own training set
    xs, ys = scale.x(x).float(), scale.y(y).float()
    gs = scale.g(dydx).float() if dydx is not None else torch.zeros_like(xs)
    # Standard models: α = 1 and no derivative term.
    use = torch.tensor(differential)
    a, w = balanced_weights(gs, lam)
    alpha = torch.where(use, a, 1.0)
    weight = torch.where(use.unsqueeze(1), w, 0.0)
    xs, ys, gs, alpha, weight = (v.to(device) for v in (xs, ys, gs, alpha, weight))
    model = BatchedSmoothMLP(seeds, D, hidden, layers).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=ONE_CYCLE[0][1])
    batch = batch_size_for(N)
    per_epoch = N // batch
    steps = epochs * per_epoch
    # Minibatch order from each model's own seed: a standard and a differential model of one seed
    # see the same data in the same order from the same initial weights.
    gens = [torch.Generator().manual_seed(int(s) * 7919 + N) for s in seeds]
    rows = torch.arange(M, device=device).unsqueeze(1)
    order = torch.empty(0)
    logged: list[Tensor] = []

    def step(i: int) -> Tensor:
        nonlocal order
        k = (i - 1) % per_epoch
        if k == 0:
            order = torch.stack([torch.randperm(N, generator=g) for g in gens]).to(device)
        idx = order[:, k * batch : (k + 1) * batch]
        for group in opt.param_groups:
            group["lr"] = one_cycle((i - 1) / max(steps - 1, 1))
        pred, grad = model(xs[rows, idx])
        loss = weighted_sobolev_loss(pred, ys[rows, idx], grad, gs[rows, idx], alpha, weight)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        return loss.detach()

    train_loop(
        step, steps, desc=desc, hint="the one-cycle peak learning rate (0.1) too large for these labels",
        log_every=log_every, on_log=lambda _, loss: logged.append(loss), progress=progress, tolerate=False,
    )  # fmt: skip
    scale = scale.to(device)
    return Ensemble(model, scale, torch.stack(logged).cpu() if logged else torch.empty(0, M))


def fit(
    x: Tensor,
    y: Tensor,
    dydx: Tensor | None = None,
    seeds: int = 5,
    lam: float = 1.0,
    progress: bool | TextIO = True,
    **options: Any,
) -> FittedModel:
    """Differential machine learning on your own samples: :func:`sobolev.fit`'s recipe for noisy
    labels (Monte-Carlo payoffs and their pathwise derivatives), with the balanced loss of weight
    ``lam`` and an ensemble of ``seeds`` models; ``dydx=None`` trains on values only with the same
    recipe. Any other :class:`sobolev.core.fitting.Recipe` field may be passed.

    This is the package's one fitting engine. The reference's own recipe (4 × 20 softplus, one-cycle
    Adam, a fixed number of epochs), which Section 5.1 reproduces, is :func:`train`.

    Args:
        x: inputs ``(N, D)``; y: values ``(N,)``; dydx: derivative labels ``(N, D)`` or ``None``.

    Returns:
        A :class:`sobolev.FittedModel`: ``predict(x_new)`` gives the ensemble's values ``(N',)``,
        ``predict_derivatives(x_new)`` its derivatives ``(N', D)``, ``predict_with_spread`` both
        with the members' spread.
    """
    return sobolev_fit(x, y, dydx, noisy=True, models=seeds, lam=lam, progress=progress, **options)
