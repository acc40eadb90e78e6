"""Full-batch L-BFGS for a batched ensemble: ``M`` independent quasi-Newton optimisers in one.

On a small training set (every point in every step) the objective is a smooth deterministic
function of a few hundred weights, the setting quasi-Newton methods are built for: where Adam
needs thousands of steps to settle into a narrow valley (Dixon-Price, Rosenbrock), L-BFGS
follows its curvature. Each model keeps its own history, direction, step length and line
search; they are stacked on a model axis so that one iteration costs one batched
``loss_and_grads`` per line-search trial, whatever ``M``.

Per model (Nocedal & Wright, Algorithms 7.4 and 7.5): the direction ``d = -H g`` from the
two-loop recursion over the last ``history`` pairs ``(s, y)`` (a pair is kept only when
``sᵀy > 0``, which keeps ``H`` positive definite), initial scale ``γ = sᵀy / yᵀy``; a backtracking
line search from step 1 (halving until Armijo's sufficient decrease ``f(p + αd) ≤ f + c αgᵀd``);
a model whose direction is not a descent direction restarts from ``-g``, and one whose line
search fails keeps its weights and forgets its history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from sobolev.core.models import BatchedNet

ARMIJO = 1e-4  # sufficient-decrease constant (Nocedal & Wright's usual choice)


@dataclass
class LBFGSHistory:
    """Per-iteration objective ``(iterations, M)`` and the iteration at which each model stopped
    (``iterations`` when it ran to the end), ``(M,)``."""

    loss: Tensor
    stopped_at: Tensor


class _FlatView:
    """The model's parameters as one ``(M, P)`` matrix, and back."""

    def __init__(self, params: dict[str, Tensor]) -> None:
        self.params = params
        self.M = next(iter(params.values())).shape[0]
        self.sizes = [v[0].numel() for v in params.values()]

    def get(self) -> Tensor:
        return torch.cat([v.reshape(self.M, -1) for v in self.params.values()], 1)

    def put(self, flat: Tensor) -> None:
        for (_, v), part in zip(self.params.items(), flat.split(self.sizes, 1), strict=True):
            v.copy_(part.view(v.shape))

    def grads(self, grads: dict[str, Tensor]) -> Tensor:
        return torch.cat([grads[n].reshape(self.M, -1) for n in self.params], 1)


def train_lbfgs(
    model: BatchedNet,
    x: Tensor,
    t: Tensor,
    iterations: int,
    G: Tensor | None = None,
    weight: Tensor | None = None,
    history: int = 10,
    max_trials: int = 20,
    converged: float = 0.0,
    window: int = 50,
    plateau: float = 1e-3,
    on_iteration: Callable[[int, Tensor], None] | None = None,
) -> LBFGSHistory:
    """Train ``model`` in place on the whole set ``x (M, N, D)``, ``t (M, N)`` (and ``G``,
    ``weight`` as in ``loss_and_grads``) for at most ``iterations`` L-BFGS iterations.

    A model stops (keeps its weights) when its objective is at most ``converged``, or when the
    last ``window`` iterations lowered it by less than the fraction ``plateau`` (a plateau), or
    when even a steepest-descent step finds no decrease. ``on_iteration(i, loss (M,))`` is called
    after each iteration. A model whose objective is not finite is frozen with it (the caller
    reports it).
    """
    if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    view = _FlatView(model.params)
    M = view.M

    def evaluate(p: Tensor) -> tuple[Tensor, Tensor]:
        view.put(p)
        res = model.loss_and_grads(x, t, G, weight)
        f = res.value_loss if res.grad_loss is None else res.value_loss + res.grad_loss
        return f, view.grads(res.grads)

    p = view.get()
    f, g = evaluate(p)
    P = p.shape[1]
    # Pairs in a ring of `history` slots shared by the models; a model that keeps no pair in an
    # iteration stores zeros there (an empty slot, which the compact form below leaves out).
    S = p.new_zeros(M, history, P)
    Y = p.new_zeros(M, history, P)
    gamma = p.new_ones(M)
    active = torch.isfinite(f)
    stopped_at = torch.full((M,), iterations, dtype=torch.long)
    losses = []
    newest = -1
    for it in range(1, iterations + 1):
        order = torch.arange(newest + 1, newest + 1 + history) % history  # oldest first
        d = -_inverse_hessian_times(S[:, order], Y[:, order], gamma, g)
        slope = (g * d).sum(1)
        bad = ~(slope < 0)  # not a descent direction (or NaN): restart from steepest descent
        if bool(bad.any()):
            d = torch.where(bad.unsqueeze(1), -g, d)
            slope = torch.where(bad, -(g * g).sum(1), slope)
            S[bad] = 0
            Y[bad] = 0
            gamma = torch.where(bad, 1.0, gamma)
        # Without curvature pairs (first iteration, restart) the direction is -g, whose unit step
        # can be huge: start its search at a step of length 1e-2 instead.
        curved = S.abs().sum((1, 2)) > 0
        step = torch.where(curved, 1.0, (1e-2 / d.norm(dim=1).clamp_min(1e-12)).clamp_max(1.0))
        accepted = ~active  # frozen models are "done" from the start
        f_new, g_new = f.clone(), g.clone()
        for _ in range(max_trials):
            trial = p + step.unsqueeze(1) * d
            ft, gt = evaluate(torch.where(accepted.unsqueeze(1), p, trial))
            ok = ~accepted & torch.isfinite(ft) & (ft <= f + ARMIJO * step * slope)
            f_new = torch.where(ok, ft, f_new)
            g_new = torch.where(ok.unsqueeze(1), gt, g_new)
            accepted = accepted | ok
            if bool(accepted.all()):
                break
            step = torch.where(accepted, step, step * 0.5)
        moved = accepted & active
        s = torch.where(moved.unsqueeze(1), step.unsqueeze(1) * d, 0.0)
        y = g_new - g
        sy = (s * y).sum(1)
        keep = moved & (sy > 1e-10 * (y * y).sum(1).clamp_min(1e-30))
        newest = (newest + 1) % history
        S[:, newest] = torch.where(keep.unsqueeze(1), s, 0.0)
        Y[:, newest] = torch.where(keep.unsqueeze(1), y, 0.0)
        gamma = torch.where(keep, sy / (y * y).sum(1).clamp_min(1e-30), gamma)
        failed = active & ~accepted
        S[failed] = 0  # a failed line search: keep the weights, forget the curvature
        Y[failed] = 0
        p = torch.where(moved.unsqueeze(1), p + s, p)
        f, g = f_new, g_new
        losses.append(f.clone())
        done = f <= converged
        if it > window:
            done |= f > (1 - plateau) * losses[-1 - window]
        stopped = active & (done | failed & ~curved)  # the last: even steepest descent found no decrease
        stopped_at[stopped.cpu()] = it
        active = active & ~stopped
        if on_iteration is not None:
            on_iteration(it, f)
        if not bool(active.any()):
            break
    view.put(p)
    return LBFGSHistory(torch.stack(losses).cpu(), stopped_at)


def _inverse_hessian_times(S: Tensor, Y: Tensor, gamma: Tensor, g: Tensor) -> Tensor:
    """``H g`` for each model, with ``H`` the L-BFGS inverse-Hessian approximation of the pairs
    ``S, Y (M, m, P)`` (oldest first; an all-zero pair is an empty slot) and ``H₀ = γ I``,
    ``γ (M,)``, ``g (M, P)``.

    The compact form (Byrd, Nocedal & Schnabel 1994, eq. 3.13) instead of the two-loop recursion:
    the same vector in a dozen batched operations instead of four per pair. With ``R`` the upper
    triangle of ``SᵀY``, ``D`` its diagonal, ``a = Sᵀg`` and ``b = Yᵀg``:
    ``H g = γ g + S R⁻ᵀ((D + γ YᵀY) R⁻¹ a − γ b) − γ Y R⁻¹ a``. An empty slot has a zero row and
    column in ``SᵀY`` and ``YᵀY``; a 1 on its diagonal of ``R`` decouples it (its terms are 0).
    """
    a = torch.bmm(S, g.unsqueeze(2))  # (M, m, 1)
    b = torch.bmm(Y, g.unsqueeze(2))
    SY = torch.bmm(S, Y.transpose(1, 2))  # (M, m, m)
    diag = SY.diagonal(dim1=1, dim2=2)
    R = SY.triu() + torch.diag_embed((diag == 0).to(SY.dtype))
    u = torch.linalg.solve_triangular(R, a, upper=True)
    c = gamma.view(-1, 1, 1)
    v = diag.unsqueeze(2) * u + c * torch.bmm(Y, torch.bmm(Y.transpose(1, 2), u)) - c * b
    p1 = torch.linalg.solve_triangular(R.transpose(1, 2), v, upper=False)
    out = torch.bmm(S.transpose(1, 2), p1) - c * torch.bmm(Y.transpose(1, 2), u)
    return gamma.unsqueeze(1) * g + out.squeeze(2)


__all__ = ["LBFGSHistory", "train_lbfgs"]
