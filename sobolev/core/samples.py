"""Samples of the benchmark functions (x, f(x), ∇f(x)) and their normalisation, for every regression task."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from sobolev.core.functions import BenchmarkFunction

Normalisation = Literal["raw", "standard"]
NORMALISATIONS: tuple[str, ...] = ("raw", "standard")


def stable_seed(*parts: object) -> int:
    """A seed that depends only on ``parts`` (not on Python's per-process hash salt)."""
    return zlib.crc32("/".join(map(str, parts)).encode())


@dataclass(frozen=True)
class Sample:
    """Points ``x (N, d)``, values ``y (N,)`` and gradients ``g (N, d)`` of one function."""

    x: Tensor
    y: Tensor
    g: Tensor


def make_sample(fn: BenchmarkFunction, n: int, seed: int, split: str = "train") -> Sample:
    """``n`` uniform points of ``fn``'s domain, reproducible from ``(fn, n, seed, split)``.

    The value and gradient are computed in float64 and stored in float32.
    """
    g = torch.Generator().manual_seed(stable_seed(fn.name, n, seed, split))
    x = fn.sample(n, generator=g)
    xd = x.double()
    y, grad = fn(xd), fn.grad(xd)
    if tuple(y.shape) != (n,) or tuple(grad.shape) != (n, fn.dim):
        raise ValueError(f"{fn.name}: value and gradient of {n} points must have shapes ({n},) and ({n}, {fn.dim}), "
                         f"got {tuple(y.shape)} and {tuple(grad.shape)}")  # fmt: skip
    bad = ~torch.isfinite(y) | ~torch.isfinite(grad).all(-1)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        raise ValueError(f"{fn.name}: value {float(y[i])} and gradient {grad[i].tolist()} at x = {xd[i].tolist()} "
                         f"({int(bad.sum())} of {n} {split} points not finite); "
                         "the function must be finite on its domain")  # fmt: skip
    return Sample(x, y.float(), grad.float())


def _moments(v: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation along ``dim``, computed on ``v`` divided by its largest magnitude: values
    near float64's range (1e160 and beyond) would overflow when squared."""
    scale = v.abs().amax(dim, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)
    u = v / scale
    return (u.mean(dim) * scale.squeeze(dim)), (u.std(dim) * scale.squeeze(dim))


@dataclass(frozen=True)
class Normaliser:
    """An affine change of variables ``x' = (x - c) / s``, ``y' = (y - μ) / σ``: the one normaliser.

    The chain rule maps gradients as ``∇ₓ'y' = ∇ₓy · s / σ``. ``raw`` is the identity (the
    paper's setting); ``standard`` maps the domain onto ``[-1, 1]^d`` and standardises ``y``
    with the training set's mean and standard deviation. (For uniform samples, the domain
    map is the inputs' standardisation up to a factor √3 per input.) :meth:`from_samples`
    standardises a user's data by its own moments.

    One normaliser has ``x_center, x_scale (d,)`` and float ``y_mean, y_std``, and maps
    ``x (..., d)``, ``y (...)``, ``g (..., d)``. A batch of ``M`` normalisers (one per model, from
    :meth:`from_samples` on stacked training sets) has ``x_center, x_scale (M, d)`` and
    ``y_mean, y_std (M,)`` tensors, and maps ``x (M, N, d)``, ``y (M, N)``, ``g (M, N, d)``.
    """

    x_center: Tensor
    x_scale: Tensor
    y_mean: float | Tensor
    y_std: float | Tensor

    @classmethod
    def fit(cls, kind: Normalisation, fn: BenchmarkFunction, train: Sample) -> Normaliser:
        if kind == "raw":
            return cls(torch.zeros(fn.dim), torch.ones(fn.dim), 0.0, 1.0)
        if kind == "standard":
            low, high = fn.low, fn.high
            std = float(train.y.std()) if train.y.numel() > 1 else 1.0
            return cls((low + high) / 2, (high - low) / 2, float(train.y.mean()), std or 1.0)
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {kind!r}")

    @classmethod
    def from_samples(cls, x: Tensor, y: Tensor) -> Normaliser:
        """Standardise by the samples' own mean and standard deviation (a user's data, whose domain
        is not known): ``x (N, d)``, ``y (N,)`` give one normaliser; stacked sets ``x (M, N, d)``,
        ``y (M, N)`` a batch of ``M``. A constant input or output keeps scale 1."""
        if x.ndim == 3:
            (x_mean, x_std), (y_mean, y_std) = _moments(x, 1), _moments(y, 1)
            return cls(x_mean, torch.where(x_std > 0, x_std, 1.0), y_mean, torch.where(y_std > 0, y_std, 1.0))
        (x_mean, x_std), (y_mean, y_std) = _moments(x, 0), _moments(y, 0)
        y_std = float(y_std) if y.numel() > 1 else 0.0
        return cls(x_mean, torch.where(x_std > 0, x_std, 1.0), float(y_mean), y_std or 1.0)

    @property
    def batched(self) -> bool:
        return isinstance(self.y_mean, Tensor)

    def to(self, device: torch.device | str) -> Normaliser:
        """The same maps with tensors on ``device``."""
        move = lambda v: v.to(device) if isinstance(v, Tensor) else v  # noqa: E731
        return Normaliser(move(self.x_center), move(self.x_scale), move(self.y_mean), move(self.y_std))

    def _xs(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """``c, s`` to broadcast against ``like``: ``(M, 1, d)`` for a batch."""
        c, s = self.x_center.to(like), self.x_scale.to(like)
        return (c.unsqueeze(1), s.unsqueeze(1)) if self.batched else (c, s)

    def _ys(self) -> tuple[float | Tensor, float | Tensor]:
        """``μ, σ`` to broadcast against ``y (M, N)``: ``(M, 1)`` for a batch."""
        if self.batched:
            return self.y_mean.unsqueeze(1), self.y_std.unsqueeze(1)  # type: ignore[union-attr]
        return self.y_mean, self.y_std

    def x(self, x: Tensor) -> Tensor:
        c, s = self._xs(x)
        return (x - c) / s

    def y(self, y: Tensor) -> Tensor:
        mu, sigma = self._ys()
        return (y - mu) / sigma

    def g(self, g: Tensor) -> Tensor:
        _, s = self._xs(g)
        return g * s / (self.y_std.view(-1, 1, 1) if self.batched else self.y_std)  # type: ignore[union-attr]

    def y_back(self, y: Tensor) -> Tensor:
        mu, sigma = self._ys()
        return y * sigma + mu

    def g_back(self, g: Tensor) -> Tensor:
        _, s = self._xs(g)
        return g * (self.y_std.view(-1, 1, 1) if self.batched else self.y_std) / s  # type: ignore[union-attr]
