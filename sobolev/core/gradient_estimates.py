"""Derivative labels you do not have exactly: finite differences of a black box, and gradients
estimated from the samples themselves.

* :func:`finite_difference_gradients`: forward (``D + 1`` calls per point, error ``O(h)``) or
  central (``2D + 1`` calls, error ``O(h²)``) differences of a callable, every perturbed point
  in one batched call. The default step balances truncation against rounding in float64:
  ``h = √ε · max(1, |x|)`` forward, ``∛ε · max(1, |x|)`` central (Nocedal & Wright, §8.1), made
  exactly representable (``(x + h) − x``) so the divisor is the step actually taken.
* :func:`knn_gradients`: at each sample, the weighted least-squares slope of the value
  differences to its ``k`` nearest neighbours, ``min_g Σ_j w_j (Δy_j − g·Δx_j)² + ρ‖g‖²``. Any
  dimension, vectorised (``torch.cdist``/``topk`` and one batched solve). Exact for linear
  functions. Residual weights: ``relative`` (the default), ``exp(−2‖Δx_j‖ / d̄)`` with ``d̄`` the
  point's mean neighbour distance, so the estimate does not depend on the inputs' units;
  ``kissel_diepold``, their estimator exactly (``lstsq(W A, W b)`` with ``W = diag(exp(−‖Δx_j‖))``,
  i.e. residual weights ``exp(−2‖Δx_j‖)`` in the inputs' own units, k = 4 in their 2-D study);
  ``uniform``. Weights are computed relative to the nearest neighbour's, so none underflows to 0
  for all neighbours at once (no NaN rows, whatever the units). The ridge ``ρ`` is relative to the
  neighbourhood's own scale, so duplicated points (zero offsets) give finite weights and a zero
  slope instead of a singular system.

Both return float64 tensors; feed them to :func:`sobolev.fit` as ``dydx``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sobolev.core.inputs import as_tensor, check_number, check_points

SCHEMES: tuple[str, ...] = ("forward", "central")
WEIGHTINGS: tuple[str, ...] = ("relative", "kissel_diepold", "uniform")
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
    if isinstance(raw, Tensor):
        if raw.is_complex() or raw.dtype == torch.bool:
            raise ValueError(f"f: returned values of dtype {raw.dtype}; expected real numbers")
        out = raw.detach().double().reshape(-1)
    else:
        arr = np.asarray(raw)
        if arr.dtype.kind not in "iuf":
            raise ValueError(f"f: returned values of dtype {arr.dtype} (e.g. {arr.reshape(-1)[:1].tolist()}); "
                             "expected real numbers (complex values would lose their imaginary part)")  # fmt: skip
        out = torch.as_tensor(arr.astype(np.float64)).reshape(-1)
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
    if not callable(f):
        raise ValueError(f"f: expected a callable mapping points (B, D) to values (B,), got {type(f).__name__}")
    if scheme not in SCHEMES:
        raise ValueError(f"scheme: expected one of {SCHEMES}, got {scheme!r}")
    if step is None:
        step = _EPS ** (0.5 if scheme == "forward" else 1 / 3)
    step = check_number("step", step, 0.0, 1.0)
    if not 0 < step < 1:
        raise ValueError(f"step: expected a relative step in (0, 1), got {step!r}")
    xt = check_points("x", x)
    as_numpy = not isinstance(x, Tensor)
    N, D = xt.shape
    h = step * xt.abs().clamp_min(1.0)
    h = (xt + h) - xt  # the step actually taken in float64
    if not bool((h > 0).all()):
        i = int(torch.nonzero((h <= 0).any(1))[0])
        raise ValueError(f"step: {step:g} is below float64's resolution at x = {xt[i].tolist()} (row {i}): the step "
                         f"taken there is 0; use at least {4 * _EPS:.1e}")  # fmt: skip
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


def knn_gradients(
    x: Any, y: Any, k: int | None = None, weighting: str = "relative", ridge: float = 1e-6, chunk: int = 2048
) -> Tensor:
    """Gradient estimates ``(N, D)`` at every sample from its ``k`` nearest neighbours.

    Args:
        x: sample points ``(N, D)``; y: their values ``(N,)``.
        k: neighbours per point (``1 ≤ k < N``); default ``max(4, 2D)`` (at most ``N - 1``), so the local fit is
            overdetermined in every dimension (fewer than ``D`` leaves the slope along unsampled directions to the
            ridge, i.e. 0).
        weighting: ``"relative"`` (residual weights ``exp(−2‖Δx_j‖ / d̄)``, ``d̄`` the point's mean neighbour
            distance: the same estimate in any input units), ``"kissel_diepold"`` (their estimator: residual weights
            ``exp(−2‖Δx_j‖)`` in the inputs' own units) or ``"uniform"``.
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
    if N < 2:
        raise ValueError(f"x: {N} point(s); need at least 2 to estimate slopes from neighbours")
    k = min(max(4, 2 * D), N - 1) if k is None else check_number("k", k, 1, N - 1, integer=True)
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting: expected one of {WEIGHTINGS}, got {weighting!r}")
    ridge = check_number("ridge", ridge, 0.0, 1.0)
    if not 0 < ridge < 1:
        raise ValueError(f"ridge: expected a relative ridge in (0, 1), got {ridge!r}")
    chunk = check_number("chunk", chunk, 1, 2**31, integer=True)
    out = []
    eye = torch.eye(D, dtype=torch.float64)
    for start in range(0, N, chunk):
        q = xt[start : start + chunk]
        dist = torch.cdist(q, xt)
        rows = torch.arange(q.shape[0])
        dist[rows, rows + start] = torch.inf  # not its own neighbour (a duplicate still is)
        d, idx = dist.topk(k, dim=1, largest=False)  # (B, k), nearest first
        dx = xt[idx] - q.unsqueeze(1)  # (B, k, D)
        dy = yt[idx] - yt[start : start + chunk].unsqueeze(1)  # (B, k)
        w = _residual_weights(d, weighting)
        A = torch.einsum("bk,bki,bkj->bij", w, dx, dx)
        b = torch.einsum("bk,bki,bk->bi", w, dx, dy)
        scale = A.diagonal(dim1=1, dim2=2).mean(1)
        # relative ridge; the tiny absolute floor makes an all-duplicate neighbourhood (A = 0) solvable, slope 0
        A = A + (ridge * scale + torch.finfo(torch.float64).tiny).view(-1, 1, 1) * eye
        out.append(torch.linalg.solve(A, b.unsqueeze(2)).squeeze(2))
    return torch.cat(out)


def _residual_weights(d: Tensor, weighting: str) -> Tensor:
    """Normalised weights of the squared residuals of neighbours at distances ``d (B, k)`` (nearest first), each
    computed relative to the nearest neighbour's: the nearest always weighs 1 before normalising, so no row of
    weights can underflow to all zeros, whatever the units."""
    if weighting == "uniform":
        w = torch.ones_like(d)
    else:
        scale = d.mean(1, keepdim=True).clamp_min(torch.finfo(d.dtype).tiny) if weighting == "relative" else 1.0
        w = torch.exp(-2 * (d - d[:, :1]) / scale)
    return w / w.sum(1, keepdim=True)


__all__ = ["FiniteDifferences", "finite_difference_gradients", "knn_gradients"]
