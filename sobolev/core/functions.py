"""The seven 2-D benchmark functions of the paper's SM §2, with closed-form gradients.

Every function takes ``xy`` of shape ``(..., 2)`` and returns values of shape ``(...)``;
every gradient returns shape ``(..., 2)``. The gradients are written out by hand (not
autograd) so that the targets of Sobolev training do not depend on the code under test;
``tests/core/test_functions.py`` checks them against autograd and central finite differences.

Non-differentiable points (a set of measure zero that uniform sampling never hits):

* Ackley at the origin (the tip of the ``sqrt(x² + y²)`` cone): the gradient is set to 0.
* Bukin on the ridge ``y = 0.01 x²``: ``d/du sqrt(|u|) = sign(u) / (2 sqrt(|u|))`` is
  unbounded as ``u -> 0``. Off the ridge the exact value is returned, however large (so
  Sobolev targets near the ridge are heavy-tailed, as in the paper); exactly on the ridge
  the gradient of that term is set to 0, the midpoint of its one-sided limits ±inf.
  Likewise ``d/dx |x + 10|`` is ``sign(x + 10)``, 0 at ``x = -10``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Fn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class BenchmarkFunction:
    """A function of ``d`` inputs, its gradient and its sampling domain.

    The seven benchmarks below are 2-D; a user's function may have any input dimension
    (``len(domain)``). ``value`` maps ``(..., d)`` to ``(...)`` and ``gradient`` maps
    ``(..., d)`` to ``(..., d)``; :func:`check_gradient` tests a hand-written gradient.

    Attributes:
        name: a label for tables and figures.
        value, gradient: the function and its gradient.
        domain: ``(low, high)`` per input; training and test points are uniform on this box.
        minimiser, minimum: a known global minimum (``None`` when unknown).
    """

    name: str
    value: Fn
    gradient: Fn
    domain: tuple[tuple[float, float], ...]
    minimiser: tuple[float, ...] | None = None
    minimum: float | None = None

    def __post_init__(self) -> None:
        allowed = "a non-empty list of (low, high) pairs of finite numbers with low < high, one per input"
        domain = self.domain
        if isinstance(domain, str | bytes) or not isinstance(domain, list | tuple) or not domain:
            raise ValueError(f"{self.name}: domain must be {allowed}, got {domain!r}")
        if len(domain) == 2 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in domain):
            raise ValueError(f"{self.name}: domain must be {allowed}; for one input write (({domain[0]!r}, "
                             f"{domain[1]!r}),), got the flat pair {domain!r}")  # fmt: skip
        for i, r in enumerate(domain):
            ok = isinstance(r, list | tuple) and len(r) == 2
            ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in r)
            if not ok or not r[0] < r[1]:
                raise ValueError(f"{self.name}: domain entry {i} is {r!r}; domain must be {allowed}")
        if not callable(self.value) or not callable(self.gradient):
            raise ValueError(f"{self.name}: value and gradient must be callables mapping (..., d) tensors")

    @property
    def dim(self) -> int:
        """The input dimension ``d``."""
        return len(self.domain)

    def __call__(self, xy: Tensor) -> Tensor:
        return self.value(_check_xy(xy, self.name, self.dim))

    def grad(self, xy: Tensor) -> Tensor:
        """Closed-form gradient, shape ``(..., d)``."""
        return self.gradient(_check_xy(xy, self.name, self.dim))

    @property
    def low(self) -> Tensor:
        return torch.tensor([r[0] for r in self.domain])

    @property
    def high(self) -> Tensor:
        return torch.tensor([r[1] for r in self.domain])

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` points drawn uniformly from the domain, shape ``(n, d)``."""
        if not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        u = torch.rand(n, self.dim, generator=generator, dtype=torch.float64)
        low, high = self.low.double(), self.high.double()
        return (low + u * (high - low)).float()


@dataclass(frozen=True)
class GradientCheck:
    """Largest relative errors of a hand-written gradient (:func:`check_gradient`)."""

    autograd_error: float
    finite_difference_error: float
    tolerance: float

    @property
    def passed(self) -> bool:
        """Both errors finite and within the tolerance (a NaN error is a failure, not a pass)."""
        return max(self.autograd_error, self.finite_difference_error) <= self.tolerance and all(
            math.isfinite(e) for e in (self.autograd_error, self.finite_difference_error)
        )


def check_gradient(fn: BenchmarkFunction, n: int = 256, seed: int = 0, tolerance: float = 1e-5) -> GradientCheck:
    """Compare ``fn.grad`` with autograd of ``fn`` and with central differences, in float64.

    At ``n`` uniform points of the domain; errors are ``max |g - ref| / (max |ref| + 1e-12)``
    per point, maximised over points. Central differences use the step ``1e-6 × (high - low)``
    (error O(h²)); a point within a step of a kink (Bukin's ridge, Ackley's cone tip) can fail
    it honestly. Raises ``ValueError`` with the worst point when ``tolerance`` is exceeded.
    """
    x = fn.sample(n, torch.Generator().manual_seed(seed)).double()
    g = fn.grad(x)
    xa = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(fn(xa).sum(), xa)
    h = 1e-6 * (fn.high - fn.low).double()
    eye = torch.eye(fn.dim, dtype=torch.float64) * h
    fd = torch.stack([(fn(x + e) - fn(x - e)) / (2 * hi) for e, hi in zip(eye, h, strict=True)], dim=-1)

    def rel(ref: Tensor) -> Tensor:
        return (g - ref).abs().amax(-1) / (ref.abs().amax(-1) + 1e-12)

    ea, ef = rel(auto), rel(fd)
    # NaN anywhere (the function, its gradient or the differences) is the worst error, not ignored.
    ea, ef = ea.nan_to_num(nan=math.inf), ef.nan_to_num(nan=math.inf)
    result = GradientCheck(float(ea.max()), float(ef.max()), tolerance)
    if not result.passed:
        worst = int(torch.argmax(torch.maximum(ea, ef)))
        raise ValueError(
            f"{fn.name}: gradient does not match (relative error {float(ea[worst]):.2g} vs autograd, "
            f"{float(ef[worst]):.2g} vs central differences, tolerance {tolerance:g}) at x = "
            f"{x[worst].tolist()}: gradient {g[worst].tolist()}, central differences {fd[worst].tolist()}"
        )
    return result


def _check_xy(xy: Tensor, name: str, dim: int = 2) -> Tensor:
    if not isinstance(xy, Tensor) or xy.ndim < 1 or xy.shape[-1] != dim:
        shape = tuple(xy.shape) if isinstance(xy, Tensor) else type(xy).__name__
        raise ValueError(f"{name}: expected points of shape (..., {dim}), got {shape}")
    return xy


def _split(xy: Tensor) -> tuple[Tensor, Tensor]:
    return xy[..., 0], xy[..., 1]


# --- Ackley ------------------------------------------------------------------------------
def _ackley(xy: Tensor) -> Tensor:
    x, y = _split(xy)
    r = torch.sqrt(0.5 * (x**2 + y**2))
    c = 0.5 * (torch.cos(2 * math.pi * x) + torch.cos(2 * math.pi * y))
    return -20 * torch.exp(-0.2 * r) - torch.exp(c) + math.e + 20


def _ackley_grad(xy: Tensor) -> Tensor:
    x, y = _split(xy)
    r = torch.sqrt(0.5 * (x**2 + y**2))
    c = 0.5 * (torch.cos(2 * math.pi * x) + torch.cos(2 * math.pi * y))
    # d/dx of -20 exp(-0.2 r) is 2 x exp(-0.2 r) / r; at r = 0 (cone tip) use 0.
    safe_r = torch.where(r > 0, r, torch.ones_like(r))
    cone = torch.where(r > 0, 2 * torch.exp(-0.2 * r) / safe_r, torch.zeros_like(r))
    wave = math.pi * torch.exp(c)
    return torch.stack(
        [cone * x + wave * torch.sin(2 * math.pi * x), cone * y + wave * torch.sin(2 * math.pi * y)],
        dim=-1,
    )


# --- Beale -------------------------------------------------------------------------------
def _beale_terms(xy: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    x, y = _split(xy)
    a = 1.5 - x + x * y
    b = 2.25 - x + x * y**2
    c = 2.625 - x + x * y**3
    return x, y, a, b, c


def _beale(xy: Tensor) -> Tensor:
    _, _, a, b, c = _beale_terms(xy)
    return a**2 + b**2 + c**2


def _beale_grad(xy: Tensor) -> Tensor:
    x, y, a, b, c = _beale_terms(xy)
    dx = 2 * a * (y - 1) + 2 * b * (y**2 - 1) + 2 * c * (y**3 - 1)
    dy = 2 * a * x + 4 * b * x * y + 6 * c * x * y**2
    return torch.stack([dx, dy], dim=-1)


# --- Booth -------------------------------------------------------------------------------
def _booth(xy: Tensor) -> Tensor:
    x, y = _split(xy)
    return (x + 2 * y - 7) ** 2 + (2 * x + y - 5) ** 2


def _booth_grad(xy: Tensor) -> Tensor:
    x, y = _split(xy)
    u, w = x + 2 * y - 7, 2 * x + y - 5
    return torch.stack([2 * u + 4 * w, 4 * u + 2 * w], dim=-1)


# --- Bukin N.6 ---------------------------------------------------------------------------
def _bukin(xy: Tensor) -> Tensor:
    x, y = _split(xy)
    return 100 * torch.sqrt(torch.abs(y - 0.01 * x**2)) + 0.01 * torch.abs(x + 10)


def _bukin_grad(xy: Tensor) -> Tensor:
    x, y = _split(xy)
    u = y - 0.01 * x**2
    root = torch.sqrt(torch.abs(u))
    # d sqrt|u| / du = sign(u) / (2 sqrt|u|); on the ridge u = 0 we return 0 (see module doc).
    safe_root = torch.where(root > 0, root, torch.ones_like(root))
    ridge = torch.where(root > 0, torch.sign(u) / (2 * safe_root), torch.zeros_like(root))
    dx = 100 * ridge * (-0.02 * x) + 0.01 * torch.sign(x + 10)
    dy = 100 * ridge
    return torch.stack([dx, dy], dim=-1)


# --- McCormick ---------------------------------------------------------------------------
def _mccormick(xy: Tensor) -> Tensor:
    x, y = _split(xy)
    return torch.sin(x + y) + (x - y) ** 2 - 1.5 * x + 2.5 * y + 1


def _mccormick_grad(xy: Tensor) -> Tensor:
    x, y = _split(xy)
    c = torch.cos(x + y)
    return torch.stack([c + 2 * (x - y) - 1.5, c - 2 * (x - y) + 2.5], dim=-1)


# --- Rosenbrock --------------------------------------------------------------------------
def _rosenbrock(xy: Tensor) -> Tensor:
    x, y = _split(xy)
    return 100 * (y - x**2) ** 2 + (x - 1) ** 2


def _rosenbrock_grad(xy: Tensor) -> Tensor:
    x, y = _split(xy)
    return torch.stack([-400 * x * (y - x**2) + 2 * (x - 1), 200 * (y - x**2)], dim=-1)


# --- Styblinski-Tang ---------------------------------------------------------------------
def _styblinski_tang(xy: Tensor) -> Tensor:
    return 0.5 * (xy**4 - 16 * xy**2 + 5 * xy).sum(dim=-1)


def _styblinski_tang_grad(xy: Tensor) -> Tensor:
    return 0.5 * (4 * xy**3 - 32 * xy + 5)


_ST_ARGMIN = -2.903534027771178  # root of 4x³ - 32x + 5 = 0 in [-5, 0]

FUNCTIONS: dict[str, BenchmarkFunction] = {
    f.name: f
    for f in (
        BenchmarkFunction("ackley", _ackley, _ackley_grad, ((-5, 5), (-5, 5)), (0.0, 0.0), 0.0),
        BenchmarkFunction("beale", _beale, _beale_grad, ((-4.5, 4.5), (-4.5, 4.5)), (3.0, 0.5), 0.0),
        BenchmarkFunction("booth", _booth, _booth_grad, ((-10, 10), (-10, 10)), (1.0, 3.0), 0.0),
        BenchmarkFunction("bukin", _bukin, _bukin_grad, ((-15, -5), (-3, 3)), (-10.0, 1.0), 0.0),
        BenchmarkFunction(
            "mccormick",
            _mccormick,
            _mccormick_grad,
            ((-1.5, 4), (-3, 4)),
            (-0.54719, -1.54719),
            -1.913222954981037,
        ),
        BenchmarkFunction("rosenbrock", _rosenbrock, _rosenbrock_grad, ((-2, 2), (-2, 2)), (1.0, 1.0), 0.0),
        BenchmarkFunction(
            "styblinski_tang",
            _styblinski_tang,
            _styblinski_tang_grad,
            ((-5, 5), (-5, 5)),
            (_ST_ARGMIN, _ST_ARGMIN),
            -78.33233140754282,
        ),
    )
}


def get_function(name: str) -> BenchmarkFunction:
    """Look up a benchmark function by name; unknown names raise a ``ValueError``."""
    try:
        return FUNCTIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown function {name!r}; allowed: {', '.join(sorted(FUNCTIONS))}") from None
