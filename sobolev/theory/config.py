"""Section 3's parameters (``params.yaml: theory``), validated before any computation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from sobolev.common.params import MAX_LR, SectionConfig, device, fail, integer, items, number, param, threads


def mesh(name: str, v: Any) -> list[int]:
    """``[d, m]``: dimension d and m cells per axis, small enough for exact linear algebra."""
    if not (isinstance(v, list) and len(v) == 2):
        fail(name, v, "must be [dimension d, cells per axis m]")
    d, m = integer(1, 6)(f"{name}[0] (dimension)", v[0]), integer(1, 5000)(f"{name}[1] (cells)", v[1])
    if m**d * math.factorial(d) > 5000:
        fail(name, v, "needs m^d · d! <= 5000 simplices")
    return [d, m]


@dataclass(frozen=True)
class TheoryConfig(SectionConfig):
    """Section 3: exact computations of the theory, plus two small trainings."""

    SECTION: ClassVar[str] = "theory"

    prop1_points: int = param(integer(1, 10_000))
    prop1_dims: list[int] = param(items(integer(1, 1000)))
    poly_max_degree: int = param(integer(1, 40))
    thm2_steps: int = param(integer(1, 10_000_000))
    thm2_hidden: int = param(integer(1, 16_384))
    meshes: list[list[int]] = param(items(mesh))
    identification_seeds: int = param(integer(1, 10_000))
    net_sizes: list[int] = param(items(integer(1, 1_000_000)))
    net_seeds: int = param(integer(1, 10_000))
    net_lrs: list[float] = param(items(number(0, MAX_LR, open_low=True)))
    net_steps: int = param(integer(1, 10_000_000))
    net_hidden: int = param(integer(1, 16_384))
    device: str = param(device)
    threads: int = param(threads)


# What the stage writes besides its executed notebook (declared once; the pipeline installs exactly these).
OUTPUTS = ("figures", "pl_networks_runs.csv", "metrics.json")
