"""Section 5.2: tuning-free Sobolev training with Fromage, LARS and deep relative trust (Bernstein et al. 2020).

The section contract (the same names in every section): ``Config`` and ``OUTPUTS``
(:mod:`~sobolev.trust.config`), ``run(cfg, progress) -> Result`` (:mod:`~sobolev.trust.compute`:
the grid, the learning-rate sweep, weight norms, relative trust, and every table), ``claims``,
``metrics``, ``save`` and ``readme_blocks`` (:mod:`~sobolev.trust.report`), ``figures``
(:mod:`~sobolev.trust.plots`).
"""

from sobolev.trust.compute import Result, run
from sobolev.trust.config import OUTPUTS
from sobolev.trust.config import TrustConfig as Config
from sobolev.trust.plots import figures
from sobolev.trust.report import claims, metrics, readme_blocks, save

__all__ = ["OUTPUTS", "Config", "Result", "claims", "figures", "metrics", "readme_blocks", "run", "save"]
