"""Section 5.1, differential machine learning (Huge & Savine 2020) in PyTorch: Sobolev training on noisy
pathwise derivatives.

The section contract (the same names in every section): ``Config`` and ``OUTPUTS``
(:mod:`~sobolev.differential.config`), ``run(cfg, progress) -> Result``
(:mod:`~sobolev.differential.compute`: every problem, size and seed, and the paired statistics),
``claims``, ``metrics``, ``save`` and ``readme_blocks`` (:mod:`~sobolev.differential.report`),
``figures`` (:mod:`~sobolev.differential.plots`). Also: ``simulators`` (Black-Scholes, Bachelier
baskets) and ``training`` (the batched ensembles).
"""

from sobolev.differential.compute import Result, run
from sobolev.differential.config import OUTPUTS
from sobolev.differential.config import DifferentialConfig as Config
from sobolev.differential.plots import figures
from sobolev.differential.report import claims, metrics, readme_blocks, save

__all__ = ["OUTPUTS", "Config", "Result", "claims", "figures", "metrics", "readme_blocks", "run", "save"]
