"""Sobolev training losses: eq. (1) (full derivatives) and eq. (2) (random projections)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor

from sobolev.core.derivatives import (
    Model,
    derivatives,
    jvp_projection,
    random_unit_vectors,
)

Distance = Literal["l2", "l1", "norm"]
DISTANCES: tuple[str, ...] = ("l2", "l1", "norm")


def distance(pred: Tensor, target: Tensor, kind: Distance = "l2") -> Tensor:
    """Per-sample distance summed over all non-batch axes, averaged over the batch.

    ``l2`` is the squared Euclidean (Frobenius) norm, as in the paper's regression loss;
    ``l1`` the sum of absolute values; ``norm`` the Euclidean norm itself (not squared), as in
    the paper's policy-distillation objective.
    """
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch: prediction {tuple(pred.shape)} vs target {tuple(target.shape)}")
    diff = (pred - target).reshape(pred.shape[0], -1) if pred.ndim > 0 else (pred - target)[None, None]
    if kind == "l2":
        return diff.pow(2).sum(dim=1).mean()
    if kind == "l1":
        return diff.abs().sum(dim=1).mean()
    if kind == "norm":
        return diff.norm(dim=1).mean()
    raise ValueError(f"distance must be one of {DISTANCES}, got {kind!r}")


def balanced_weights(g: Tensor, lam: float = 1.0) -> tuple[float, Tensor]:
    """The weights of differential machine learning's balanced loss (Huge & Savine 2020).

    On standardised data (inputs and outputs, derivative targets rescaled by ``σx/σy``), the
    loss is ``α mean_b (m - y)² + β mean_{b,j} (λ_j (∂ⱼm - gⱼ))²`` with ``λ_j = 1/rms(gⱼ)``,
    ``α = 1/(1 + λd)`` and ``β = λd/(1 + λd)``: every input's derivative term has unit scale,
    and the derivative terms together weigh ``λd`` times the value term. Written as per-input
    weights of ``mean_b Σ_j w_j (∂ⱼm - gⱼ)²`` (the form :meth:`BatchedMLP.loss_and_grads`
    takes), ``w_j = β / (d · mean_b gⱼ²)``.

    Args:
        g: standardised derivative targets of the training set ``(N, d)``, or of several
            training sets at once ``(..., N, d)`` (e.g. one per model of an ensemble).
        lam: the balance ``λ`` (1 in the DML paper).

    Returns:
        ``α`` (it depends on ``d`` and ``λ`` only) and the per-input weights ``w (..., d)``. An
        input whose derivative targets are all zero gets weight 0 (its term carries no information).
    """
    if g.ndim < 2:
        raise ValueError(f"g: expected derivative targets of shape (..., N, d), got {tuple(g.shape)}")
    if not lam > 0:
        raise ValueError(f"lam must be positive, got {lam!r}")
    d = g.shape[-1]
    alpha = 1.0 / (1.0 + lam * d)
    beta = 1.0 - alpha
    mean_sq = g.double().pow(2).mean(-2)
    w = torch.where(mean_sq > 0, beta / (d * mean_sq.clamp_min(1e-300)), torch.zeros_like(mean_sq))
    return alpha, w.to(g.dtype)


def _per_order(name: str, value: float | str | Sequence, order: int) -> list:
    items = list(value) if isinstance(value, list | tuple) else [value] * (order + 1)
    if len(items) != order + 1:
        raise ValueError(f"{name}: expected {order + 1} entries (orders 0..{order}), got {len(items)}")
    return items


def sobolev_loss(
    model: Model,
    x: Tensor,
    targets: Sequence[Tensor],
    weights: float | Sequence[float] = 1.0,
    distances: Distance | Sequence[Distance] = "l2",
) -> Tensor:
    """Eq. (1): ``ℓ(m(x), f(x)) + Σ_j w_j ℓ_j(D^j m(x), D^j f(x))`` averaged over the batch.

    Args:
        model: maps ``(B, d_in)`` to ``(B,)`` or ``(B, d_out)``.
        x: inputs ``(B, d_in)``.
        targets: ``[f(x), D^1 f(x), ..., D^K f(x)]``; ``f(x)`` shaped like ``m(x)``, ``D^k f``
            shaped ``(B, [d_out,] d_in, ..., d_in)`` as returned by
            :func:`sobolev.derivatives.derivatives`. ``K = len(targets) - 1``; ``K = 2``
            (Hessians) is only informative for smooth activations: a ReLU network's
            Hessian is zero almost everywhere.
        weights: one weight per order ``0..K``, or one number for all.
        distances: ``"l2"`` (default) or ``"l1"`` per order, or one for all.

    Returns:
        A scalar, differentiable with respect to the model's parameters.
    """
    if len(targets) < 1:
        raise ValueError("targets must hold at least the function values")
    order = len(targets) - 1
    w = _per_order("weights", weights, order)
    dist = _per_order("distances", distances, order)
    loss = w[0] * distance(model(x), targets[0], dist[0])
    if order == 0:
        return loss
    for j, d in enumerate(derivatives(model, x, order), start=1):
        loss = loss + w[j] * distance(d, targets[j], dist[j])
    return loss


def stochastic_sobolev_loss(
    model: Model,
    x: Tensor,
    target_value: Tensor,
    target_fn: Model | None = None,
    target_jacobian: Tensor | None = None,
    n_projections: int = 1,
    weight: float = 1.0,
    distance_kind: Distance = "l2",
    direction: Literal["input", "output"] = "input",
    generator: torch.Generator | None = None,
    value_loss: Callable[[Tensor, Tensor], Tensor] | None = None,
    return_terms: bool = False,
) -> Tensor | dict[str, Tensor]:
    """Eq. (2) at first order: match Jacobian projections on random unit vectors.

    ``direction="input"`` matches ``J v`` for ``v`` uniform on the unit sphere of the input
    space, computed as forward-mode JVPs (no Jacobian is formed for the model);
    ``direction="output"`` matches ``vᵀ J`` for ``v`` on the sphere of the output space
    (reverse-mode VJPs, as in policy distillation: one forward pass of each network serves
    the value term and every projection). For ``v`` uniform on the unit sphere of ``R^n``,
    ``E[(g·v)²] = ‖g‖²/n``, so the ``l2`` term is an unbiased estimate of the full Jacobian
    term divided by ``n`` (tested).

    Args:
        model: maps ``(B, *in_shape)`` (vectors, images, ...) to ``(B, d_out)`` or ``(B,)``.
        x: inputs ``(B, *in_shape)``.
        target_value: ``f(x)``, shaped like ``model(x)``.
        target_fn: the differentiable target ``f``; its projections are computed the same
            way (on the fly, e.g. a teacher network). Give this or ``target_jacobian``.
        target_jacobian: ``(B, d_out, *in_shape)`` (or ``(B, *in_shape)`` for scalar outputs):
            row ``o`` holds output ``o``'s gradient. Any other shape is refused, a transposed
            ``(B, *in_shape, d_out)`` included; when ``d_out`` equals the input size the two
            layouts have one shape, so only this documented order can hold.
        n_projections: Monte-Carlo samples of ``v`` per input.
        weight: weight of the projection term.
        distance_kind: ``"l2"`` (squared norm), ``"l1"`` or ``"norm"`` (Euclidean norm, the
            distillation objective's) for the projection term, and for the value term unless
            ``value_loss`` is given.
        generator: random source for ``v``.
        value_loss: ``(model(x), target_value) -> scalar`` replacing the value distance (e.g. a KL).
        return_terms: return ``{"loss", "value", "projection"}`` instead of the total.

    Returns:
        value term + ``weight`` × mean over projections of the projection term (a scalar).
    """
    if (target_fn is None) == (target_jacobian is None):
        raise ValueError("give exactly one of target_fn and target_jacobian")
    if not isinstance(n_projections, int) or n_projections < 1:
        raise ValueError(f"n_projections must be an integer >= 1, got {n_projections!r}")
    if direction not in ("input", "output"):
        raise ValueError(f"direction must be 'input' or 'output', got {direction!r}")
    if distance_kind not in DISTANCES:
        raise ValueError(f"distance_kind must be one of {DISTANCES}, got {distance_kind!r}")
    if x.ndim < 2:
        raise ValueError(f"x: expected a batch (B, ...) of inputs, got shape {tuple(x.shape)}")
    batch, d_in = x.shape[0], x[0].numel()
    if direction == "output":
        x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = model(x)
        if out.ndim not in (1, 2) or out.shape[0] != batch:
            raise ValueError(f"model: expected outputs (B,) or (B, d_out) with B = {batch}, got {tuple(out.shape)}")
        if value_loss is None and tuple(target_value.shape) != tuple(out.shape):
            raise ValueError(f"target_value: expected the model's output shape {tuple(out.shape)}, "
                             f"got {tuple(target_value.shape)}")  # fmt: skip
        value = value_loss(out, target_value) if value_loss else distance(out, target_value, distance_kind)
        target_out = target_fn(x) if (target_fn is not None and direction == "output") else None
        if target_out is not None and tuple(target_out.shape) != tuple(out.shape):
            raise ValueError(f"target_fn: its outputs {tuple(target_out.shape)} must have the model's shape "
                             f"{tuple(out.shape)}")  # fmt: skip
        d_out = 1 if out.ndim == 1 else out.shape[1]
        jac = None
        if target_jacobian is not None:
            allowed = [(batch, d_out, *x.shape[1:])] + ([(batch, *x.shape[1:])] if out.ndim == 1 else [])
            if tuple(target_jacobian.shape) not in allowed:
                raise ValueError(f"target_jacobian: expected shape {' or '.join(map(str, allowed))} "
                                 f"(batch, outputs, *input shape), got {tuple(target_jacobian.shape)}")  # fmt: skip
            jac = target_jacobian.reshape(batch, d_out, d_in)
        terms = []
        for k in range(n_projections):
            if direction == "input":
                v = random_unit_vectors(batch, d_in, generator, x.device, x.dtype)
                pred = jvp_projection(model, x, v.reshape(x.shape)).reshape(batch, d_out)
                if jac is not None:
                    target = torch.einsum("boi,bi->bo", jac, v)
                else:
                    target = jvp_projection(target_fn, x, v.reshape(x.shape))
                    if target.numel() != batch * d_out:
                        raise ValueError(f"target_fn: its outputs {tuple(target.shape)} must match the model's "
                                         f"{tuple(out.shape)}")  # fmt: skip
                    target = target.reshape(batch, d_out).detach()
            else:
                v = random_unit_vectors(batch, d_out, generator, x.device, x.dtype)
                u = v if out.ndim == 2 else v[:, 0]
                if jac is not None:
                    target = torch.einsum("bo,boi->bi", v, jac).reshape(x.shape)
                else:  # the target's VJP first: its graph is freed after the last projection
                    (target,) = torch.autograd.grad((target_out * u).sum(), x, retain_graph=k < n_projections - 1)
                (pred,) = torch.autograd.grad((out * u).sum(), x, create_graph=True)
            terms.append(distance(pred, target.detach(), distance_kind))
    projection = torch.stack(terms).mean()
    loss = value + weight * projection
    return {"loss": loss, "value": value, "projection": projection} if return_terms else loss


def per_label_weights(weight: Tensor, M: int) -> Tensor:
    """Derivative weights ``(M,)``, ``(M, D)`` or ``(M, B, D)`` shaped to broadcast against the
    residuals ``(M, B, D)``."""
    return weight if weight.ndim == 3 else weight.view(M, 1, -1)


def normalised_point_weight(point_weight: Tensor, M: int, B: int) -> Tensor:
    """Per-point weights ``(M, B)`` rescaled to mean 1 per model, so that ``mean_b p_b e_b`` is the weighted mean
    of ``e``. A model whose weights are all 0 (a minibatch that drew only points held out of it) keeps zeros: its
    loss and gradient are 0."""
    if point_weight.shape != (M, B):
        raise ValueError(f"point_weight: expected shape {(M, B)}, got {tuple(point_weight.shape)}")
    return point_weight / point_weight.mean(1, keepdim=True).clamp_min(torch.finfo(point_weight.dtype).tiny)


def weighted_sobolev_loss(y: Tensor, t: Tensor, g: Tensor, G: Tensor, value_weight: Tensor, weight: Tensor) -> Tensor:
    """Per-model ``α mean_b (y - t)² + mean_b Σ_j w_j (gⱼ - Gⱼ)²`` for batched ensembles, ``(M,)``.

    The objective :meth:`sobolev.core.models.BatchedMLP.loss_and_grads` differentiates by hand,
    written for autograd (any model that returns values and input gradients). With
    :func:`balanced_weights` it is differential machine learning's balanced loss.

    Args:
        y, t: predicted and target values ``(M, B)``.
        g, G: predicted and target input gradients ``(M, B, D)``.
        value_weight: ``α`` per model ``(M,)``.
        weight: ``w_j`` per model and input ``(M, D)``, or per label ``(M, B, D)``.
    """
    value = (y - t).pow(2).mean(1)
    derivative = ((g - G).pow(2) * per_label_weights(weight, weight.shape[0])).sum(2).mean(1)
    return value_weight * value + derivative
