"""Iterative linearisation (Goldwaser & Ge) of the batched regression MLP, values and input gradients.

Around an anchor θₖ the linearised network is

    f_lin(x; θ) = f(x; θₖ) + J_θ f(x; θₖ)(θ − θₖ),

and its input gradient, which Sobolev training matches, is ∇ₓf_lin = ∇ₓf(x; θₖ) + ∇ₓ[J_θ f(x; θₖ)(θ − θₖ)].
For the ReLU MLP of :class:`sobolev.core.models.BatchedMLP` both are the first-order Taylor expansion in θ
of the network *with its ReLU masks frozen at θₖ* (the masks are locally constant in θ and in x):

    z1 = W1 x + b1, a1 = m1 ⊙ z1, z2 = W2 a1 + b2, a2 = m2 ⊙ z2, y = w3·a2 + b3,
    ∇ₓy = W1ᵀ (m1 ⊙ W2ᵀ (m2 ⊙ w3)),

with m1 = 1[z1(θₖ) > 0], m2 = 1[z2(θₖ) > 0]. :func:`linearised` writes the tangent of both by the product
rule (the same products as a forward pass; ``tests/core/test_linearisation.py`` checks it against
``torch.func.jvp`` and the input gradient against autograd's gradient of f_lin). Training f_lin for K steps,
then moving the anchor to the new weights, is :func:`train_linearised`: K = 1 is ordinary training
(step for step), K ≥ the number of steps trains the fixed-feature (NTK) model of the initial weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

import torch
from torch import Tensor

from sobolev.core.models import BatchedMLP
from sobolev.core.optimisers import BatchedAdam
from sobolev.core.training import lr_factor, per_model, train_loop

Params = dict[str, Tensor]


def masks_at(anchor: Params, x: Tensor) -> tuple[Tensor, Tensor]:
    """The ReLU masks ``m1, m2 (M, B, H)`` of the network ``anchor`` at inputs ``x (M, B, D)`` (0/1 floats)."""
    z1 = torch.baddbmm(anchor["b1"].unsqueeze(1), x, anchor["W1"].transpose(1, 2))
    m1 = (z1 > 0).to(x.dtype)
    z2 = torch.baddbmm(anchor["b2"].unsqueeze(1), m1 * z1, anchor["W2"].transpose(1, 2))
    return m1, (z2 > 0).to(x.dtype)


def frozen(params: Params, x: Tensor, masks: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Values ``(M, B)`` and input gradients ``(M, B, D)`` of the network ``params`` with its ReLU masks
    replaced by ``masks``: a polynomial in the weights, equal to the network where the masks are its own."""
    m1, m2 = masks
    z1 = torch.baddbmm(params["b1"].unsqueeze(1), x, params["W1"].transpose(1, 2))
    z2 = torch.baddbmm(params["b2"].unsqueeze(1), m1 * z1, params["W2"].transpose(1, 2))
    y = torch.baddbmm(params["b3"].view(-1, 1, 1), m2 * z2, params["w3"].unsqueeze(2)).squeeze(2)
    u1 = m1 * torch.bmm(m2 * params["w3"].unsqueeze(1), params["W2"])
    return y, torch.bmm(u1, params["W1"])


def linearised(params: Params, anchor: Params, x: Tensor, masks: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """``f_lin(x; θ)`` ``(M, B)`` and ``∇ₓf_lin(x; θ)`` ``(M, B, D)`` around ``anchor`` θₖ, at ``params`` θ.

    Differentiable in ``params`` (autograd); ``masks`` must be :func:`masks_at` ``(anchor, x)``.
    """
    m1, m2 = masks
    A = anchor
    d = {k: params[k] - A[k] for k in A}
    # primal (at the anchor) and tangent (along d), layer by layer
    z1 = torch.baddbmm(A["b1"].unsqueeze(1), x, A["W1"].transpose(1, 2))
    dz1 = torch.baddbmm(d["b1"].unsqueeze(1), x, d["W1"].transpose(1, 2))
    a1, da1 = m1 * z1, m1 * dz1
    z2 = torch.baddbmm(A["b2"].unsqueeze(1), a1, A["W2"].transpose(1, 2))
    dz2 = torch.baddbmm(d["b2"].unsqueeze(1), a1, d["W2"].transpose(1, 2)) + torch.bmm(da1, A["W2"].transpose(1, 2))
    a2, da2 = m2 * z2, m2 * dz2
    y = torch.baddbmm(A["b3"].view(-1, 1, 1), a2, A["w3"].unsqueeze(2)).squeeze(2)
    dy = (torch.bmm(a2, d["w3"].unsqueeze(2)) + torch.bmm(da2, A["w3"].unsqueeze(2))).squeeze(2) + d["b3"].unsqueeze(1)
    u2, du2 = m2 * A["w3"].unsqueeze(1), m2 * d["w3"].unsqueeze(1)
    u1 = m1 * torch.bmm(u2, A["W2"])
    du1 = m1 * (torch.bmm(du2, A["W2"]) + torch.bmm(u2, d["W2"]))
    g = torch.bmm(u1, A["W1"])
    dg = torch.bmm(du1, A["W1"]) + torch.bmm(u1, d["W1"])
    return y + dy, g + dg


@dataclass
class LinearisedHistory:
    """``anchors``: the update numbers after which the anchor moved (0: the first anchor; their count
    is the number of feature updates + 1); ``anchor``: the last anchor's parameters (the trained model
    is f_lin around it at ``model.params``); ``loss``: the training objective of f_lin before each
    logged update ``(n_logs, M)`` at ``steps``."""

    anchors: list[int]
    anchor: Params
    steps: list[int]
    loss: Tensor


def train_linearised(
    model: BatchedMLP,
    x: Tensor,
    t: Tensor,
    lr: Tensor | float,
    steps: int,
    every: int,
    G: Tensor | None = None,
    weight: Tensor | float | None = None,
    schedule: str = "constant",
    warmup: float = 0.0,
    log_every: int = 0,
    desc: str = "linearised",
    hint: str = "learning rate too large",
    progress: bool | TextIO = True,
    on_anchor: Callable[[int], None] | None = None,
    after_step: Callable[[int, Params], None] | None = None,
) -> LinearisedHistory:
    """Iterative linearisation: train f_lin (full batch, Adam) and move its anchor every ``every`` updates.

    ``model.params`` holds θ throughout; after training it holds the final θ, and the trained model is
    f_lin around the last anchor (``history.anchor``). The Adam state carries
    over from round to round (only the model moves). ``every = 1`` is ordinary training; ``every >= steps``
    never moves the anchor (the fixed-feature model of the initial weights).

    Args:
        model: ``M`` models (their parameters are updated in place).
        x, t, G: training inputs ``(M, N, D)``, values ``(M, N)`` and, for Sobolev training, input
            gradients ``(M, N, D)`` (``weight``: λ per model or one number).
        lr, schedule, warmup: Adam's peak rate per model and its schedule (:func:`lr_factor`).
        every: K, the updates between feature updates (anchor moves).
        on_anchor: called with the update number each time the anchor moves (0: the first anchor).
        after_step: called as ``after_step(i, anchor)`` after update ``i`` (e.g. to evaluate the model
            being trained, f_lin around ``anchor`` at ``model.params``, at checkpoints).
    """
    if not isinstance(every, int) or every <= 0:
        raise ValueError(f"every must be a positive integer (updates between anchor moves), got {every!r}")
    if G is not None and weight is None:
        raise ValueError("weight: required with G (the derivative weight λ)")
    lr_factor(1, steps, schedule, warmup)
    M = model.n_models
    lr = per_model("lr", lr, M, x)
    w = None if G is None else per_model("weight", weight, M, x).view(M, 1, 1)
    opt = BatchedAdam(model.params, lr)
    state: dict[str, object] = {}
    anchors: list[int] = []
    logged: list[Tensor] = []

    def move_anchor(i: int) -> None:
        anchor = {k: v.detach().clone() for k, v in model.params.items()}
        state.update(anchor=anchor, masks=masks_at(anchor, x))
        anchors.append(i)
        if on_anchor is not None:
            on_anchor(i)

    def step(i: int) -> Tensor:
        if (i - 1) % every == 0:
            move_anchor(i - 1)
        if schedule != "constant" or warmup:
            opt.scale_lr(lr_factor(i, steps, schedule, warmup))
        params = {k: v.detach().requires_grad_(True) for k, v in model.params.items()}
        y, g = linearised(params, state["anchor"], x, state["masks"])  # type: ignore[arg-type]
        loss = (y - t).pow(2).mean(1)
        if G is not None:
            loss = loss + (w * (g - G).pow(2)).sum(2).mean(1)
        grads = torch.autograd.grad(loss.sum(), list(params.values()))
        opt.step(dict(zip(params, grads, strict=True)))
        if after_step is not None:
            after_step(i, state["anchor"])  # type: ignore[arg-type]
        return loss.detach()

    train_loop(step, steps, desc=desc, hint=hint, log_every=log_every, progress=progress,
               on_log=lambda _, loss: logged.append(loss.cpu()), tolerate=True)  # fmt: skip
    logged_steps = [i for i in range(1, steps + 1) if log_every and (i % log_every == 0 or i == steps)]
    loss = torch.stack(logged) if logged else torch.empty(0, M)
    return LinearisedHistory(anchors, state["anchor"], logged_steps, loss)  # type: ignore[arg-type]


@torch.no_grad()
def predict_linearised(params: Params, anchor: Params, x: Tensor, chunk: int = 512) -> tuple[Tensor, Tensor]:
    """f_lin and ∇ₓf_lin around ``anchor`` at ``params``, at ``x (M, P, D)``, ``chunk`` points at a time."""
    ys, gs = [], []
    for xc in x.split(chunk, dim=1):
        y, g = linearised(params, anchor, xc, masks_at(anchor, xc))
        ys.append(y)
        gs.append(g)
    return torch.cat(ys, 1), torch.cat(gs, 1)


def linearised_module(module: torch.nn.Module, params: Params, anchor: Params, x: Tensor) -> Tensor:
    """``f_lin(x; θ)`` of any ``module`` around ``anchor`` θₖ at ``params`` θ, by ``torch.func.jvp``.

    For modules other than the batched MLP (e.g. a classifier). Differentiable in ``params`` and
    in ``x``: its input derivatives (``torch.func.jvp`` over ``x``, as eq. (2)'s projections use)
    are those of the linearised model, the ReLU masks frozen at the anchor.
    """
    tangent = {k: params[k] - anchor[k] for k in anchor}
    out, d_out = torch.func.jvp(lambda p: torch.func.functional_call(module, p, (x,)), (anchor,), (tangent,))
    return out + d_out
