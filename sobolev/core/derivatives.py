"""Input derivatives of a model, differentiable with respect to its parameters.

Mode choice (measured in ``benchmarks/``): for a scalar output, one reverse pass gives the
whole input gradient, so :func:`input_gradient` uses reverse mode. Projections of a
Jacobian onto *input* directions ``J v`` are forward-mode JVPs (:func:`jvp_projection`);
projections onto *output* directions ``vᵀ J`` are reverse-mode VJPs
(:func:`vjp_projection`). Every result keeps the graph to the parameters, so it can sit
inside a training loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import jacfwd, jacrev, jvp, vmap

Model = Callable[[Tensor], Tensor]


def _check_batch(x: Tensor, any_shape: bool = False) -> None:
    """``x`` must be a batch ``(B, d_in)``, or ``(B, *in_shape)`` with ``any_shape``."""
    if not isinstance(x, Tensor) or (x.ndim < 2 if any_shape else x.ndim != 2):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x: expected a batch of shape {'(B, ...)' if any_shape else '(B, d_in)'}, got {shape}")


def input_gradient(model: Model, x: Tensor, create_graph: bool = True) -> Tensor:
    """Gradient of a scalar-output model with respect to its input.

    Args:
        model: maps ``(B, d_in)`` to ``(B,)`` or ``(B, 1)``; samples must not interact.
        x: inputs, shape ``(B, d_in)``.
        create_graph: keep the graph so the result can be differentiated again.

    Returns:
        ``(B, d_in)``: ``∂m(x_b)/∂x_b`` for every sample.
    """
    _check_batch(x)
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = model(x)
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.shape != (x.shape[0],):
            raise ValueError(
                f"input_gradient needs a scalar output per sample, got output shape "
                f"{tuple(out.shape)} for input {tuple(x.shape)}; use jacobian() instead"
            )
        (grad,) = torch.autograd.grad(out.sum(), x, create_graph=create_graph)
    return grad


def _per_sample(model: Model) -> Callable[[Tensor], Tensor]:
    """Wrap a batched model as a function of one sample ``(d_in,) -> (d_out,)``."""

    def f(xi: Tensor) -> Tensor:
        return model(xi.unsqueeze(0)).reshape(-1)

    return f


def derivatives(model: Model, x: Tensor, order: int) -> list[Tensor]:
    """Input derivatives ``D^1 m, ..., D^order m`` at every sample.

    Args:
        model: maps ``(B, d_in)`` to ``(B, d_out)`` or ``(B,)``.
        x: inputs, shape ``(B, d_in)``.
        order: highest derivative order ``K >= 1``.

    Returns:
        ``K`` tensors; the ``k``-th has shape ``(B, d_out, d_in, ..., d_in)`` with ``k``
        trailing ``d_in`` axes (``d_out`` is dropped for scalar outputs).
    """
    _check_batch(x)
    if not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be an integer >= 1, got {order!r}")
    scalar = model(x[:1]).numel() == 1
    f = _per_sample(model)
    if scalar:
        base = f

        def f(xi: Tensor) -> Tensor:
            return base(xi)[0]

    out = []
    d = jacrev(f)  # first order: reverse mode
    for _ in range(order):
        out.append(vmap(d)(x))
        d = jacfwd(d)  # higher orders: forward-over-reverse
    return out


def jvp_projection(model: Model, x: Tensor, v: Tensor) -> Tensor:
    """Jacobian-vector products ``J(x_b) v_b`` by forward mode.

    Args:
        x: inputs ``(B, *in_shape)``.
        v: input-space directions, shaped like ``x``.

    Returns:
        ``(B, d_out)`` (or ``(B,)`` for a scalar-output model).
    """
    _check_batch(x, any_shape=True)
    if v.shape != x.shape:
        raise ValueError(f"v: expected shape {tuple(x.shape)} (like x), got {tuple(v.shape)}")
    _, tangent = jvp(model, (x,), (v,))
    return tangent


def vjp_projection(model: Model, x: Tensor, u: Tensor, create_graph: bool = True) -> Tensor:
    """Vector-Jacobian products ``u_bᵀ J(x_b)`` by reverse mode.

    Args:
        x: inputs ``(B, *in_shape)``.
        u: output-space directions ``(B, d_out)``.

    Returns:
        Shaped like ``x``: the input gradient of ``⟨m(x_b), u_b⟩``.
    """
    _check_batch(x, any_shape=True)
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = model(x)
        if out.shape != u.shape:
            raise ValueError(f"u: expected shape {tuple(out.shape)} (like m(x)), got {tuple(u.shape)}")
        (grad,) = torch.autograd.grad((out * u).sum(), x, create_graph=create_graph)
    return grad


PIECEWISE_LINEAR_LAYERS = (nn.Conv2d, nn.Linear, nn.ReLU, nn.Flatten)


def _check_piecewise_linear(net: nn.Sequential) -> None:
    for layer in net:
        if not isinstance(layer, PIECEWISE_LINEAR_LAYERS):
            allowed = ", ".join(t.__name__ for t in PIECEWISE_LINEAR_LAYERS)
            raise TypeError(f"net: layer {layer!r} is not one of {allowed} (a piecewise-linear sequential network)")
        if isinstance(layer, nn.Conv2d) and layer.padding_mode != "zeros":
            raise TypeError(f"net: layer {layer!r} pads with {layer.padding_mode!r}; only 'zeros' is supported")


def forward_with_masks(net: nn.Sequential, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """``net(x)`` and the activity pattern of every ReLU, for :func:`linearised_forward`.

    Args:
        net: a sequence of ``Conv2d``, ``Linear``, ``ReLU`` and ``Flatten`` layers.
        x: inputs ``(B, *in_shape)``.

    Returns:
        ``(net(x), masks)``: the output and one boolean tensor per ReLU, shaped like its output.
    """
    _check_piecewise_linear(net)
    masks = []
    for layer in net:
        x = layer(x)
        if isinstance(layer, nn.ReLU):
            masks.append(x > 0)
    return x, masks


def linearised_forward(net: nn.Sequential, r: Tensor, masks: list[Tensor]) -> Tensor:
    """The Jacobian-vector products ``J(x_b) r_b`` of a piecewise-linear network at the inputs whose
    ReLU pattern is ``masks`` (:func:`forward_with_masks`): the same layers without their biases, each
    ReLU replaced by its mask. Differentiable in the network's weights (reverse mode over it gives the
    gradient of ``⟨u, J(x) r⟩`` without a double backward); exact wherever no pre-activation is 0.

    Args:
        r: input-space directions ``(B, *in_shape)``.

    Returns:
        ``(B, *out_shape)``, like ``net(x)``.
    """
    _check_piecewise_linear(net)
    masks = iter(masks)
    for layer in net:
        if isinstance(layer, nn.Conv2d):
            r = F.conv2d(r, layer.weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)
        elif isinstance(layer, nn.Linear):
            r = F.linear(r, layer.weight)
        elif isinstance(layer, nn.ReLU):
            r = r * next(masks)
        else:
            r = layer(r)
    return r


def random_unit_vectors(
    n: int,
    dim: int,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """``n`` vectors drawn uniformly from the unit sphere in ``R^dim``, shape ``(n, dim)``.

    Drawn on the generator's device (CPU by default) and then moved, so a seed gives the
    same vectors on every device.
    """
    g = torch.randn(n, dim, generator=generator, dtype=dtype).to(device)
    return g / g.norm(dim=1, keepdim=True)
