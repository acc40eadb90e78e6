"""An ensemble of smooth (tanh) MLPs whose Sobolev step is written out by hand.

:class:`BatchedTanhMLP` is the model of :func:`sobolev.fit`: ``M`` independent
``D -> H -> ... -> H -> 1`` tanh networks stored with a leading model axis. A smooth
activation matters when derivatives are targets: a ReLU network's input gradient is
piecewise constant, a tanh network's is smooth like the functions users fit.

For tiny networks the cost of a step on a CPU is the number of tensor operations, not the
arithmetic, so the step avoids autograd. With ``h_l = tanh(z_l)``, ``s_l = 1 - h_l²`` and
``v_L = w_out``, the input gradient is the backward chain

    u_l = v_l ⊙ s_l,   v_{l-1} = u_l W_l,   ∇ₓm = u_1 W_1,

and differentiating the loss through it needs ``∂s_l/∂h_l = -2 h_l``: the chain is walked
forward once more for the derivative term, then the ordinary backward for both terms.
``tests/core/test_fit.py`` checks every parameter gradient against autograd's double backward.

It has :class:`~sobolev.core.models.BatchedMLP`'s interface (``params``, ``loss_and_grads``,
``losses``, ``predict``), so :func:`~sobolev.core.training.train_ensemble` trains it.
Missing derivative labels are NaN in ``G``: their terms are left out of the loss.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sobolev.core.losses import normalised_point_weight, per_label_weights
from sobolev.core.models import BatchedNet, StepResult
from sobolev.core.optimisers import flat_parameters


class BatchedTanhMLP(BatchedNet):
    """``M`` tanh MLPs with ``layers`` hidden layers of ``H`` units and a scalar output.

    Parameters: ``W1 (M, H, D)``, ``b1 (M, H)``, ``W2 .. W{L} (M, H, H)``, ``b2 .. b{L} (M, H)``,
    ``w_out (M, H)``, ``b_out (M,)``. Initial weights are normal with variance ``1/fan_in``
    (LeCun's, suited to tanh), biases zero, one seed per model; all parameters are views of one
    buffer, so Adam updates them in one fused call.
    """

    def __init__(self, params: dict[str, Tensor]) -> None:
        if "W1" not in params or "w_out" not in params or "b_out" not in params:
            raise ValueError(f"params: expected W1.., b1.., w_out and b_out, got {sorted(params)}")
        self.params = params
        self.layers = sum(1 for n in params if n.startswith("W"))
        M, H, D = params["W1"].shape
        for n in self.names():
            want = {"W1": (M, H, D), "w_out": (M, H), "b_out": (M,)}.get(n, (M, H, H) if n[0] == "W" else (M, H))
            if n not in params or tuple(params[n].shape) != want:
                got = tuple(params[n].shape) if n in params else None
                raise ValueError(f"params[{n!r}]: expected shape {want}, got {got}")

    def names(self) -> list[str]:
        """Parameter names in layer order."""
        return [f"{k}{i}" for i in range(1, self.layers + 1) for k in "Wb"] + ["w_out", "b_out"]

    @classmethod
    def init(
        cls,
        seeds: list[int],
        in_dim: int,
        hidden: int = 64,
        layers: int = 2,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> BatchedTanhMLP:
        """Fresh models, one per seed (drawn on the CPU in float32, then cast: the same initial
        weights on every device and dtype)."""
        if not seeds:
            raise ValueError("seeds: need at least one model")
        for name, v in (("in_dim", in_dim), ("hidden", hidden), ("layers", layers)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        sizes = [in_dim] + [hidden] * layers
        rows: dict[str, list[Tensor]] = {}
        for seed in seeds:
            g = torch.Generator().manual_seed(int(seed))
            for i in range(layers):
                weight = torch.randn(hidden, sizes[i], generator=g) / math.sqrt(sizes[i])
                rows.setdefault(f"W{i + 1}", []).append(weight)
                rows.setdefault(f"b{i + 1}", []).append(torch.zeros(hidden))
            rows.setdefault("w_out", []).append(torch.randn(hidden, generator=g) / math.sqrt(hidden))
            rows.setdefault("b_out", []).append(torch.zeros(()))
        stacked = {n: torch.stack(v) for n, v in rows.items()}
        like = torch.empty(0, device=device, dtype=dtype)
        params = flat_parameters({n: tuple(v.shape) for n, v in stacked.items()}, like)
        for n, v in stacked.items():
            params[n].copy_(v)
        return cls(params)

    def _forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """Hidden activations ``h_0 = x .. h_L``, slopes ``s_1 .. s_L`` (``(M, B, H)``) and values ``(M, B)``."""
        p = self.params
        hs, ss = [x], []
        for i in range(1, self.layers + 1):
            h = torch.tanh(torch.baddbmm(p[f"b{i}"].unsqueeze(1), hs[-1], p[f"W{i}"].transpose(1, 2)))
            hs.append(h)
            ss.append(1 - h * h)
        y = torch.baddbmm(p["b_out"].view(-1, 1, 1), hs[-1], p["w_out"].unsqueeze(2)).squeeze(2)
        return hs, ss, y

    def _chain(self, ss: list[Tensor]) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """``v_l`` and ``u_l = v_l ⊙ s_l`` for ``l = 1..L`` (index ``l-1``), and ``∇ₓm (M, B, D)``."""
        p = self.params
        L = self.layers
        vs: list[Tensor] = [None] * L  # type: ignore[list-item]
        us: list[Tensor] = [None] * L  # type: ignore[list-item]
        v = p["w_out"].unsqueeze(1)  # (M, 1, H): broadcasts over the batch
        for i in range(L, 0, -1):
            vs[i - 1] = v
            us[i - 1] = v * ss[i - 1]
            if i > 1:
                v = torch.bmm(us[i - 1], p[f"W{i}"])
        grad = torch.bmm(p["W1"].transpose(1, 2), us[0].transpose(1, 2)).transpose(1, 2)
        return vs, us, grad

    def _values_and_grads(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _, ss, y = self._forward(x)
        return y, self._chain(ss)[2]

    @torch.no_grad()
    def loss_and_grads(
        self,
        x: Tensor,
        t: Tensor,
        G: Tensor | None = None,
        weight: Tensor | None = None,
        value_weight: Tensor | None = None,
        point_weight: Tensor | None = None,
    ) -> StepResult:
        """Per-model loss ``α mean_b (m-t)² + mean_b Σ_j w_j (∂ⱼm - Gⱼ)²`` and its parameter gradients.

        As :meth:`sobolev.core.models.BatchedMLP.loss_and_grads`; a NaN in ``G (M, B, D)``
        marks a missing label, whose term is zero (it neither counts nor sends gradient).
        ``point_weight (M, B)`` (≥ 0, a positive sum per model) makes both means weighted means
        over the points: 0 leaves a point out (a cross-validation fold held out of one model),
        and both returned terms are then those weighted means.
        """
        self._check_step(x, t, G, weight, value_weight)
        M, B = x.shape[:2]
        p = self.params
        L = self.layers
        hs, ss, y = self._forward(x)
        resid = y - t
        pw = None if point_weight is None else normalised_point_weight(point_weight, M, B)
        ey = resid * (2.0 / B) if value_weight is None else resid * (value_weight * (2.0 / B)).unsqueeze(1)
        if pw is not None:
            ey = ey * pw
        grads: dict[str, Tensor] = {
            "b_out": ey.sum(1),
            "w_out": torch.bmm(ey.unsqueeze(1), hs[-1]).squeeze(1),
        }
        # dL/dh_l of the value term enters at the top; the derivative term adds to every layer.
        dh: list[Tensor | None] = [None] * (L + 1)
        dh[L] = ey.unsqueeze(2) * p["w_out"].unsqueeze(1)
        grad_loss = None
        if G is not None:
            vs, us, g = self._chain(ss)
            # A missing label (NaN) gives a NaN residual: zero it. A diverged model still shows
            # in the value loss, which is never masked.
            gres = torch.nan_to_num(g - G, nan=0.0, posinf=math.inf, neginf=-math.inf)
            w = per_label_weights(weight, M)
            if pw is not None:
                w = w * pw.unsqueeze(2)
            grad_loss = (gres.pow(2) * w).sum(2).mean(1)
            eg = gres * (w * (2.0 / B))  # dL/d(∇ₓm)
            grads["W1"] = torch.bmm(us[0].transpose(1, 2), eg)
            du = torch.bmm(eg, p["W1"].transpose(1, 2))  # dL/du_1, (M, B, H)
            for i in range(1, L + 1):
                dv = du * ss[i - 1]
                # s_l = 1 - h_l², so dL/dh_l += (du ⊙ v_l) ⊙ (-2 h_l)
                duv = du * vs[i - 1]
                dh[i] = duv * hs[i] * -2.0 if dh[i] is None else torch.addcmul(dh[i], duv, hs[i], value=-2.0)
                if i < L:
                    grads[f"W{i + 1}"] = torch.bmm(us[i].transpose(1, 2), dv)  # v_i = u_{i+1} W_{i+1}
                    du = torch.bmm(dv, p[f"W{i + 1}"].transpose(1, 2))
                else:
                    grads["w_out"] = grads["w_out"] + dv.sum(1)  # v_L = w_out
        for i in range(L, 0, -1):
            dz = dh[i] * ss[i - 1]
            dW = torch.bmm(dz.transpose(1, 2), hs[i - 1])
            grads[f"W{i}"] = grads[f"W{i}"] + dW if f"W{i}" in grads else dW
            grads[f"b{i}"] = dz.sum(1)
            if i > 1:
                back = torch.bmm(dz, p[f"W{i}"])
                dh[i - 1] = back if dh[i - 1] is None else dh[i - 1] + back
        value_loss = resid.pow(2).mean(1) if pw is None else (resid.pow(2) * pw).mean(1)
        return StepResult(value_loss, grad_loss, grads)
