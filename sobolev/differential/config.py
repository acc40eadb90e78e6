"""The differential-ML section's parameters (``params.yaml: differential``), validated before any training."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from sobolev.common.params import SectionConfig, fail, integer, items, number, param, text, threads

MAX_SAMPLES = 10_000_000


def problem(name: str, v: object) -> str:
    """``black_scholes`` or ``basket<d>`` with 1 ≤ d ≤ 1000."""
    ok = v == "black_scholes" or (
        isinstance(v, str) and re.fullmatch(r"basket[1-9][0-9]{0,3}", v) is not None and int(v[6:]) <= 1000
    )
    if not ok:
        fail(name, v, "must be 'black_scholes' or 'basket<d>' with d in 1..1000 (e.g. 'basket7')")
    return v  # type: ignore[return-value]


@dataclass(frozen=True)
class DifferentialConfig(SectionConfig):
    """Differential machine learning (Huge & Savine 2020): standard vs differential training on
    Monte-Carlo samples with pathwise derivative labels, as the reference trains them."""

    SECTION: ClassVar[str] = "differential"

    problems: list[str] = param(items(problem))
    black_scholes_sizes: list[int] = param(items(integer(16, MAX_SAMPLES), increasing=True))
    basket_sizes: list[int] = param(items(integer(16, MAX_SAMPLES), increasing=True))
    seeds: int = param(integer(1, 10_000))
    epochs: int = param(integer(1, 100_000))
    hidden: int = param(integer(1, 4096))
    layers: int = param(integer(1, 64))
    lam: float = param(number(0, 1e6, open_low=True))
    n_test: int = param(integer(1, MAX_SAMPLES))
    market_seed: int = param(integer(0, 2**31 - 1))
    n_boot: int = param(integer(100, 10_000_000))
    shown: str = param(text)
    threads: int = param(threads)
    log_every: int = param(integer(1, 10_000_000))

    def check(self) -> None:
        if self.shown not in self.problems or self.shown == "black_scholes":
            self.fail("shown", f"must be one of the basket problems in problems {self.problems}")

    def sizes(self, name: str) -> list[int]:
        """The training sizes of problem ``name``."""
        return self.black_scholes_sizes if name == "black_scholes" else self.basket_sizes


# What the stage writes besides its executed notebook (declared once; the pipeline installs exactly these).
OUTPUTS = ("figures", "runs.csv", "metrics.json")
