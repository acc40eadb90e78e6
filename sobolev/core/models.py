"""Models: a plain MLP, and an ensemble of M two-hidden-layer ReLU MLPs trained at once.

The ensemble (:class:`BatchedMLP`) keeps every weight with a leading model axis and runs
all models with ``bmm``. For the paper's regression net (two hidden ReLU layers, linear
scalar output) the input gradient has a closed form,

    ∇ₓm = W1ᵀ (1[z1>0] ⊙ W2ᵀ (1[z2>0] ⊙ w3)),

and :meth:`BatchedMLP.loss_and_grads` differentiates the Sobolev loss through it by hand.
Because the output is a scalar, the regular backward is a rescaling of that same chain
(dL/dz = e_y ∂m/∂z), and both W2 gradients share one product. A Sobolev step thus costs 4
products of size B×H×H against 3 for a regular step (1.34× the matmul FLOPs, where
autograd's double backward needs 2×), with no autograd graph. ``tests/core/test_models.py``
checks every parameter gradient against autograd's double backward.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from sobolev.core.losses import normalised_point_weight, per_label_weights, weighted_sobolev_loss

# ``_relu_grad(v, z, 0)`` is ``v ⊙ 1[z > 0]`` in one fused pass: autograd's own ReLU backward.
_relu_grad = torch.ops.aten.threshold_backward


class MLP(nn.Module):
    """A fully connected net: ``in_dim -> hidden... -> out_dim`` with one activation.

    Args:
        in_dim: input size.
        hidden: sizes of the hidden layers (the paper: ``(256, 256)``).
        out_dim: output size; 1 gives outputs of shape ``(B,)``.
        activation: ``"relu"`` (the paper), ``"tanh"`` or ``"softplus"`` (smooth, for K = 2).
    """

    ACTIVATIONS: ClassVar[dict[str, type[nn.Module]]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus}

    def __init__(
        self, in_dim: int, hidden: tuple[int, ...] = (256, 256), out_dim: int = 1, activation: str = "relu"
    ) -> None:
        super().__init__()
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(self.ACTIVATIONS)}, got {activation!r}")
        layers: list[nn.Module] = []
        sizes = (in_dim, *hidden)
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), self.ACTIVATIONS[activation]()]
        layers.append(nn.Linear(sizes[-1], out_dim))
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_dim) -> (B,)`` if ``out_dim == 1`` else ``(B, out_dim)``."""
        y = self.net(x)
        return y[:, 0] if self.out_dim == 1 else y


@dataclass
class StepResult:
    """Per-model losses of one step, shape ``(M,)`` each, and the gradients by name."""

    value_loss: Tensor
    grad_loss: Tensor | None
    grads: dict[str, Tensor]


class BatchedNet:
    """What the batched ensembles (:class:`BatchedMLP`, :class:`~sobolev.core.tanh_mlp.BatchedTanhMLP`)
    share: parameters ``{name: (M, ...)}`` with the first layer ``W1 (M, H, D)``, and the checks of
    their inputs."""

    params: dict[str, Tensor]

    @property
    def n_models(self) -> int:
        return self.params["W1"].shape[0]

    @property
    def in_dim(self) -> int:
        return self.params["W1"].shape[2]

    def _check_x(self, x: Tensor) -> None:
        M, D = self.n_models, self.in_dim
        if x.ndim != 3 or x.shape[0] != M or x.shape[2] != D:
            raise ValueError(f"x: expected shape ({M}, B, {D}), got {tuple(x.shape)}")

    def _values_and_grads(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Values ``(M, B)`` and input gradients ``(M, B, D)`` of one chunk ``x (M, B, D)``."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, x: Tensor, chunk: int | None = None) -> tuple[Tensor, Tensor]:
        """Values ``(M, B)`` and input gradients ``(M, B, D)`` at ``x (M, B, D)``, evaluated
        ``chunk`` points at a time (default :meth:`default_chunk`)."""
        self._check_x(x)
        parts = [self._values_and_grads(xc) for xc in x.split(chunk or self.default_chunk(), dim=1)]
        return torch.cat([y for y, _ in parts], 1), torch.cat([g for _, g in parts], 1)

    def _check_step(
        self, x: Tensor, t: Tensor, G: Tensor | None, weight: Tensor | None, value_weight: Tensor | None
    ) -> None:
        """The shapes of one step's arguments (see ``loss_and_grads``)."""
        self._check_x(x)
        M, B, D = x.shape
        if t.shape != (M, B):
            raise ValueError(f"t: expected shape {(M, B)}, got {tuple(t.shape)}")
        if G is not None:
            if G.shape != x.shape:
                raise ValueError(f"G: expected shape {tuple(x.shape)} (like x), got {tuple(G.shape)}")
            if weight is None or tuple(weight.shape) not in ((M,), (M, D), (M, B, D)):
                got = None if weight is None else tuple(weight.shape)
                raise ValueError(f"weight: expected shape {(M,)}, {(M, D)} or {(M, B, D)} with G, got {got}")
        if value_weight is not None and value_weight.shape != (M,):
            raise ValueError(f"value_weight: expected shape {(M,)}, got {tuple(value_weight.shape)}")

    def default_chunk(self) -> int:
        """Points per evaluation chunk: each ``(M, chunk, H)`` activation stays near 16 MB. Larger
        ones exceed glibc's mmap threshold (32 MB), so every chunk would map fresh pages and fault
        them in: twice the evaluation time on a 2-core CPU. The values do not depend on the chunk."""
        M, H = self.params["W1"].shape[:2]
        return max(64, 2**22 // (M * H))

    @torch.no_grad()
    def losses(
        self,
        x: Tensor,
        t: Tensor,
        G: Tensor | None = None,
        weight: Tensor | None = None,
        value_weight: Tensor | None = None,
        chunk: int = 4096,
        point_weight: Tensor | None = None,
    ) -> Tensor:
        """The training objective of ``loss_and_grads`` on a whole set, ``(M,)``, without its
        gradients (summed over chunks of ``chunk`` points); a NaN in ``G`` (a missing label) adds nothing.
        ``point_weight (M, N)``: a weighted mean over the points, as in ``loss_and_grads``."""
        self._check_x(x)
        M, N, D = x.shape
        pw = None if point_weight is None else normalised_point_weight(point_weight, M, N)
        alpha = torch.ones(M, device=x.device, dtype=x.dtype) if value_weight is None else value_weight
        # Regular training: derivative weights 0 (and any target), so one formula serves both.
        if G is None:
            w = torch.zeros(M, D, device=x.device, dtype=x.dtype)
        else:
            w = weight if weight.ndim == 3 else weight.view(M, -1).expand(M, D)
        total = torch.zeros(M, device=x.device, dtype=x.dtype)
        for i in range(0, N, chunk):
            y, g = self.predict(x[:, i : i + chunk])
            target = g if G is None else G[:, i : i + chunk]
            target = torch.where(torch.isnan(target), g, target)  # a missing label: zero residual
            wc = w[:, i : i + chunk] if w.ndim == 3 else w  # per-label weights follow their points
            if pw is None:
                total += weighted_sobolev_loss(y, t[:, i : i + chunk], g, target, alpha, wc) * y.shape[1]
                continue
            p = pw[:, i : i + chunk]
            value = (p * (y - t[:, i : i + chunk]).pow(2)).sum(1)
            total += alpha * value + ((g - target).pow(2) * per_label_weights(wc, M) * p.unsqueeze(2)).sum((1, 2))
        return total / N

    def state_dict(self) -> dict[str, Tensor]:
        return {n: v.detach().cpu() for n, v in self.params.items()}


class BatchedMLP(BatchedNet):
    """M independent ``in_dim -> H -> H -> 1`` ReLU MLPs stored as batched tensors.

    Parameters (``M`` models, ``H`` hidden units, ``D`` inputs), named as ``nn.Linear``:
    ``W1 (M, H, D)``, ``b1 (M, H)``, ``W2 (M, H, H)``, ``b2 (M, H)``, ``w3 (M, H)``, ``b3 (M,)``.
    Initialised like ``nn.Linear`` (uniform in ±1/√fan_in), one seed per model, so model
    ``i`` equals ``MLP`` built under ``torch.manual_seed(seeds[i])`` up to layer order.
    """

    NAMES = ("W1", "b1", "W2", "b2", "w3", "b3")

    def __init__(self, params: dict[str, Tensor]) -> None:
        missing = set(self.NAMES) - set(params)
        if missing:
            raise ValueError(f"missing parameters: {sorted(missing)}")
        self.params = params
        M, H, D = params["W1"].shape
        expected = {"W1": (M, H, D), "b1": (M, H), "W2": (M, H, H), "b2": (M, H), "w3": (M, H), "b3": (M,)}
        for name, shape in expected.items():
            if tuple(params[name].shape) != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {tuple(params[name].shape)}")

    @classmethod
    def init(
        cls,
        seeds: list[int],
        in_dim: int = 2,
        hidden: int = 256,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> BatchedMLP:
        """Fresh models, one per seed (initialised on the CPU in float32, then cast, so the
        initial weights match across devices and dtypes)."""
        if not seeds:
            raise ValueError("seeds: need at least one model")
        rows: dict[str, list[Tensor]] = {n: [] for n in cls.NAMES}
        for seed in seeds:
            g = torch.Generator().manual_seed(int(seed))

            def uni(*shape: int, fan_in: int, g: torch.Generator = g) -> Tensor:
                bound = 1.0 / math.sqrt(fan_in)
                return (torch.rand(*shape, generator=g) * 2 - 1) * bound

            rows["W1"].append(uni(hidden, in_dim, fan_in=in_dim))
            rows["b1"].append(uni(hidden, fan_in=in_dim))
            rows["W2"].append(uni(hidden, hidden, fan_in=hidden))
            rows["b2"].append(uni(hidden, fan_in=hidden))
            rows["w3"].append(uni(hidden, fan_in=hidden))
            rows["b3"].append(uni(1, fan_in=hidden)[0])
        return cls({n: torch.stack(v).to(device=device, dtype=dtype) for n, v in rows.items()})

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        p = self.params
        z1 = torch.baddbmm(p["b1"].unsqueeze(1), x, p["W1"].transpose(1, 2))
        a1 = torch.relu(z1)
        z2 = torch.baddbmm(p["b2"].unsqueeze(1), a1, p["W2"].transpose(1, 2))
        a2 = torch.relu(z2)
        y = torch.baddbmm(p["b3"].view(-1, 1, 1), a2, p["w3"].unsqueeze(2)).squeeze(2)
        return z1, a1, z2, a2, y

    def _units(self, z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor]:
        """``u2 = ∂m/∂z2 = 1[z2>0] ⊙ w3`` and ``u1 = ∂m/∂z1 = 1[z1>0] ⊙ (u2 W2)``, each ``(M, B, H)``."""
        p = self.params
        u2 = _relu_grad(p["w3"].unsqueeze(1).expand_as(z2), z2, 0)
        u1 = _relu_grad(torch.bmm(u2, p["W2"]), z1, 0)
        return u1, u2

    def _input_grad(self, u1: Tensor) -> Tensor:
        """``∇ₓm = u1 W1``, ``(M, B, D)``; computed as ``(W1ᵀ u1ᵀ)ᵀ`` (skinny operand left: faster BLAS)."""
        return torch.bmm(self.params["W1"].transpose(1, 2), u1.transpose(1, 2)).transpose(1, 2)

    def _values_and_grads(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z1, _, z2, _, y = self._forward(x)
        return y, self._input_grad(self._units(z1, z2)[0])

    @torch.no_grad()
    def loss_and_grads(
        self,
        x: Tensor,
        t: Tensor,
        G: Tensor | None = None,
        weight: Tensor | None = None,
        value_weight: Tensor | None = None,
    ) -> StepResult:
        """Per-model loss ``α mean_b (m-t)² + mean_b Σ_j w_j (∂ⱼm - Gⱼ)²`` and its parameter gradients.

        With ``weight`` of shape ``(M,)`` every input shares ``w_j = weight`` (eq. 1 with the
        paper's λ); shape ``(M, D)`` gives one weight per input (the balanced loss of
        :func:`sobolev.core.losses.balanced_weights`); shape ``(M, B, D)`` one per label (e.g. less
        trust in estimated derivatives).

        Args:
            x: inputs ``(M, B, D)``.
            t: target values ``(M, B)``.
            G: target input gradients ``(M, B, D)``; ``None`` gives regular training.
            weight: derivative weights ``(M,)``, ``(M, D)`` or ``(M, B, D)``; required with ``G``.
            value_weight: ``α`` per model ``(M,)``; ``None`` means 1.

        Returns:
            A :class:`StepResult` with the *unweighted* terms ``mean_b (m-t)²`` and
            ``mean_b Σ_j w_j (∂ⱼm - Gⱼ)²`` (the latter already weighted); ``grads[name]`` has the
            shape of ``params[name]`` and is the gradient of the *sum over models* of the
            per-model losses (models are independent, so each slice is that model's own gradient).
        """
        self._check_step(x, t, G, weight, value_weight)
        M, B, _ = x.shape
        p = self.params
        z1, a1, z2, a2, y = self._forward(x)
        # The output is a scalar, so the value loss's backward needs no matmul of its own:
        # dL/dz2 = e_y u2 and dL/dz1 = e_y u1, with u1, u2 the units of the input gradient.
        u1, u2 = self._units(z1, z2)
        resid = y - t
        ey = resid * (2.0 / B) if value_weight is None else resid * (value_weight * (2.0 / B)).unsqueeze(1)  # dL/dy
        eyv = ey.unsqueeze(2)
        grads = {
            "b3": ey.sum(1),
            "w3": torch.bmm(ey.unsqueeze(1), a2).squeeze(1),
            "b2": (eyv * u2).sum(1),
            "b1": (eyv * u1).sum(1),
        }
        q2 = eyv * a1  # dW2 = u2ᵀ q2 (+ u2ᵀ ds1 for Sobolev): one product for both terms
        r1 = eyv * x  # dW1 = u1ᵀ r1 (+ u1ᵀ eg for Sobolev)
        grad_loss = None
        if G is not None:
            # g = u1 W1 with u1 = 1[z1>0] ⊙ (u2 W2), u2 = 1[z2>0] ⊙ w3; the masks are locally
            # constant, so this term sends gradient to W1, W2 and w3 only.
            gres = self._input_grad(u1) - G
            w = per_label_weights(weight, M)
            grad_loss = (gres.pow(2) * w).sum(2).mean(1)
            eg = gres * (w * (2.0 / B))  # dL/dg
            ds1 = _relu_grad(torch.bmm(eg, p["W1"].transpose(1, 2)), z1, 0)
            grads["w3"] += _relu_grad(torch.bmm(ds1, p["W2"].transpose(1, 2)), z2, 0).sum(1)
            q2 = q2 + ds1
            r1 = r1 + eg
        grads["W2"] = torch.bmm(u2.transpose(1, 2), q2)
        grads["W1"] = torch.bmm(r1.transpose(1, 2), u1).transpose(1, 2).contiguous()
        return StepResult(resid.pow(2).mean(1), grad_loss, grads)

    def to_module(self, i: int) -> MLP:
        """Model ``i`` as a standalone :class:`MLP` (for plotting, export, autograd checks)."""
        p = {n: v[i].detach().cpu() for n, v in self.params.items()}
        H, D = p["W1"].shape
        net = MLP(D, (H, H), 1)
        with torch.no_grad():
            net.net[0].weight.copy_(p["W1"])
            net.net[0].bias.copy_(p["b1"])
            net.net[2].weight.copy_(p["W2"])
            net.net[2].bias.copy_(p["b2"])
            net.net[4].weight.copy_(p["w3"].unsqueeze(0))
            net.net[4].bias.copy_(p["b3"].reshape(1))
        return net


class BatchedSmoothMLP(nn.Module):
    """M independent ``in_dim -> H -> ... -> H -> 1`` softplus MLPs stored as batched tensors.

    The architecture of differential machine learning's reference (4 hidden layers of 20
    softplus units). :meth:`forward` returns the values and the input gradients ``∇ₓm``, the
    latter by the chain rule written out (``softplus' = sigmoid``), so one first-order
    backward of any loss on both gives the parameter gradients: no double backward. Parameters
    ``W{l} (M, out, in)``, ``b{l} (M, out)``, initialised like ``nn.Linear`` from one seed per
    model; models are independent, so one ``torch.optim.Adam`` over all of them is M Adams.
    """

    def __init__(self, seeds: list[int], in_dim: int, hidden: int = 20, layers: int = 4) -> None:
        super().__init__()
        if not seeds:
            raise ValueError("seeds: need at least one model")
        if layers < 1 or hidden < 1 or in_dim < 1:
            raise ValueError(f"in_dim, hidden and layers must be positive, got {in_dim}, {hidden}, {layers}")
        sizes = [in_dim] + [hidden] * layers + [1]
        weights: list[list[Tensor]] = [[] for _ in range(len(sizes) - 1)]
        biases: list[list[Tensor]] = [[] for _ in range(len(sizes) - 1)]
        for seed in seeds:
            g = torch.Generator().manual_seed(int(seed))
            for i, (a, b) in enumerate(itertools.pairwise(sizes)):
                bound = 1.0 / math.sqrt(a)
                weights[i].append((torch.rand(b, a, generator=g) * 2 - 1) * bound)
                biases[i].append((torch.rand(b, generator=g) * 2 - 1) * bound)
        self.weights = nn.ParameterList([nn.Parameter(torch.stack(w)) for w in weights])
        self.biases = nn.ParameterList([nn.Parameter(torch.stack(b)) for b in biases])

    @property
    def n_models(self) -> int:
        return self.weights[0].shape[0]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Values ``(M, B)`` and input gradients ``(M, B, D)`` at ``x (M, B, D)``."""
        if x.ndim != 3 or x.shape[0] != self.n_models or x.shape[2] != self.weights[0].shape[2]:
            D = self.weights[0].shape[2]
            raise ValueError(f"x: expected shape ({self.n_models}, B, {D}), got {tuple(x.shape)}")
        h, slopes = x, []
        for W, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            z = torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2))
            slopes.append(torch.sigmoid(z))
            h = nn.functional.softplus(z)
        W, b = self.weights[-1], self.biases[-1]
        y = torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2))[..., 0]
        grad = W.expand(-1, x.shape[1], -1)  # dy/dh of the last hidden layer, (M, B, H)
        for W, s in zip(reversed(self.weights[:-1]), reversed(slopes), strict=True):
            grad = torch.bmm(grad * s, W)
        return y, grad
