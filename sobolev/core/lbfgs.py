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
        self.shapes = {n: tuple(v.shape[1:]) for n, v in params.items()}
        self.sizes = [v[0].numel() for v in params.values()]

    def get(self) -> Tensor:
        return torch.cat([v.reshape(self.M, -1) for v in self.params.values()], 1)

    def put(self, flat: Tensor) -> None:
        for (_, v), part in zip(self.params.items(), flat.split(self.sizes, 1), strict=True):
            v.copy_(part.view(v.shape))

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """Parameters of ``A`` models as views of their rows ``flat (A, P)``."""
        return {n: part.reshape(-1, *shape) for (n, shape), part in zip(self.shapes.items(), flat.split(self.sizes, 1),
                                                                         strict=True)}  # fmt: skip

    def grads(self, grads: dict[str, Tensor]) -> Tensor:
        return torch.cat([grads[n].reshape(grads[n].shape[0], -1) for n in self.params], 1)


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
    point_weight: Tensor | None = None,
    caps: Tensor | None = None,
    on_stop: Callable[[int, Tensor], Tensor | None] | None = None,
) -> LBFGSHistory:
    """Train ``model`` in place on the whole set ``x (M, N, D)``, ``t (M, N)`` (and ``G``,
    ``weight``, ``point_weight`` as in ``loss_and_grads``) for at most ``iterations`` L-BFGS iterations.

    A model stops (keeps its weights) when its objective is at most ``converged``, or when the
    last ``window`` iterations lowered it by less than the fraction ``plateau`` (a plateau), or
    when even a steepest-descent step finds no decrease. ``on_iteration(i, loss (M,))`` is called
    after each iteration. A model whose objective is not finite is frozen with it (the caller
    reports it). ``caps (M,)``: each model's own most iterations (at most ``iterations``).
    ``on_stop(i, stopped)``: called after an iteration in which the models ``stopped`` (indices)
    stopped, with the model's parameters set to the current ones; it may return more models to
    stop now (e.g. those a decision made from the stopped ones no longer needs). Only the models
    still training are computed, and a line search's further trials only for the models that have
    not yet accepted a step: in a large batch the stragglers cost what they compute, not what the
    batch would.
    """
    if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    view = _FlatView(model.params)
    M = view.M
    build = type(model)

    def evaluate(p_rows: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Objective ``(A,)`` and flat gradient ``(A, P)`` of the models ``rows`` at parameters ``p_rows (A, P)``."""
        whole = len(rows) == M
        pick = (lambda v: v) if whole else (lambda v: None if v is None else v[rows])
        net = build(view.unflatten(p_rows))
        extra = {} if point_weight is None else {"point_weight": pick(point_weight)}
        res = net.loss_and_grads(pick(x), pick(t), pick(G), pick(weight), **extra)
        f = res.value_loss if res.grad_loss is None else res.value_loss + res.grad_loss
        return f, view.grads(res.grads)

    everyone = torch.arange(M)
    p = view.get()
    f, g = evaluate(p, everyone)
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
        a = torch.nonzero(active).flatten()  # the models still training
        order = torch.arange(newest + 1, newest + 1 + history) % history  # oldest first
        Sa, Ya, ga, pa, fa = S[a][:, order], Y[a][:, order], g[a], p[a], f[a]
        d = -_inverse_hessian_times(Sa, Ya, gamma[a], ga)
        slope = (ga * d).sum(1)
        bad = ~(slope < 0)  # not a descent direction (or NaN): restart from steepest descent
        if bool(bad.any()):
            d = torch.where(bad.unsqueeze(1), -ga, d)
            slope = torch.where(bad, -(ga * ga).sum(1), slope)
            S[a[bad]] = 0
            Y[a[bad]] = 0
            gamma[a[bad]] = 1.0
        # Without curvature pairs (first iteration, restart) the direction is -g, whose unit step
        # can be huge: start its search at a step of length 1e-2 instead.
        curved = S[a].abs().sum((1, 2)) > 0
        step = torch.where(curved, 1.0, (1e-2 / d.norm(dim=1).clamp_min(1e-12)).clamp_max(1.0))
        accepted = torch.zeros(len(a), dtype=torch.bool)
        f_new, g_new = fa.clone(), ga.clone()
        for _ in range(max_trials):
            todo = torch.nonzero(~accepted).flatten()  # positions in `a` still searching
            ft, gt = evaluate(pa[todo] + step[todo].unsqueeze(1) * d[todo], a[todo])
            ok = torch.isfinite(ft) & (ft <= fa[todo] + ARMIJO * step[todo] * slope[todo])
            f_new[todo[ok]], g_new[todo[ok]] = ft[ok], gt[ok]
            accepted[todo[ok]] = True
            if bool(accepted.all()):
                break
            step = torch.where(accepted, step, step * 0.5)
        s = torch.where(accepted.unsqueeze(1), step.unsqueeze(1) * d, 0.0)
        y = g_new - ga
        sy = (s * y).sum(1)
        keep = accepted & (sy > 1e-10 * (y * y).sum(1).clamp_min(1e-30))
        newest = (newest + 1) % history
        S[:, newest] = 0
        Y[:, newest] = 0
        S[a, newest] = torch.where(keep.unsqueeze(1), s, 0.0)
        Y[a, newest] = torch.where(keep.unsqueeze(1), y, 0.0)
        gamma[a] = torch.where(keep, sy / (y * y).sum(1).clamp_min(1e-30), gamma[a])
        failed = ~accepted
        S[a[failed]] = 0  # a failed line search: keep the weights, forget the curvature
        Y[a[failed]] = 0
        p[a] = pa + s
        f[a], g[a] = f_new, g_new
        losses.append(f.clone())
        done = f[a] <= converged
        if it > window:
            done |= f[a] > (1 - plateau) * losses[-1 - window][a]
        if caps is not None:
            done |= caps[a] <= it
        stopped = a[done | failed & ~curved]  # the last: even steepest descent found no decrease
        stopped_at[stopped] = it
        active[stopped] = False
        if on_stop is not None and len(stopped):
            view.put(p)
            more = on_stop(it, stopped)
            if more is not None and len(more):
                more = more[active[more]]
                stopped_at[more] = it
                active[more] = False
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
