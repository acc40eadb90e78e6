"""Optimisers for the batched ensembles and for single models: Adam, Fromage and LARS.

Every batched optimiser keeps a leading model axis on each parameter tensor ``(M, ...)`` and
one learning rate per model ``(M,)``, and exposes ``scale_lr(factor)`` (a schedule's step) and
``step(grads)``. A "layer" of Fromage and LARS is one parameter tensor of one model (weights
and biases separately, as in both papers' reference implementations), so the norms below are
taken per model over every other axis.

Written from the published update rules (the reference code's licence forbids copying it):

* **Fromage** (Bernstein et al. 2020, Algorithm 1), per tensor ``p`` with gradient ``g``:
  ``p ← (p − η·‖p‖/‖g‖·g) / √(1+η²)``; where ``‖p‖`` or ``‖g‖`` is zero the step is the plain
  ``p − η·g``, divided by the same factor. With ``p_bound``, ``‖p‖`` is then capped at
  ``p_bound`` × its initial norm (tensors that start at zero are not capped). Every tensor
  thus moves by the same relative amount, whatever its scale:
  ``‖Δp‖/‖p‖ = √((1 − s)² + η² − 2(1 − s)·η·cos θ)/s`` with ``s = √(1+η²)`` and θ the angle
  between ``p`` and ``g`` (:func:`fromage_relative_change`).
* **LARS** (You et al. 2017, Algorithm 1 without its polynomial decay), per tensor:
  local rate ``λ = c·‖p‖/(‖g‖ + β‖p‖)`` (1 where a norm is zero), ``v ← μ·v + η·λ·(g + β·p)``,
  ``p ← p − v``. Here the trust coefficient ``c`` defaults to 1, so that ``η`` is the relative
  step size of a tensor, as Fromage's is; weight decay ``β`` defaults to 0. Without momentum
  and weight decay, LARS is Fromage without the ``1/√(1+η²)`` shrink.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

OPTIMISERS: tuple[str, ...] = ("adam", "fromage", "lars", "lars-momentum")
LARS_MOMENTUM = 0.9  # the momentum of ``lars-momentum`` (You et al. 2017)


def fromage_relative_change(lr: float, cos: float) -> float:
    """``‖Δp‖/‖p‖`` of one Fromage step at rate ``lr`` when the gradient makes an angle with
    cosine ``cos`` with the weights (both norms non-zero)."""
    s = math.sqrt(1 + lr**2)
    return math.sqrt((1 - s) ** 2 + lr**2 - 2 * (1 - s) * lr * cos) / s


def _norms(t: Tensor) -> Tensor:
    """Per-model norm of a batched tensor ``(M, ...)`` -> ``(M,)``."""
    return t.reshape(t.shape[0], -1).norm(dim=1)


def _per_model(v: Tensor, like: Tensor) -> Tensor:
    """``v (M,)`` shaped to broadcast against ``like (M, ...)``."""
    return v.view(-1, *([1] * (like.ndim - 1)))


def _trust_ratio(p_norm: Tensor, g_norm: Tensor, decay: float = 0.0) -> Tensor:
    """``‖p‖/(‖g‖ + β‖p‖)``, 1 where either norm is zero (a zero tensor still gets a step)."""
    ok = (p_norm > 0) & (g_norm > 0)
    return torch.where(ok, p_norm / torch.where(ok, g_norm + decay * p_norm, 1.0), 1.0)


class _Batched:
    """Shared parts: parameters ``{name: (M, ...)}`` and per-model base rates ``(M,)``."""

    def __init__(self, params: dict[str, Tensor], lr: Tensor) -> None:
        M = next(iter(params.values())).shape[0]
        if lr.shape != (M,) or bool((lr <= 0).any()):
            raise ValueError(f"lr: expected {M} positive learning rates, got {lr.tolist()}")
        self.params = params
        self.base_lr = lr.clone()
        self.lr = lr.clone()

    def scale_lr(self, factor: float) -> None:
        """Set every model's learning rate to ``factor`` × its base rate (a schedule's step)."""
        self.lr = self.base_lr * factor


class BatchedFromage(_Batched):
    """Fromage for ``M`` models at once: one rate per model, one update per model and tensor.

    Args:
        params: batched parameters ``{name: (M, ...)}``, updated in place.
        lr: ``η`` per model ``(M,)`` (Fromage's default: 0.01).
        p_bound: cap every tensor's norm at this multiple of its initial norm (``None``: no cap).
    """

    def __init__(self, params: dict[str, Tensor], lr: Tensor, p_bound: float | None = None) -> None:
        super().__init__(params, lr)
        if p_bound is not None and not p_bound > 0:
            raise ValueError(f"p_bound must be positive or None, got {p_bound!r}")
        self.p_bound = p_bound
        self.initial_norms = {n: _norms(p) for n, p in params.items()}

    @torch.no_grad()
    def step(self, grads: dict[str, Tensor]) -> None:
        shrink = torch.rsqrt(1 + self.lr**2)
        for name, p in self.params.items():
            g = grads[name]
            rate = self.lr * _trust_ratio(_norms(p), _norms(g))
            p.sub_(_per_model(rate, p) * g).mul_(_per_model(shrink, p))
            if self.p_bound is not None:
                cap = self.p_bound * self.initial_norms[name]
                factor = torch.where(cap > 0, (cap / _norms(p)).clamp(max=1.0), 1.0)
                p.mul_(_per_model(factor, p))


class BatchedLARS(_Batched):
    """LARS for ``M`` models at once (see the module docstring for the rule).

    Args:
        params: batched parameters ``{name: (M, ...)}``, updated in place.
        lr: global rate ``η`` per model ``(M,)``.
        momentum: ``μ`` (0: plain LARS).
        weight_decay: ``β``.
        trust_coefficient: ``c``.
    """

    def __init__(
        self,
        params: dict[str, Tensor],
        lr: Tensor,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        trust_coefficient: float = 1.0,
    ) -> None:
        super().__init__(params, lr)
        self.momentum, self.weight_decay, self.trust_coefficient = momentum, weight_decay, trust_coefficient
        self.buffers = {n: torch.zeros_like(p) for n, p in params.items()} if momentum else {}

    @torch.no_grad()
    def step(self, grads: dict[str, Tensor]) -> None:
        for name, p in self.params.items():
            g = grads[name]
            local = self.trust_coefficient * _trust_ratio(_norms(p), _norms(g), self.weight_decay)
            d = g + self.weight_decay * p if self.weight_decay else g
            update = _per_model(self.lr * local, p) * d
            if self.momentum:
                update = self.buffers[name].mul_(self.momentum).add_(update)
            p.sub_(update)


class Fromage(torch.optim.Optimizer):
    """Fromage (Bernstein et al. 2020) for ordinary ``nn.Module`` parameters.

    Args:
        params: parameters or parameter groups.
        lr: ``η`` (the paper's default 0.01).
        p_bound: cap each tensor's norm at this multiple of its initial norm (``None``: no cap).
    """

    def __init__(self, params: Any, lr: float = 0.01, p_bound: float | None = None) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        if p_bound is not None and not p_bound > 0:
            raise ValueError(f"p_bound must be positive or None, got {p_bound!r}")
        super().__init__(params, {"lr": lr, "p_bound": p_bound})
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["initial_norm"] = p.detach().norm()

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None if closure is None else torch.enable_grad()(closure)()
        for group in self.param_groups:
            lr, bound = group["lr"], group["p_bound"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                p_norm, g_norm = p.norm(), p.grad.norm()
                scale = p_norm / g_norm if p_norm > 0 and g_norm > 0 else 1.0
                p.sub_(lr * scale * p.grad).div_(math.sqrt(1 + lr**2))
                initial = self.state[p]["initial_norm"]
                if bound is not None and initial > 0 and p.norm() > bound * initial:
                    p.mul_(bound * initial / p.norm())
        return loss


class LARS(torch.optim.Optimizer):
    """LARS (You et al. 2017) for ordinary ``nn.Module`` parameters (rule: module docstring).

    Args:
        params: parameters or parameter groups.
        lr: global rate ``η``.
        momentum: ``μ`` (0: plain LARS).
        weight_decay: ``β``.
        trust_coefficient: ``c`` (1: ``η`` is the relative step size).
    """

    def __init__(
        self, params: Any, lr: float, momentum: float = 0.0, weight_decay: float = 0.0, trust_coefficient: float = 1.0
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        super().__init__(params, {**defaults, "trust_coefficient": trust_coefficient})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None if closure is None else torch.enable_grad()(closure)()
        for group in self.param_groups:
            lr, mu, decay, c = group["lr"], group["momentum"], group["weight_decay"], group["trust_coefficient"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                p_norm, g_norm = p.norm(), p.grad.norm()
                local = c * p_norm / (g_norm + decay * p_norm) if p_norm > 0 and g_norm > 0 else c
                update = lr * local * (p.grad + decay * p)
                if mu:
                    buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                    update = buf.mul_(mu).add_(update)
                p.sub_(update)
        return loss


class BatchedAdam:
    """Adam over batched parameters with one learning rate per model.

    Adam is element-wise, so stacking M models into one tensor gives exactly M independent
    Adam optimisers; only the learning rate needs a model axis. Models that share a learning
    rate in a contiguous block are updated by one ``torch.optim.Adam`` over slice *views* of
    the stacked tensors, ``fused`` on CPU and CUDA (one pass over memory instead of ~8:
    the update is memory-bound and otherwise costs as much as the matmuls). Order models
    by learning rate to get few blocks.
    """

    def __init__(
        self,
        params: dict[str, Tensor],
        lr: Tensor,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        M = next(iter(params.values())).shape[0]
        if lr.shape != (M,) or bool((lr <= 0).any()):
            raise ValueError(f"lr: expected {M} positive learning rates, got {lr.tolist()}")
        rates = lr.tolist()
        self.base_rates = rates
        starts = [i for i in range(M) if i == 0 or rates[i] != rates[i - 1]]
        self.blocks = list(zip(starts, [*starts[1:], M], strict=True))
        device = next(iter(params.values())).device
        fused = device.type in ("cpu", "cuda")
        self.flat = _flat_storage(params) if len(self.blocks) == 1 else None
        if self.flat is not None:
            # One tensor for every parameter: one fused update instead of one per tensor (on tiny
            # networks the per-tensor overhead, not the arithmetic, is the cost). The same numbers.
            self.names = list(params)
            self.optimisers = [torch.optim.Adam([self.flat], lr=rates[0], betas=betas, eps=eps, fused=fused,
                                                foreach=None if fused else True)]  # fmt: skip
            return
        self.views = [{n: p[a:b] for n, p in params.items()} for a, b in self.blocks]
        self.optimisers = [
            torch.optim.Adam(
                list(v.values()), lr=rates[a], betas=betas, eps=eps, fused=fused, foreach=None if fused else True
            )
            for v, (a, _) in zip(self.views, self.blocks, strict=True)
        ]

    def scale_lr(self, factor: float) -> None:
        """Set every model's learning rate to ``factor`` × its base rate (a schedule's step)."""
        for opt, (a, _) in zip(self.optimisers, self.blocks, strict=True):
            opt.param_groups[0]["lr"] = self.base_rates[a] * factor

    @torch.no_grad()
    def step(self, grads: dict[str, Tensor]) -> None:
        if self.flat is not None:
            self.flat.grad = torch.cat([grads[n].reshape(-1) for n in self.names])
            self.optimisers[0].step()
            return
        for views, (a, b), opt in zip(self.views, self.blocks, self.optimisers, strict=True):
            for name, view in views.items():
                # fused Adam reads the gradient with the parameter's strides: a transposed gradient
                # (autograd's for a weight used as Wᵀ) would be read scrambled
                view.grad = grads[name][a:b].contiguous()
            opt.step()


def flat_parameters(shapes: dict[str, tuple[int, ...]], like: Tensor) -> dict[str, Tensor]:
    """Zero tensors of ``shapes`` that are consecutive views of one buffer (``like``'s device and
    dtype), in dict order: :class:`BatchedAdam` then updates them as one tensor."""
    sizes = [math.prod(shape) for shape in shapes.values()]
    flat = torch.zeros(sum(sizes), device=like.device, dtype=like.dtype)
    return {n: v.view(shape) for (n, shape), v in zip(shapes.items(), flat.split(sizes), strict=True)}


def _flat_storage(params: dict[str, Tensor]) -> Tensor | None:
    """The one buffer ``params`` are consecutive contiguous views of (as made by
    :func:`flat_parameters`), or ``None``."""
    tensors = list(params.values())
    first = tensors[0]
    offset = first.storage_offset()
    for t in tensors:
        if not t.is_contiguous() or t.untyped_storage().data_ptr() != first.untyped_storage().data_ptr():
            return None
        if t.storage_offset() != offset:
            return None
        offset += t.numel()
    total = offset - first.storage_offset()
    if first.untyped_storage().nbytes() != total * first.element_size():
        return None  # the buffer holds more than these parameters
    return first.new_empty(0).set_(first.untyped_storage(), first.storage_offset(), (total,))


def batched_optimiser(
    name: str, params: dict[str, Tensor], lr: Tensor, p_bound: float | None = None
) -> BatchedAdam | BatchedFromage | BatchedLARS:
    """The batched optimiser ``name`` (one of :data:`OPTIMISERS`) over ``params`` with rates ``lr (M,)``.

    ``p_bound`` applies to Fromage only.
    """
    if name not in OPTIMISERS:
        raise ValueError(f"optimiser must be one of {OPTIMISERS}, got {name!r}")
    if p_bound is not None and name != "fromage":
        raise ValueError(f"p_bound is a Fromage option; got p_bound={p_bound!r} with optimiser {name!r}")
    if name == "adam":
        return BatchedAdam(params, lr)
    if name == "fromage":
        return BatchedFromage(params, lr, p_bound)
    return BatchedLARS(params, lr, momentum=LARS_MOMENTUM if name == "lars-momentum" else 0.0)
