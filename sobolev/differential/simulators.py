"""Monte-Carlo training sets with pathwise derivative labels, and closed-form ground truth.

Each simulator draws spots at the exposure date ``T₁`` (with volatility × ``vol_mult`` to
populate the wings, as the reference does), simulates one antithetic pair of paths to the
maturity ``T₂``, and labels each spot with the average of the two payoffs and its pathwise
derivative with respect to the spot, computed by autograd through the simulated payoff (the
adjoint method, as the paper does with AAD). Labels are unbiased, noisy estimates of the
price and delta at ``T₁``; the closed forms give the truth to test against.

Shapes: spots ``(N, d)``, values ``(N,)``, derivatives ``(N, d)``; float64 throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

DTYPE = torch.float64


def normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def normal_pdf(x: Tensor) -> Tensor:
    return torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)


@dataclass(frozen=True)
class Dataset:
    """Spots ``x (N, d)``, noisy value labels ``y (N,)`` and pathwise derivative labels ``dydx (N, d)``."""

    x: Tensor
    y: Tensor
    dydx: Tensor


def pathwise_labels(spots: Tensor, payoff) -> Dataset:
    """Labels by autograd: ``payoff(spots)`` (one value per spot, the simulated, averaged payoff
    with all randomness fixed) and its gradient with respect to the spots."""
    x = spots.detach().clone().requires_grad_(True)
    y = payoff(x)
    (dydx,) = torch.autograd.grad(y.sum(), x)
    return Dataset(spots.detach(), y.detach(), dydx.detach())


@dataclass(frozen=True)
class BlackScholes:
    """A European call in Black-Scholes, priced at ``T₁`` (zero rates): one input, the spot."""

    spot: float = 1.0
    vol: float = 0.2
    T1: float = 1.0
    T2: float = 2.0
    strike: float = 1.10
    vol_mult: float = 1.5

    @property
    def dim(self) -> int:
        return 1

    def training_set(self, n: int, seed: int) -> Dataset:
        """``n`` spots at ``T₁``, each labelled by the mean payoff of one antithetic pair of paths."""
        g = torch.Generator().manual_seed(seed)
        z1, z2 = torch.randn(n, generator=g, dtype=DTYPE), torch.randn(n, generator=g, dtype=DTYPE)
        v1 = self.vol * self.vol_mult
        s1 = self.spot * torch.exp(-0.5 * v1**2 * self.T1 + v1 * math.sqrt(self.T1) * z1)
        tau = self.T2 - self.T1

        def payoff(s: Tensor) -> Tensor:
            s = s[:, 0]
            drift = -0.5 * self.vol**2 * tau
            up = s * torch.exp(drift + self.vol * math.sqrt(tau) * z2)
            down = s * torch.exp(drift - self.vol * math.sqrt(tau) * z2)
            return 0.5 * (torch.relu(up - self.strike) + torch.relu(down - self.strike))

        return pathwise_labels(s1.unsqueeze(1), payoff)

    def test_spots(self, n: int = 100) -> Tensor:
        """``n`` evenly spaced spots in [0.35, 1.65], ``(n, 1)``."""
        return torch.linspace(0.35, 1.65, n, dtype=DTYPE).unsqueeze(1)

    def price(self, spots: Tensor) -> Tensor:
        """Black-Scholes call price at ``T₁`` for spots ``(N, 1)``, ``(N,)``."""
        s, tau = spots[:, 0], self.T2 - self.T1
        d1 = (torch.log(s / self.strike) + 0.5 * self.vol**2 * tau) / (self.vol * math.sqrt(tau))
        d2 = d1 - self.vol * math.sqrt(tau)
        return s * normal_cdf(d1) - self.strike * normal_cdf(d2)

    def delta(self, spots: Tensor) -> Tensor:
        """Black-Scholes delta ``Φ(d₁)``, ``(N, 1)``."""
        s, tau = spots[:, 0], self.T2 - self.T1
        d1 = (torch.log(s / self.strike) + 0.5 * self.vol**2 * tau) / (self.vol * math.sqrt(tau))
        return normal_cdf(d1).unsqueeze(1)


class BachelierBasket:
    """A call on a basket of ``d`` correlated Bachelier assets, priced at ``T₁`` (zero rates).

    Random correlation ``C = RᵀR`` (R uniform in [-1, 1], rescaled to unit diagonal), weights
    uniform in [1, 10] normalised to sum 1, volatilities uniform in [5, 50] rescaled so the
    basket's volatility is ``basket_vol``; all drawn from ``market_seed``. The basket
    ``B = Σ aᵢ Sᵢ`` is itself a Bachelier asset, which gives the closed forms.
    """

    def __init__(
        self,
        dim: int,
        market_seed: int = 0,
        basket_vol: float = 0.2,
        T1: float = 1.0,
        T2: float = 2.0,
        strike: float = 1.10,
        vol_mult: float = 1.5,
    ) -> None:
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.d, self.basket_vol, self.T1, self.T2, self.strike, self.vol_mult = (
            dim,
            basket_vol,
            T1,
            T2,
            strike,
            vol_mult,
        )
        g = torch.Generator().manual_seed(market_seed)
        R = torch.rand(dim, dim, generator=g, dtype=DTYPE) * 2 - 1
        cov = R.T @ R
        inv = torch.diag(1 / torch.sqrt(torch.diag(cov)))
        self.corr = inv @ cov @ inv
        a = torch.rand(dim, generator=g, dtype=DTYPE) * 9 + 1
        self.weights = a / a.sum()
        vols = torch.rand(dim, generator=g, dtype=DTYPE) * 45 + 5
        raw = float(self.weights @ (torch.outer(vols, vols) * self.corr) @ self.weights)
        self.vols = vols * basket_vol / math.sqrt(raw)
        self.cov = torch.outer(self.vols, self.vols) * self.corr
        # A tiny jitter keeps the Cholesky factor defined when R is rank-deficient (d = 1 or collinear rows).
        self.chol = torch.linalg.cholesky(self.cov + 1e-12 * torch.eye(dim, dtype=DTYPE))

    @property
    def dim(self) -> int:
        return self.d

    def _spots(self, n: int, g: torch.Generator, mult: float) -> Tensor:
        z = torch.randn(n, self.d, generator=g, dtype=DTYPE)
        return 1.0 + mult * math.sqrt(self.T1) * z @ self.chol.T

    def training_set(self, n: int, seed: int) -> Dataset:
        g = torch.Generator().manual_seed(seed)
        s1 = self._spots(n, g, self.vol_mult)
        dw = math.sqrt(self.T2 - self.T1) * torch.randn(n, self.d, generator=g, dtype=DTYPE) @ self.chol.T

        def payoff(s: Tensor) -> Tensor:
            up, down = (s + dw) @ self.weights, (s - dw) @ self.weights
            return 0.5 * (torch.relu(up - self.strike) + torch.relu(down - self.strike))

        return pathwise_labels(s1, payoff)

    def test_spots(self, n: int = 4096, seed: int = 10_000) -> Tensor:
        """``n`` random spot vectors at ``T₁`` (at the assets' own volatility), ``(n, d)``."""
        return self._spots(n, torch.Generator().manual_seed(seed), 1.0)

    def _d(self, spots: Tensor) -> tuple[Tensor, float]:
        sd = self.basket_vol * math.sqrt(self.T2 - self.T1)
        return (spots @ self.weights - self.strike) / sd, sd

    def price(self, spots: Tensor) -> Tensor:
        """Bachelier price ``σ√τ [dΦ(d) + φ(d)]`` of the basket call, ``(N,)``."""
        d, sd = self._d(spots)
        return sd * (d * normal_cdf(d) + normal_pdf(d))

    def delta(self, spots: Tensor) -> Tensor:
        """``∂price/∂Sᵢ = aᵢ Φ(d)``, ``(N, d)``."""
        d, _ = self._d(spots)
        return normal_cdf(d).unsqueeze(1) * self.weights


Simulator = BlackScholes | BachelierBasket


def make_simulator(name: str, market_seed: int = 0) -> Simulator:
    """``"black_scholes"`` or ``"basket<d>"`` (e.g. ``"basket7"``)."""
    if name == "black_scholes":
        return BlackScholes()
    if name.startswith("basket") and name[6:].isdigit() and int(name[6:]) >= 1:
        return BachelierBasket(int(name[6:]), market_seed)
    raise ValueError(f"problem must be 'black_scholes' or 'basket<d>' (e.g. 'basket7'), got {name!r}")
