"""Section 5.3: does Sobolev training need feature learning? Iterative linearisation (Goldwaser & Ge).

The section contract (the same names in every section): ``Config`` and ``OUTPUTS``
(:mod:`~sobolev.features.config`), ``run(cfg, progress) -> Result`` (:mod:`~sobolev.features.compute`:
the regression runs, the digits students of :mod:`~sobolev.features.classification`, every table),
``claims``, ``metrics``, ``save`` and ``readme_blocks`` (:mod:`~sobolev.features.report`),
``figures`` (:mod:`~sobolev.features.plots`).
"""

from sobolev.features.compute import Result, run
from sobolev.features.config import OUTPUTS
from sobolev.features.config import FeaturesConfig as Config
from sobolev.features.plots import figures
from sobolev.features.report import claims, metrics, readme_blocks, save

__all__ = ["OUTPUTS", "Config", "Result", "claims", "figures", "metrics", "readme_blocks", "run", "save"]
