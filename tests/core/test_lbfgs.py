"""The batched L-BFGS of ``sobolev.fit``: the compact inverse-Hessian product equals the
textbook two-loop recursion, the members are independent, and it minimises what it should."""

from __future__ import annotations

import torch

from sobolev.core.lbfgs import _inverse_hessian_times, train_lbfgs
from sobolev.core.tanh_mlp import BatchedTanhMLP


def _two_loop(S: torch.Tensor, Y: torch.Tensor, gamma: float, g: torch.Tensor) -> torch.Tensor:
    """Nocedal & Wright's Algorithm 7.4 for one model, pairs oldest first; a zero pair is skipped."""
    q, alphas = g.clone(), []
    for i in reversed(range(S.shape[0])):
        sy = S[i] @ Y[i]
        alphas.append(None if sy == 0 else (S[i] @ q) / sy)
        if sy != 0:
            q -= alphas[-1] * Y[i]
    r = gamma * q
    for i, a in zip(range(S.shape[0]), reversed(alphas), strict=True):
        if a is not None:
            r += S[i] * (a - (Y[i] @ r) / (S[i] @ Y[i]))
    return r


def test_compact_form_equals_two_loop_recursion_with_empty_slots():
    torch.manual_seed(0)
    M, m, P = 3, 5, 7
    A = torch.randn(M, P, P, dtype=torch.float64)
    A = A @ A.transpose(1, 2) + torch.eye(P, dtype=torch.float64)  # SPD: curvature pairs sᵀy > 0
    S = torch.randn(M, m, P, dtype=torch.float64)
    Y = torch.bmm(S, A)
    S[1, 2] = Y[1, 2] = 0  # empty slots in the middle and at the oldest end
    S[2, 0] = Y[2, 0] = 0
    gamma = torch.rand(M, dtype=torch.float64) + 0.5
    g = torch.randn(M, P, dtype=torch.float64)
    want = torch.stack([_two_loop(S[k], Y[k], float(gamma[k]), g[k]) for k in range(M)])
    torch.testing.assert_close(_inverse_hessian_times(S, Y, gamma, g), want, rtol=1e-10, atol=1e-12)
    # no pairs at all: H = γ I
    Z = torch.zeros_like(S)
    torch.testing.assert_close(_inverse_hessian_times(Z, Z, gamma, g), gamma.unsqueeze(1) * g)


def _problem(M: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(40, 2, generator=gen, dtype=torch.float64) * 2 - 1
    t = torch.sin(2 * x[:, 0]) * x[:, 1]
    G = torch.stack([2 * torch.cos(2 * x[:, 0]) * x[:, 1], torch.sin(2 * x[:, 0])], 1)
    return x.expand(M, 40, 2).contiguous(), t.expand(M, 40).contiguous(), G.expand(M, 40, 2).contiguous()


def test_members_are_independent_and_the_objective_falls():
    x, t, G = _problem(3)
    w = torch.ones(3, dtype=torch.float64)
    both = BatchedTanhMLP.init([0, 1, 2], 2, 8, 2, dtype=torch.float64)
    start = both.losses(x, t, G, w)
    hist = train_lbfgs(both, x, t, 60, G, w)
    end = both.losses(x, t, G, w)
    assert bool((end < 1e-2 * start).all())  # a quasi-Newton method on a smooth objective
    assert torch.equal(hist.loss[-1], end) or torch.allclose(hist.loss[-1], end, rtol=1e-9)

    # Member 1 trained alone ends where it ended in the ensemble (its own line search and history), to within
    # what rounding can move it: a batch of 1 or 3 may round differently (another kernel, another CPU), and 60
    # iterations amplify a rounding-sized change. The tolerance is measured, not assumed: ten times the change
    # that a 1e-13 relative nudge of the initial weights makes (here 3e-8; alone vs ensemble differed by 2e-10).
    def alone(nudge: float) -> dict[str, torch.Tensor]:
        net = BatchedTanhMLP.init([1], 2, 8, 2, dtype=torch.float64)
        for v in net.params.values():
            v.mul_(1 + nudge)
        train_lbfgs(net, x[:1], t[:1], 60, G[:1], w[:1])
        return {name: v[0] for name, v in net.params.items()}

    exact, nudged = alone(0.0), alone(1e-13)
    tolerance = max(10 * max(float((exact[n] - nudged[n]).abs().max()) for n in exact), 1e-12)
    for name, v in exact.items():
        assert float((v - both.params[name][1]).abs().max()) <= tolerance, name


def test_a_member_stops_at_its_floor_or_plateau_and_keeps_its_weights():
    x, t, G = _problem(2)
    w = torch.ones(2, dtype=torch.float64)
    net = BatchedTanhMLP.init([0, 1], 2, 8, 2, dtype=torch.float64)
    hist = train_lbfgs(net, x, t, 400, G, w, converged=1e-3)
    stop = hist.stopped_at
    assert bool((stop < 400).all())
    for k in range(2):
        i = int(stop[k])
        assert hist.loss[i - 1, k] <= 1e-3 or hist.loss[i - 1, k] > 0.999 * hist.loss[i - 51, k]
        # after stopping, the member's objective no longer moves
        assert bool((hist.loss[i - 1 :, k] == hist.loss[i - 1, k]).all())
