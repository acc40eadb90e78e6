"""More test functions of the SFU library (Surjanovic & Bingham): families in any dimension and
three more 2-D functions, with hand-written gradients, beside the paper's seven (:mod:`sobolev.core.functions`).

Names: the paper's seven as there (``"rosenbrock"``, 2-D); a family at dimension ``d`` as
``"<family>_<d>d"`` (``"rosenbrock_10d"``, ``"rastrigin_2d"``); the 2-D extras by name
(``"six_hump_camel"``). :func:`lookup` resolves any of them; ``tests/core/test_functions.py``
checks every gradient against autograd and central differences.

Domains follow Section 4.1 where a family shares a function with it (Ackley on [-5, 5]^d,
Rosenbrock on [-2, 2]^d), SFU's otherwise. At d = 2 the families equal Section 4.1's functions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import torch
from torch import Tensor

from sobolev.core.functions import FUNCTIONS, BenchmarkFunction

_ST_ARGMIN = -2.903534027771178  # root of 4x³ - 32x + 5 = 0 in [-5, 0]


def _ackley(x: Tensor) -> Tensor:
    r = x.pow(2).mean(-1).sqrt()
    return -20 * torch.exp(-0.2 * r) - torch.exp(torch.cos(2 * math.pi * x).mean(-1)) + math.e + 20


def _ackley_grad(x: Tensor) -> Tensor:
    d = x.shape[-1]
    r = x.pow(2).mean(-1, keepdim=True).sqrt()
    safe_r = torch.where(r > 0, r, torch.ones_like(r))
    cone = torch.where(r > 0, 4 * torch.exp(-0.2 * r) / (d * safe_r), torch.zeros_like(r))  # 20·0.2/(d r); tip: 0
    wave = 2 * math.pi / d * torch.exp(torch.cos(2 * math.pi * x).mean(-1, keepdim=True))
    return cone * x + wave * torch.sin(2 * math.pi * x)


def _rosenbrock(x: Tensor) -> Tensor:
    a, b = x[..., :-1], x[..., 1:]
    return (100 * (b - a**2) ** 2 + (a - 1) ** 2).sum(-1)


def _rosenbrock_grad(x: Tensor) -> Tensor:
    a, b = x[..., :-1], x[..., 1:]
    g = torch.zeros_like(x)
    g[..., :-1] += -400 * a * (b - a**2) + 2 * (a - 1)  # as the first of a pair
    g[..., 1:] += 200 * (b - a**2)  # as the second
    return g


def _styblinski_tang(x: Tensor) -> Tensor:
    return 0.5 * (x**4 - 16 * x**2 + 5 * x).sum(-1)


def _styblinski_tang_grad(x: Tensor) -> Tensor:
    return 0.5 * (4 * x**3 - 32 * x + 5)


def _rastrigin(x: Tensor) -> Tensor:
    return 10 * x.shape[-1] + (x**2 - 10 * torch.cos(2 * math.pi * x)).sum(-1)


def _rastrigin_grad(x: Tensor) -> Tensor:
    return 2 * x + 20 * math.pi * torch.sin(2 * math.pi * x)


def _six_hump_camel(x: Tensor) -> Tensor:
    u, v = x[..., 0], x[..., 1]
    return (4 - 2.1 * u**2 + u**4 / 3) * u**2 + u * v + (-4 + 4 * v**2) * v**2


def _six_hump_camel_grad(x: Tensor) -> Tensor:
    u, v = x[..., 0], x[..., 1]
    return torch.stack([8 * u - 8.4 * u**3 + 2 * u**5 + v, u - 8 * v + 16 * v**3], dim=-1)


def _three_hump_camel(x: Tensor) -> Tensor:
    u, v = x[..., 0], x[..., 1]
    return 2 * u**2 - 1.05 * u**4 + u**6 / 6 + u * v + v**2


def _three_hump_camel_grad(x: Tensor) -> Tensor:
    u, v = x[..., 0], x[..., 1]
    return torch.stack([4 * u - 4.2 * u**3 + u**5 + v, u + 2 * v], dim=-1)


#: family -> (value, gradient, (low, high) per input, minimiser's coordinates, minimum per input).
FAMILIES: dict[
    str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor], tuple[float, float], float, float]
] = {
    "ackley": (_ackley, _ackley_grad, (-5.0, 5.0), 0.0, 0.0),
    "rosenbrock": (_rosenbrock, _rosenbrock_grad, (-2.0, 2.0), 1.0, 0.0),
    "styblinski_tang": (_styblinski_tang, _styblinski_tang_grad, (-5.0, 5.0), _ST_ARGMIN, -39.16616570377141),
    "rastrigin": (_rastrigin, _rastrigin_grad, (-5.12, 5.12), 0.0, 0.0),
}
EXTRA_2D: dict[str, BenchmarkFunction] = {
    f.name: f
    for f in (
        BenchmarkFunction(
            "six_hump_camel", _six_hump_camel, _six_hump_camel_grad, ((-3, 3), (-2, 2)), (0.0898, -0.7126), -1.0316
        ),
        BenchmarkFunction(
            "three_hump_camel", _three_hump_camel, _three_hump_camel_grad, ((-5, 5), (-5, 5)), (0.0, 0.0), 0.0
        ),
    )
}
_FAMILY_NAME = re.compile(r"([a-z_]+)_([1-9][0-9]{0,2})d")
MAX_DIM = 200


def family(name: str, d: int) -> BenchmarkFunction:
    """Family ``name`` in ``d`` inputs (``1 ≤ d ≤ MAX_DIM``), named ``"<name>_<d>d"``."""
    if name not in FAMILIES:
        raise ValueError(f"family: unknown {name!r}; allowed: {', '.join(sorted(FAMILIES))}")
    if not isinstance(d, int) or isinstance(d, bool) or not 1 <= d <= MAX_DIM:
        raise ValueError(f"d: expected an integer in [1, {MAX_DIM}], got {d!r}")
    if name == "rosenbrock" and d < 2:
        raise ValueError("d: rosenbrock needs d ≥ 2 (it couples neighbouring inputs)")
    value, grad, (low, high), arg, per_input = FAMILIES[name]
    return BenchmarkFunction(f"{name}_{d}d", value, grad, ((low, high),) * d, (arg,) * d, per_input * d)


def lookup(name: str) -> BenchmarkFunction:
    """Any function by name: the paper's seven, the 2-D extras, or ``"<family>_<d>d"``."""
    if not isinstance(name, str):
        raise ValueError(f"function: expected a name, got {name!r}")
    if name in FUNCTIONS:
        return FUNCTIONS[name]
    if name in EXTRA_2D:
        return EXTRA_2D[name]
    m = _FAMILY_NAME.fullmatch(name)
    if m and m.group(1) in FAMILIES:
        return family(m.group(1), int(m.group(2)))
    raise ValueError(
        f"function: unknown {name!r}; allowed: {', '.join(sorted(FUNCTIONS) + sorted(EXTRA_2D))}, or "
        f"'<family>_<d>d' with family in {sorted(FAMILIES)} and d in 1..{MAX_DIM} (e.g. 'rosenbrock_10d')"
    )


def is_known(name: object) -> bool:
    """Whether :func:`lookup` resolves ``name``."""
    try:
        lookup(name)  # type: ignore[arg-type]
    except ValueError:
        return False
    return True
