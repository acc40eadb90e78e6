"""Derivative labels you do not have exactly: finite differences of a black box, and gradients
estimated from the samples themselves.

* :func:`finite_difference_gradients`: forward (``D + 1`` calls per point, error ``O(h)``) or
  central (``2D + 1`` calls, error ``O(h²)``) differences of a callable, every perturbed point
  in one batched call. The default step balances truncation against rounding in float64:
  ``h = √ε · max(1, |x|)`` forward, ``∛ε · max(1, |x|)`` central (Nocedal & Wright, §8.1), made
  exactly representable (``(x + h) − x``) so the divisor is the step actually taken.
* :func:`knn_gradients`: at each sample, the weighted least-squares slope of the value
  differences to its ``k`` nearest neighbours, ``min_g Σ_j w_j (Δy_j − g·Δx_j)² + ρ‖g‖²``
  (Kissel & Diepold 2019 use k = 4 and ``w_j ∝ exp(−‖Δx_j‖)``, normalised). Any dimension,
  vectorised (``torch.cdist``/``topk`` and one batched solve). Exact for linear functions.
  The ridge ``ρ`` is relative to the neighbourhood's own scale, so duplicated points (zero
  offsets) give finite weights and a zero slope instead of a singular system.

Both return float64 tensors; feed them to :func:`sobolev.fit` as ``dydx``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sobolev.core.inputs import as_tensor, check_points

SCHEMES: tuple[str, ...] = ("forward", "central")
WEIGHTINGS: tuple[str, ...] = ("exp", "uniform")
_EPS = float(torch.finfo(torch.float64).eps)


@dataclass(frozen=True)
class FiniteDifferences:
    """Values ``(N,)`` and gradient estimates ``(N, D)`` at the points, and the function calls
    spent per point (``D + 1`` forward, ``2D + 1`` central: the values are labels too)."""

    values: Tensor
    gradients: Tensor
    calls_per_point: int


def _call(f: Callable[[Any], Any], pts: Tensor, as_numpy: bool) -> Tensor:
    """``f`` on ``pts (B, D)`` as one batch (a numpy array when ``as_numpy``), values ``(B,)`` in float64."""
    raw = f(pts.numpy() if as_numpy else pts)
    out = (raw if isinstance(raw, Tensor) else torch.as_tensor(np.asarray(raw, dtype=np.float64))).double().reshape(-1)
    if out.shape[0] != pts.shape[0]:
        raise ValueError(f"f: expected {pts.shape[0]} values for {pts.shape[0]} points, got shape {tuple(out.shape)}")
    return out


def finite_difference_gradients(
    f: Callable[[Any], Any], x: Any, scheme: str = "central", step: float | None = None
) -> FiniteDifferences:
    """Finite-difference gradients of the black box ``f`` at ``x (N, D)``.

    Args:
        f: maps points ``(B, D)`` to values ``(B,)``, called once per scheme with every point; it
            receives a float64 numpy array when ``x`` is not a torch tensor, else a float64 tensor.
        x: the points, ``(N, D)`` (numpy, torch or lists).
        scheme: ``"forward"`` or ``"central"``.
        step: relative step ``h / max(1, |x_j|)``; ``None``: ``√ε`` forward, ``∛ε`` central.

    Raises:
        ValueError: bad points, scheme or step, or ``f`` returning the wrong number of values
            or a non-finite one (named with its point).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme: expected one of {SCHEMES}, got {scheme!r}")
    if step is None:
        step = _EPS ** (0.5 if scheme == "forward" else 1 / 3)
    if not isinstance(step, (int, float)) or isinstance(step, bool) or not 0 < step < 1:
        raise ValueError(f"step: expected a relative step in (0, 1), got {step!r}")
    xt = check_points("x", x)
    as_numpy = not isinstance(x, Tensor)
    N, D = xt.shape
    h = step * xt.abs().clamp_min(1.0)
    h = (xt + h) - xt  # the step actually taken in float64
    eye = torch.eye(D, dtype=torch.float64)
    plus = (xt.unsqueeze(1) + h.unsqueeze(1) * eye).reshape(N * D, D)  # (N·D, D): x + h_j e_j
    if scheme == "forward":
        values = _call(f, torch.cat([xt, plus]), as_numpy)
        y, up = values[:N], values[N:].view(N, D)
        grads, calls = (up - y.unsqueeze(1)) / h, D + 1
    else:
        minus = (xt.unsqueeze(1) - h.unsqueeze(1) * eye).reshape(N * D, D)
        values = _call(f, torch.cat([xt, plus, minus]), as_numpy)
        y, up, down = values[:N], values[N : N + N * D].view(N, D), values[N + N * D :].view(N, D)
        grads, calls = (up - down) / (2 * h), 2 * D + 1
    bad = ~(torch.isfinite(y) & torch.isfinite(grads).all(1))
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        raise ValueError(f"f: not finite at or beside x = {xt[i].tolist()} (row {i}); "
                         "differences need f finite within a step of every point")  # fmt: skip
    return FiniteDifferences(y, grads, calls)


def knn_gradients(x: Any, y: Any, k: int = 4, weighting: str = "exp", ridge: float = 1e-6, chunk: int = 2048) -> Tensor:
    """Gradient estimates ``(N, D)`` at every sample from its ``k`` nearest neighbours.

    Args:
        x: sample points ``(N, D)``; y: their values ``(N,)``.
        k: neighbours per point (``1 ≤ k < N``; at least ``D`` for a determined fit: fewer leaves
            the slope along unsampled directions to the ridge, i.e. 0).
        weighting: ``"exp"`` (``w_j ∝ exp(−‖Δx_j‖)``, Kissel & Diepold) or ``"uniform"``.
        ridge: ``ρ`` relative to the mean diagonal of the neighbourhood's ``ΔxᵀWΔx``.
        chunk: query points per distance block (memory ``chunk × N``).
    """
    xt = check_points("x", x)
    N, D = xt.shape
    yt = as_tensor("y", y).reshape(-1)
    if yt.shape[0] != N:
        raise ValueError(f"y: expected {N} values to match x, got shape {tuple(yt.shape)}")
    if not bool(torch.isfinite(yt).all()):
        raise ValueError(f"y: row {int(torch.nonzero(~torch.isfinite(yt))[0])} is not finite; every value must be")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k < N:
        raise ValueError(f"k: expected an integer in [1, {N - 1}] (fewer than the {N} points), got {k!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting: expected one of {WEIGHTINGS}, got {weighting!r}")
    if not isinstance(ridge, (int, float)) or isinstance(ridge, bool) or not 0 < ridge < 1:
        raise ValueError(f"ridge: expected a relative ridge in (0, 1), got {ridge!r}")
    out = []
    eye = torch.eye(D, dtype=torch.float64)
    for start in range(0, N, chunk):
        q = xt[start : start + chunk]
        dist = torch.cdist(q, xt)
        rows = torch.arange(q.shape[0])
        dist[rows, rows + start] = torch.inf  # not its own neighbour (a duplicate still is)
        d, idx = dist.topk(k, dim=1, largest=False)  # (B, k)
        dx = xt[idx] - q.unsqueeze(1)  # (B, k, D)
        dy = yt[idx] - yt[start : start + chunk].unsqueeze(1)  # (B, k)
        w = torch.exp(-d) if weighting == "exp" else torch.ones_like(d)
        w = w / w.sum(1, keepdim=True)
        A = torch.einsum("bk,bki,bkj->bij", w, dx, dx)
        b = torch.einsum("bk,bki,bk->bi", w, dx, dy)
        scale = A.diagonal(dim1=1, dim2=2).mean(1)
        # relative ridge; the tiny absolute floor makes an all-duplicate neighbourhood (A = 0) solvable, slope 0
        A = A + (ridge * scale + torch.finfo(torch.float64).tiny).view(-1, 1, 1) * eye
        out.append(torch.linalg.solve(A, b.unsqueeze(2)).squeeze(2))
    return torch.cat(out)


__all__ = ["FiniteDifferences", "finite_difference_gradients", "knn_gradients"]
