"""Section 3 and SM §1, computed: the constructions and counts behind the paper's theory.

* :func:`pl_family` — Figure 2 (left): the continuous piecewise-linear functions on a fixed
  1-D partition consistent with some values (and slopes), as a particular solution plus
  a null-space basis.
* :func:`prop1_network` — Proposition 1's proof as a ReLU ``nn.Module`` that matches given
  values and gradients on a finite set (with the corrected change of coordinates).
* :func:`gaussian_from_value_and_slope`, :func:`gaussian_through` — Proposition 3 for
  Gaussian densities.
* :func:`polynomial_points_needed` — how many points determine a degree-n polynomial.
* :func:`sobolev_floor` — Theorem 2: the least Sobolev error any h can reach for (f, g).
* :class:`KuhnMesh`, :func:`points_to_identify` — sample complexity of piecewise-linear
  families in d dimensions, by exact linear algebra.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import pandas as pd
import torch
from scipy.linalg import solve_banded
from torch import Tensor, nn

from sobolev.common.compare import is_diverged
from sobolev.core import engine
from sobolev.core.derivatives import input_gradient
from sobolev.core.losses import balanced_weights, sobolev_loss
from sobolev.core.models import MLP, BatchedMLP
from sobolev.core.samples import Normaliser, Sample
from sobolev.core.training import train_ensemble, train_loop
from sobolev.theory.config import TheoryConfig

DTYPE = torch.float64


# --- Figure 2 (left): the family of PL functions consistent with the data -------------------
def pl_rows(knots: Tensor, x: Tensor, derivative: bool = False) -> Tensor:
    """Rows mapping the knot values ``c (K,)`` of a continuous PL function to ``f(x)`` (or ``f'(x)``).

    Args:
        knots: increasing knot positions ``(K,)``.
        x: query points ``(n,)`` inside ``[knots[0], knots[-1]]``, not on an interior knot
            when ``derivative`` (the slope is undefined there).

    Returns:
        ``(n, K)`` matrix ``R`` with ``f(x) = R @ c``.
    """
    knots, x = knots.to(DTYPE), x.to(DTYPE)
    seg = torch.searchsorted(knots, x, right=True).clamp(1, len(knots) - 1) - 1
    left, right = knots[seg], knots[seg + 1]
    rows = torch.zeros(len(x), len(knots), dtype=DTYPE)
    idx = torch.arange(len(x))
    if derivative:
        rows[idx, seg] = -1 / (right - left)
        rows[idx, seg + 1] = 1 / (right - left)
    else:
        w = (x - left) / (right - left)
        rows[idx, seg] = 1 - w
        rows[idx, seg + 1] = w
    return rows


@dataclass(frozen=True)
class Family:
    """The affine family ``{c0 + N z}`` of knot values consistent with the data."""

    particular: Tensor  # (K,)
    null_space: Tensor  # (K, k): k = 0 means the data identify the function
    residual: float  # of the least-squares fit: 0 when the data are consistent

    @property
    def dimension(self) -> int:
        return self.null_space.shape[1]

    def member(self, z: Tensor | list[float]) -> Tensor:
        return self.particular + self.null_space @ torch.as_tensor(z, dtype=DTYPE)


def solve_family(A: Tensor, b: Tensor, tol: float = 1e-10) -> Family:
    """All solutions of ``A c = b``: least-squares particular solution and null space (SVD)."""
    A, b = A.to(DTYPE), b.to(DTYPE)
    U, S, Vh = torch.linalg.svd(A, full_matrices=True)
    rank = int((tol * S.max() < S).sum())
    c0 = Vh[:rank].T @ ((U[:, :rank].T @ b) / S[:rank])
    return Family(c0, Vh[rank:].T, float((A @ c0 - b).norm()))


def pl_family(knots: Tensor, x: Tensor, y: Tensor, slopes: Tensor | None = None) -> Family:
    """Continuous PL functions on ``knots`` with ``f(x) = y`` (and ``f'(x) = slopes``)."""
    A, b = pl_rows(knots, x), y
    if slopes is not None:
        A = torch.cat([A, pl_rows(knots, x, derivative=True)])
        b = torch.cat([y, slopes])
    return solve_family(A, b.to(DTYPE))


# --- Proposition 1: a ReLU network with zero Sobolev training loss --------------------------
def bump(center: float, value: float, slope: float, eps: float) -> tuple[list[float], list[float]]:
    """SM §1's 1-D bump ``p_i`` as a sum of ReLUs ``Σ_j c_j relu(x - t_j)``.

    ``p_i`` is 0 outside ``[σ-2ε, σ+2ε]``, equals ``value + slope (x - σ)`` on ``[σ-ε, σ+ε]``
    and is linear in between. Returns the knots ``t`` and the slope changes ``c``.
    """
    s_up = (value - slope * eps) / eps  # slope on [σ-2ε, σ-ε]
    s_down = -(value + slope * eps) / eps  # slope on [σ+ε, σ+2ε]
    knots = [center - 2 * eps, center - eps, center + eps, center + 2 * eps]
    return knots, [s_up, slope - s_up, s_down - slope, -s_down]


class ReLUSum(nn.Module):
    """``h(x) = Σ_j c_j relu(a_jᵀ x - t_j)``: one hidden ReLU layer, linear output, no bias."""

    def __init__(self, directions: Tensor, offsets: Tensor, coefficients: Tensor) -> None:
        super().__init__()
        self.hidden = nn.Linear(directions.shape[1], len(offsets), dtype=DTYPE)
        self.out = nn.Linear(len(offsets), 1, bias=False, dtype=DTYPE)
        with torch.no_grad():
            self.hidden.weight.copy_(directions)
            self.hidden.bias.copy_(-offsets)
            self.out.weight.copy_(coefficients.unsqueeze(0))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, d) -> (B,)``."""
        return self.out(torch.relu(self.hidden(x)))[:, 0]


def distinct_projections(points: Tensor, generator: torch.Generator, tries: int = 100) -> Tensor:
    """A random ``A ∈ GL(d)`` whose every coordinate separates the points (SM §1's change of
    coordinates): the points ``A σ_i`` differ pairwise in each coordinate."""
    n, d = points.shape
    for _ in range(tries):
        A = torch.randn(d, d, generator=generator, dtype=DTYPE) if d > 1 else torch.ones(1, 1, dtype=DTYPE)
        z = points.to(DTYPE) @ A.T
        gaps = (z.unsqueeze(0) - z.unsqueeze(1)).abs() + torch.eye(n, dtype=DTYPE).unsqueeze(2) * 1e9
        if float(gaps.min()) > 1e-6 and abs(float(torch.linalg.det(A))) > 1e-6:
            return A
    raise ValueError("could not separate the points in every coordinate: are some points repeated?")


def prop1_network(
    points: Tensor, values: Tensor, grads: Tensor, generator: torch.Generator | None = None, as_printed: bool = False
) -> ReLUSum:
    """Proposition 1's construction: a ReLU net ``h`` with ``h(σ) = f(σ)``, ``∇h(σ) = g(σ)`` on Σ.

    Following SM §1: pick ``A`` so that each coordinate of ``Aσ`` separates the points; on
    coordinate ``k`` place one bump per point (disjoint supports, ``ε`` below a fifth of
    the smallest gap) with value ``f(σ)/d`` and slope ``s_k``; ``h(x) = Σ_k p^k((Ax)_k)``.
    The chain rule gives ``∇h(σ) = Aᵀ s``, so the slopes must be ``s = A⁻ᵀ g(σ)``. The proof
    as printed uses ``A⁻¹ g(σ)`` (and writes ``A · A⁻¹ g``), which is right only when ``A``
    is orthogonal; ``as_printed=True`` builds that version, to show the slip.

    Args:
        points: the finite set Σ, ``(n, d)``, distinct points.
        values: ``f`` on Σ, ``(n,)``.
        grads: ``g`` on Σ, ``(n, d)``.

    Returns:
        A :class:`ReLUSum` with ``4 n d`` hidden units (float64).
    """
    points, values, grads = points.to(DTYPE), values.to(DTYPE), grads.to(DTYPE)
    n, d = points.shape
    if values.shape != (n,) or grads.shape != (n, d):
        raise ValueError(
            f"expected values ({n},) and grads ({n}, {d}), got {tuple(values.shape)}, {tuple(grads.shape)}"
        )
    A = distinct_projections(points, generator or torch.Generator().manual_seed(0))
    z = points @ A.T  # (n, d): coordinate k of A σ_i
    slopes = (grads @ torch.linalg.inv(A).T) if as_printed else torch.linalg.solve(A.T, grads.T).T
    directions, offsets, coefficients = [], [], []
    for k in range(d):
        zk = z[:, k]
        gap = float(torch.diff(torch.sort(zk).values).min()) if n > 1 else 1.0
        eps = gap / 6  # strictly below gap / 5, as SM §1 requires
        for i in range(n):
            knots, coeffs = bump(float(zk[i]), float(values[i]) / d, float(slopes[i, k]), eps)
            directions += [A[k]] * 4
            offsets += knots
            coefficients += coeffs
    return ReLUSum(torch.stack(directions), torch.tensor(offsets, dtype=DTYPE), torch.tensor(coefficients, dtype=DTYPE))


# --- Proposition 3: Gaussian densities --------------------------------------------------------
def gaussian_pdf(x: Tensor, mu: Tensor | float, var: Tensor | float) -> Tensor:
    var = torch.as_tensor(var, dtype=DTYPE)
    return torch.exp(-((x - mu) ** 2) / (2 * var)) / torch.sqrt(2 * math.pi * var)


def gaussian_from_value_and_slope(x: float, alpha: float, beta: float) -> tuple[float, float]:
    """SM §1: recover ``(μ, σ²)`` from the density ``α`` and its slope ``β`` at one point.

    ``2 ln(√(2π) α) = -ln σ² - (β/α)² σ²`` has a strictly decreasing right side in ``σ²``,
    so bisection finds the unique root; then ``μ = x + σ² β/α``.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be a positive density value, got {alpha}")
    r = beta / alpha
    lhs = 2 * math.log(math.sqrt(2 * math.pi) * alpha)

    def rhs(v: float) -> float:
        return -math.log(v) - r * r * v

    lo, hi = 1e-12, 1.0
    while rhs(hi) > lhs:
        hi *= 2
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if rhs(mid) > lhs else (lo, mid)
    var = math.sqrt(lo * hi)
    return x + var * r, var


def gaussian_through(
    mu: float, var: float, x1: float, x2: float, guess: tuple[float, float], steps: int = 100
) -> tuple[float, float]:
    """Another Gaussian ``N(μ', σ'²)`` with the same density values as ``N(μ, σ²)`` at ``x1`` and
    ``x2``, by Newton's method from ``guess`` (exact Jacobian by autograd, float64)."""
    xs = torch.tensor([x1, x2], dtype=DTYPE)
    target = gaussian_pdf(xs, mu, var)
    theta = torch.tensor(guess, dtype=DTYPE)

    def residual(t: Tensor) -> Tensor:
        return gaussian_pdf(xs, t[0], t[1]) - target

    for _ in range(steps):
        J = torch.autograd.functional.jacobian(residual, theta)
        theta = theta - torch.linalg.solve(J, residual(theta))
        if float(residual(theta).abs().max()) < 1e-15:
            break
    return float(theta[0]), float(theta[1])


# --- Proposition 3 (polynomials) --------------------------------------------------------------
def polynomial_rows(x: Tensor, degree: int, derivative: bool = False) -> Tensor:
    """Rows of the (confluent) Vandermonde matrix: ``p(x)`` or ``p'(x)`` from coefficients."""
    powers = torch.arange(degree + 1, dtype=DTYPE)
    x = x.to(DTYPE).unsqueeze(1)
    if not derivative:
        return x**powers
    return powers * x ** (powers - 1).clamp(min=0)


def polynomial_points_needed(degree: int, with_derivatives: bool, generator: torch.Generator | None = None) -> int:
    """The fewest distinct random points whose values (and derivatives) determine every
    polynomial of ``degree``: the first ``k`` with a full-rank system."""
    g = generator or torch.Generator().manual_seed(0)
    for k in range(1, degree + 2):
        x = torch.rand(k, generator=g, dtype=DTYPE) * 2 - 1
        rows = polynomial_rows(x, degree)
        if with_derivatives:
            rows = torch.cat([rows, polynomial_rows(x, degree, derivative=True)])
        if int(torch.linalg.matrix_rank(rows)) == degree + 1:
            return k
    raise AssertionError("unreachable: degree + 1 distinct values always suffice")


# --- Theorem 2: the floor of the Sobolev error when g is not f' --------------------------------
def sobolev_floor(
    f: Callable[[Tensor], Tensor], g: Callable[[Tensor], Tensor], a: float, b: float, m: int = 20_000
) -> tuple[float, Tensor, Tensor, float]:
    """The least ``J(h) = (1/(b-a)) ∫ (h - f)² + (h' - g)²`` over all functions h on ``[a, b]``.

    The minimiser solves the Euler-Lagrange equation ``h - h'' = f - g'`` with the natural
    boundary conditions ``h'(a) = g(a)``, ``h'(b) = g(b)``; it is solved with second-order
    finite differences on ``m`` cells (a tridiagonal system; ``g'`` by autograd) and ``J`` is
    integrated by the trapezoidal rule. For ``g = f'`` the floor is 0; for ``g ≠ f'`` it is
    positive, so no model can drive both errors to zero (Theorem 2). The discretisation error
    is estimated as the change of ``J`` from ``m/2`` to ``m`` cells (the scheme is O(m⁻²)).

    Returns:
        ``(floor, x, h, error)``: the least error, the nodes ``(m + 1,)``, the optimal ``h`` at
        them, and the estimated discretisation error of ``floor``.
    """
    floor, x, h = _floor_on(f, g, a, b, m)
    coarse, _, _ = _floor_on(f, g, a, b, m // 2)
    return floor, x, h, abs(floor - coarse)


def trapezoid_mean(values: Tensor, x: Tensor) -> float:
    """``(1/(b-a)) ∫ values dx`` by the trapezoidal rule on nodes ``x``."""
    return float(torch.trapezoid(values, x) / (x[-1] - x[0]))


def _floor_on(f: Callable[[Tensor], Tensor], g: Callable[[Tensor], Tensor], a: float, b: float, m: int):
    x = torch.linspace(a, b, m + 1, dtype=DTYPE)
    dx = (b - a) / m
    xg = x.clone().requires_grad_(True)
    (g_prime,) = torch.autograd.grad(g(xg).sum(), xg)
    rhs = (f(x) - g_prime).numpy().copy()
    # h_i - (h_{i+1} - 2 h_i + h_{i-1}) / dx² = rhs_i, with ghost nodes from h'(a) = g(a), h'(b) = g(b).
    ga, gb = float(g(torch.tensor(a, dtype=DTYPE))), float(g(torch.tensor(b, dtype=DTYPE)))
    diag = torch.full((m + 1,), 1 + 2 / dx**2, dtype=DTYPE).numpy()
    off = torch.full((m,), -1 / dx**2, dtype=DTYPE).numpy()
    upper, lower = off.copy(), off.copy()
    upper[0] = lower[-1] = -2 / dx**2
    rhs[0] -= 2 * ga / dx
    rhs[-1] += 2 * gb / dx
    bands = torch.zeros(3, m + 1, dtype=DTYPE).numpy()
    bands[0, 1:], bands[1], bands[2, :-1] = upper, diag, lower
    h = torch.from_numpy(solve_banded((1, 1), bands, rhs))
    slope = torch.gradient(h, spacing=dx, edge_order=2)[0]
    return trapezoid_mean((h - f(x)) ** 2 + (slope - g(x)) ** 2, x), x, h


# --- Sample complexity of piecewise-linear families -----------------------------------------
class KuhnMesh:
    """``[0, 1]^d`` cut into ``m^d`` cubes, each into ``d!`` simplices (Kuhn triangulation).

    A continuous PL function on it is fixed by its values at the ``(m + 1)^d`` grid
    vertices (P1 finite elements); a *discontinuous* one has ``d + 1`` free parameters on
    each of the ``m^d d!`` simplices.
    """

    def __init__(self, d: int, m: int) -> None:
        if d < 1 or m < 1:
            raise ValueError(f"need d >= 1 and m >= 1, got d={d}, m={m}")
        self.d, self.m = d, m
        self.perms = list(itertools.permutations(range(d)))
        self.n_vertices = (m + 1) ** d
        self.n_simplices = m**d * len(self.perms)

    def locate(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Cube corner ``(B, d)`` (integer), sorting permutation ``(B, d)`` and local coordinates ``(B, d)``."""
        scaled = x.to(DTYPE) * self.m
        corner = scaled.floor().clamp(max=self.m - 1)
        u = scaled - corner
        order = torch.argsort(u, dim=1, descending=True)
        return corner.long(), order, u

    def _vertex_index(self, v: Tensor) -> Tensor:
        base = (self.m + 1) ** torch.arange(self.d)
        return (v * base).sum(-1)

    def simplex_index(self, x: Tensor) -> Tensor:
        corner, order, _ = self.locate(x)
        cube = (corner * self.m ** torch.arange(self.d)).sum(1)
        perm_id = torch.tensor([self.perms.index(tuple(p)) for p in order.tolist()])
        return cube * len(self.perms) + perm_id

    def rows(self, x: Tensor, continuous: bool = True, derivative: bool = False) -> Tensor:
        """Linear maps from the parameters to ``f(x)`` ``(B, P)`` or to ``∇f(x)`` ``(B, d, P)``."""
        B, d = x.shape
        corner, order, u = self.locate(x)
        if not continuous:
            block = self.simplex_index(x) * (d + 1)
            if derivative:
                out = torch.zeros(B, d, self.n_simplices * (d + 1), dtype=DTYPE)
                for k in range(d):
                    out[torch.arange(B), k, block + 1 + k] = 1.0
                return out
            out = torch.zeros(B, self.n_simplices * (d + 1), dtype=DTYPE)
            out[torch.arange(B), block] = 1.0
            for k in range(d):
                out[torch.arange(B), block + 1 + k] = x[:, k].to(DTYPE)
            return out
        # Vertices of the simplex: v_0 = corner, v_j = v_{j-1} + e_{order[j-1]}.
        steps = torch.nn.functional.one_hot(order, d).cumsum(1)  # (B, d, d)
        verts = torch.cat([corner.unsqueeze(1), corner.unsqueeze(1) + steps], 1)  # (B, d+1, d)
        vid = self._vertex_index(verts)  # (B, d+1)
        us = torch.gather(u, 1, order)  # u sorted descending
        if derivative:
            out = torch.zeros(B, d, self.n_vertices, dtype=DTYPE)
            for j in range(d):  # ∂f/∂x_{order[j]} = m (c[v_{j+1}] - c[v_j])
                k = order[:, j]
                out[torch.arange(B), k, vid[:, j + 1]] += self.m
                out[torch.arange(B), k, vid[:, j]] -= self.m
            return out
        lam = torch.cat([1 - us[:, :1], us[:, :-1] - us[:, 1:], us[:, -1:]], 1)  # barycentric (B, d+1)
        out = torch.zeros(B, self.n_vertices, dtype=DTYPE)
        out.scatter_add_(1, vid, lam)
        return out

    def n_params(self, continuous: bool = True) -> int:
        return self.n_vertices if continuous else self.n_simplices * (self.d + 1)


def points_to_identify(
    mesh: KuhnMesh,
    with_derivatives: bool,
    continuous: bool = True,
    generator: torch.Generator | None = None,
    method: str = "auto",
    max_points: int = 1_000_000,
) -> int:
    """How many uniform random points identify every PL function on ``mesh``.

    ``method="rank"``: the smallest ``N`` whose value rows (plus gradient rows) have full
    rank, by bisection on ``N`` (rank is monotone in ``N``). ``method="count"`` (independent
    pieces only, the default there): the system is block-diagonal, one affine piece per
    simplex, so it is full rank exactly when every simplex holds ``d + 1`` points (values
    only) or 1 point (values + gradients); random points are in general position almost
    surely, so counting arrivals gives the same ``N`` without any linear algebra (tested).
    """
    g = generator or torch.Generator().manual_seed(0)
    if method == "auto":
        method = "rank" if continuous else "count"
    if method == "count":
        if continuous:
            raise ValueError("method='count' applies to independent pieces only (continuous=False)")
        need = 1 if with_derivatives else mesh.d + 1
        seen = torch.zeros(mesh.n_simplices, dtype=torch.long)
        total, chunk = 0, 4 * mesh.n_simplices
        while total < max_points:
            idx = mesh.simplex_index(torch.rand(chunk, mesh.d, generator=g, dtype=DTYPE))
            for i, s in enumerate(idx.tolist()):
                seen[s] += 1
                if seen[s] == need and bool((seen >= need).all()):
                    return total + i + 1
            total += chunk
        raise RuntimeError(f"not identified with {max_points} points")
    if method != "rank":
        raise ValueError(f"method must be 'auto', 'rank' or 'count', got {method!r}")
    P = mesh.n_params(continuous)

    def system(x: Tensor) -> Tensor:
        rows = mesh.rows(x, continuous)
        if with_derivatives:
            rows = torch.cat([rows, mesh.rows(x, continuous, derivative=True).reshape(-1, P)])
        return rows

    hi = max(8, P // (mesh.d + 1))
    x = torch.rand(hi, mesh.d, generator=g, dtype=DTYPE)
    while int(torch.linalg.matrix_rank(system(x))) < P:
        if hi >= max_points:
            raise RuntimeError(f"not identified with {max_points} points")
        x = torch.cat([x, torch.rand(hi, mesh.d, generator=g, dtype=DTYPE)])
        hi *= 2
    lo = 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if int(torch.linalg.matrix_rank(system(x[:mid]))) < P else (lo, mid)
    return hi


def rank_curve(
    mesh: KuhnMesh, with_derivatives: bool, counts: list[int], continuous: bool = True, seed: int = 0
) -> list[int]:
    """Rank of the identification system after each of ``counts`` uniform random points
    (one stream, so the curve is monotone): how much of the function is pinned down."""
    P = mesh.n_params(continuous)
    x = torch.rand(max(counts), mesh.d, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)
    out = []
    for n in counts:
        rows = mesh.rows(x[:n], continuous)
        if with_derivatives:
            rows = torch.cat([rows, mesh.rows(x[:n], continuous, derivative=True).reshape(-1, P)])
        out.append(int(torch.linalg.matrix_rank(rows)))
    return out


# --- Sample complexity with networks ----------------------------------------------------------
def pl_target(mesh: KuhnMesh, seed: int) -> Tensor:
    """Random nodal values ``(n_vertices,)`` of a continuous PL target on ``mesh``."""
    return torch.randn(mesh.n_vertices, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)


def pl_sample(mesh: KuhnMesh, nodal: Tensor, n: int, seed: int) -> Sample:
    """``n`` uniform points of ``[0, 1]^d`` with the target's values and gradients (float32), as
    the engine's :class:`~sobolev.core.samples.Sample` (the hook that puts PL targets on the engine)."""
    x = torch.rand(n, mesh.d, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)
    y = mesh.rows(x) @ nodal
    g = mesh.rows(x, derivative=True) @ nodal
    return Sample(x.float(), y.float(), g.float())


def pl_network_grid(
    meshes: list[KuhnMesh],
    sizes: list[int],
    seeds: int,
    lrs: list[float],
    steps: int,
    hidden: int,
    n_test: int = 2000,
    device: torch.device | str = "cpu",
    progress: bool = False,
):
    """Regular vs Sobolev ReLU networks fitted to random continuous PL targets.

    Three methods: ``regular``; ``sobolev`` (eq. 1, λ = 1, the paper's); ``balanced`` (the
    balanced loss of Section 4.1 and :func:`sobolev.fit`: the derivative terms scaled to the
    value term's by :func:`sobolev.core.losses.balanced_weights`), which tests the explanation that the
    gradient term — whose targets jump across the PL pieces — dominates the Sobolev loss.
    Each row also records the final training fit: ``train_value_mse``, ``train_grad_mse``
    (unweighted) and ``grad_share`` (the derivative part of the final training objective).

    For every mesh (dimension d), size, method, learning rate and seed, one
    ``d -> hidden -> hidden -> 1`` network is trained full-batch with Adam; the target is
    drawn per seed. Returns a DataFrame in :mod:`sobolev.common.compare`'s run layout (``function``
    is ``"d=<d>"``), so its learning-rate choice on validation data and summaries apply.
    """
    rows = []
    for mesh in meshes:
        raw = Normaliser(torch.zeros(mesh.d), torch.ones(mesh.d), 0.0, 1.0)  # the paper's raw units
        for n in sizes:
            for method in ("regular", "sobolev", "balanced"):
                runs = [(lr, s) for lr in lrs for s in range(seeds)]
                nodals = [pl_target(mesh, s) for _, s in runs]
                train = [pl_sample(mesh, nodal, n, 10_000 + s) for nodal, (_, s) in zip(nodals, runs, strict=True)]
                norms = [raw] * len(runs)
                x, y, G = (v.to(device) for v in engine.stack_normalised(train, norms))
                model = BatchedMLP.init([s for _, s in runs], in_dim=mesh.d, hidden=hidden, device=device)
                sob = method != "regular"
                value_weight, weight = torch.ones(len(runs)), torch.ones(len(runs), mesh.d)
                if method == "balanced":
                    alpha, weight = balanced_weights(G.cpu(), 1.0)
                    value_weight = torch.full((len(runs),), alpha)
                train_ensemble(
                    model,
                    x,
                    y,
                    torch.tensor([lr for lr, _ in runs], device=device),
                    steps,
                    batch_size=n,
                    G=G if sob else None,
                    weight=weight.to(device) if sob else None,
                    value_weight=value_weight.to(device) if sob else None,
                    progress=progress,
                    desc=f"theory: PL networks d={mesh.d} n={n} {method}",
                    hint="a learning rate in theory.net_lrs too large",
                )
                value_mse, grad_mse = engine.errors(model, train, norms)  # the final training fit
                objective = model.losses(x, y, G if sob else None, weight.to(device), value_weight.to(device)).cpu()
                weighted = objective - value_weight * value_mse.float()  # the derivative part of the objective
                scores = {}
                for split, offset in (("val", 20_000), ("test", 30_000)):
                    evals = [pl_sample(mesh, nodal, n_test, offset + s)
                             for nodal, (_, s) in zip(nodals, runs, strict=True)]  # fmt: skip
                    scores[split] = engine.errors(model, evals, norms)[0]
                    if split == "val":  # the divergence scale, E f² on the validation points
                        mean_squares = engine.mean_squares(dict(enumerate(evals)))
                for i, (lr, s) in enumerate(runs):
                    rows.append({
                        "function": f"d={mesh.d}", "n_train": n, "method": method, "normalisation": "raw",
                        "weight": float(sob), "lr": lr, "seed": s, "val_mse": float(scores["val"][i]),
                        "diverged": bool(is_diverged(scores["val"][i], mean_squares[i])),
                        "train_value_mse": float(value_mse[i]), "train_grad_mse": float(grad_mse[i]),
                        "grad_share": float(weighted[i] / objective[i]) if sob else 0.0,
                        "test_mse": float(scores["test"][i]),
                    })  # fmt: skip
    out = pd.DataFrame(rows)
    out["test_grad_mse"] = float("nan")
    return out


def fit_sobolev_1d(
    f: Callable[[Tensor], Tensor],
    g: Callable[[Tensor], Tensor],
    a: float,
    b: float,
    steps: int,
    hidden: int = 64,
    points: int = 512,
    lr: float = 3e-3,
    seed: int = 0,
) -> tuple[nn.Module, float, float, float, float]:
    """Fit a smooth (tanh) MLP to values ``f`` and derivatives ``g`` on ``[a, b]`` with eq. (1).

    Returns the network, its error ``J(h)`` of :func:`sobolev_floor` (trapezoidal rule on a
    dense grid; the quantity the floor bounds from below), that integral's estimated
    quadrature error (the change from a grid half as dense), and the sup errors on values
    and derivatives.
    """
    torch.manual_seed(seed)
    net = MLP(1, (hidden, hidden), 1, activation="tanh").to(DTYPE)
    x = torch.linspace(a, b, points, dtype=DTYPE).unsqueeze(1)
    targets = [f(x[:, 0]), g(x[:, 0]).unsqueeze(1)]
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)

    def step(_: int) -> Tensor:
        opt.zero_grad()
        loss = sobolev_loss(net, x, targets)
        loss.backward()
        opt.step()
        sched.step()
        return loss

    train_loop(step, steps, desc="theory: Theorem 2 network", hint=f"learning rate lr={lr} too large", progress=False)

    def error(nodes: int) -> tuple[float, Tensor, Tensor]:
        dense = torch.linspace(a, b, nodes, dtype=DTYPE).unsqueeze(1)
        with torch.no_grad():
            value_err = net(dense) - f(dense[:, 0])
        slope_err = input_gradient(net, dense, create_graph=False)[:, 0] - g(dense[:, 0])
        return trapezoid_mean(value_err**2 + slope_err**2, dense[:, 0]), value_err, slope_err

    loss, value_err, slope_err = error(8 * points + 1)
    coarse, _, _ = error(4 * points + 1)
    return net, loss, abs(loss - coarse), float(value_err.abs().max()), float(slope_err.abs().max())


@dataclass
class Part:
    """One computed claim: ``metrics`` (stored under ``key`` in ``metrics.json``), an optional
    ``table`` to display, ``figures`` by file name (each a maker: computing a part draws nothing,
    :func:`sobolev.theory.plots.figures` draws them), ``conclusions`` (printed, checked by nbval) and
    ``runs``: per-seed results, written beside ``metrics.json`` as ``<key>_runs.csv`` so that every
    decided cell can be rechecked."""

    key: str
    metrics: dict | list
    table: pd.DataFrame | None = None
    figures: dict[str, Callable[[], plt.Figure]] = field(default_factory=dict)
    conclusions: list[str] = field(default_factory=list)
    runs: pd.DataFrame | None = None


@dataclass
class Result:
    """Section 3 computed (:func:`sobolev.theory.report.run`): ``cfg`` and every part by its key, in
    the notebook's order."""

    cfg: TheoryConfig
    parts: dict[str, Part]
